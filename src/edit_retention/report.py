"""results.md: the claims table, headline numbers with CIs, elasticity, grid, versions, problems.

Usage::

    from edit_retention.report import results_markdown, git_commit, model_versions, fact_versions
    text = results_markdown(cells, claims, curves, problems, config,
                            models=model_versions(["data/models/m/base"]),
                            facts=fact_versions(["data/facts/f/records.jsonl"]),
                            commit=git_commit("."))

Everything here formats numbers computed elsewhere (``cells``, ``claims``, ``elasticity``); nothing is
recomputed, so results.md and the CSV tables always agree.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from pathlib import Path

import pandas as pd

from .bootstrap import N_BOOT
from .claims import CLAIMS, MIXED
from .comparison import MARGIN, N_PERM, NOT_IN_GRID
from .phases import phase_order
from .protocols import ASYMMETRIC, PROBABILITY, PROTOCOLS, REFERENCE_PAIRING

HEADLINE = [  # (column title, knowledge, phase, metric)
    ("ES after edit", "edited", "edited", "rewrite_success"),
    ("PS after edit", "edited", "edited", "paraphrase_success"),
    ("NS after edit", "edited", "edited", "neighborhood_success"),
    ("ES after FT", "edited", "finetuned", "rewrite_success"),
    ("edited retention", "edited", "finetuned", "retention_rewrite"),
    ("EFR", "edited", "finetuned", "efr"),
    ("intrinsic retention", "intrinsic", "finetuned", "retention_rewrite"),
    ("P(new) ratio", "edited", "finetuned", "target_prob_ratio"),
]


def git_commit(cwd: str | os.PathLike = ".") -> str:
    """HEAD's commit (with "+dirty" when tracked files differ), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_versions(dirs) -> list[dict]:
    """Per prepared model folder: its source.json (what was loaded, from where) and the
    sha256 of its weight files."""
    out = []
    for d in dirs or []:
        d = Path(d)
        src = d / "source.json"
        entry = {"path": str(d), "source": json.loads(src.read_text()) if src.exists() else "unknown (no source.json)"}
        weights = sorted(d.glob("*.safetensors"))
        entry["weights_sha256"] = {w.name: _sha256(w)[:16] for w in weights}
        out.append(entry)
    return out


def fact_versions(paths) -> list[dict]:
    """Per fact file: number of records, sha256, and the load report written beside it
    (``load_report.json`` of prepare-facts: drops by reason, relation strata), if any."""
    out = []
    for p in paths or []:
        p = Path(p)
        if p.exists():
            n = sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
            rep = p.parent / "load_report.json"
            out.append({"path": str(p), "records": n, "sha256": _sha256(p)[:16],
                        "load": json.loads(rep.read_text()) if rep.exists() else None})
        else:
            out.append({"path": str(p), "records": None, "sha256": "missing"})
    return out


def _f(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _ci(row) -> str:
    return f"{_f(row['value'])} [{_f(row['ci_low'])}, {_f(row['ci_high'])}] (n={int(row['n'])})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _under(claims: pd.DataFrame, protocol: str = PROBABILITY) -> pd.DataFrame:
    """The rows of one protocol (all rows of a claims table written before protocols)."""
    return claims[claims["protocol"] == protocol] if "protocol" in claims else claims


def _is_primary(claims: pd.DataFrame) -> pd.Series:
    return claims["primary"].astype(str).str.lower() == "true"


def claims_section(claims: pd.DataFrame) -> str:
    claims = _under(claims)
    primary = claims[_is_primary(claims)]
    rows = []
    for cid, source, statement, _ in CLAIMS:
        sub = primary[primary["claim"] == cid]
        if sub.empty:
            rows.append([cid, source, statement, NOT_IN_GRID, "", "", "", "", ""])
            continue
        r = sub.iloc[0]
        eff = "" if pd.isna(r["effect"]) else f"{_f(r['effect'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"
        n = "" if r["verdict"] == NOT_IN_GRID else f"{int(r['n_a'])}" + (f" / {int(r['n_b'])}" if int(r["n_b"]) else "")
        note = "; ".join(str(x) for x in (r["test"], r["note"]) if isinstance(x, str) and x)
        rows.append([cid, source, statement, f"**{r['verdict']}**", r["contrast"], eff, _p(r["p"]), n, note])
    text = _table(["", "source", "claim", "verdict", "contrast", "effect [95% CI]", "p", "n (a / b)", "test / note"],
                  rows)
    detail = claims[~_is_primary(claims)]
    if len(detail):
        drows = [[r["claim"], r["scope"], r["contrast"], r["verdict"],
                  f"{_f(r['effect'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]", _p(r["p"]),
                  f"{int(r['n_a'])} / {int(r['n_b'])}", r["note"]] for _, r in detail.iterrows()]
        text += "\n\nPer scope (model/editor/task) and per contrast:\n\n" + _table(
            ["claim", "scope", "contrast", "verdict", "effect [95% CI]", "p", "n (a / b)", "note"], drows)
    return text


def protocol_section(claims: pd.DataFrame) -> str:
    """Claim x protocol at a glance: verdict and effect of each claim's primary row under
    every protocol, and per scope for the claims comparing edited with intrinsic facts
    (where the asymmetric pairing can create or hide a gap)."""
    if "protocol" not in claims:
        return "Not in these results (claims.csv has no protocol column)."
    have = [p for p in (*PROTOCOLS, ASYMMETRIC) if p in set(claims["protocol"])]
    base = claims[claims["protocol"] == PROBABILITY]
    base = base[_is_primary(base) | base["claim"].isin(MIXED)]
    keys = list(dict.fromkeys(zip(base["claim"], base["scope"], base["contrast"])))
    rows = []
    for cid, scope, contrast in keys:
        row = [cid, scope, contrast]
        for p in have:
            hit = claims[(claims.claim == cid) & (claims.scope == scope) & (claims.contrast == contrast)
                         & (claims.protocol == p)]
            if hit.empty:
                row.append("—")
                continue
            r = hit.iloc[0]
            eff = "" if pd.isna(r["effect"]) else f" {_f(r['effect'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"
            row.append(f"{r['verdict']}{eff}")
        rows.append(row)
    pairing = ", ".join(f"{k} by {v}" for k, v in REFERENCE_PAIRING.items())
    return (_table(["claim", "scope", "contrast"] + have, rows)
            + f"\n\nEach cell: verdict, effect [95% CI] of the same test on the same facts; only the success test "
              f"differs. probability: teacher-forced mean log-prob, object vs alternative; first_token: greedy "
              f"next token = the object's first token; generation_contains: the object (whole words, case and "
              f"spacing ignored) in the greedy continuation; {ASYMMETRIC}: the reference study's asymmetric "
              f"test ({pairing}), for claims comparing edited with intrinsic facts only (—: not applicable). "
              f"For C1 the effect is intrinsic - edited retention: how much of the edited-vs-intrinsic gap "
              f"each protocol shows.")


def headline_section(cells: pd.DataFrame) -> str:
    out = []
    key_cols = ["model", "editor", "task", "remedy"]
    cols = [h[0] for h in HEADLINE]
    score = cells[(cells.knowledge == "task") & (cells.phase == "finetuned")]
    score_name = next((m for m in ("task_score", "eval_perplexity", "eval_loss", "accuracy", "exact_match")
                       if m in set(score.metric)), None)
    rows = []
    for key, sub in cells.groupby(key_cols, sort=False):
        if key[3] == "" and sub.knowledge.eq("task").all():
            continue
        row = ["/".join(map(str, key[:3])), key[3]]
        for _, knowledge, phase, metric in HEADLINE:
            hit = sub[(sub.knowledge == knowledge) & (sub.phase == phase) & (sub.metric == metric)]
            row.append(_ci(hit.iloc[0]) if len(hit) else "n/a")
        if score_name:
            hit = sub[(sub.knowledge == "task") & (sub.metric == score_name)]
            if len(hit):
                r = hit.iloc[0]
                row.append(f"{_f(r['value'], 2)} (sd {_f(r['seed_std'], 2)}, {int(r['n_seeds'])} seed(s))")
            else:
                row.append("n/a")
        seeds = sub[sub.knowledge != "task"]["n_seeds"]
        row.append(str(int(seeds.max())) if len(seeds) else "0")
        rows.append(row)
    header = ["model/editor/task", "remedy"] + cols + ([score_name] if score_name else []) + ["seeds"]
    out.append(_table(header, rows))
    out.append("\nValues are pooled over seeds (counts summed); brackets are 95% two-way bootstrap intervals "
               "over facts and seeds; n counts facts x seeds (for retention: those holding before fine-tuning).")
    return "\n".join(out)


def elasticity_section(curves: list[dict]) -> str:
    out = []
    names = {"k": "paraphrases per edit k (R = a + b ln(1 + k))",
             "n_edits": "edit-set size N (R = a + b ln N)",
             "step": "fine-tuning steps t (R = r_inf + (1 - r_inf) exp(-lam t))"}
    for kind, title in names.items():
        cs = [c for c in curves if c["kind"] == kind]
        out.append(f"### Retention vs {title}\n")
        if not cs:
            out.append("Not in this grid (no cells with this axis).\n")
            continue
        fitted = [c for c in cs if c.get("status") == "fitted"]
        if not fitted:
            xs = sorted({x for c in cs for x in c["x"]})
            most = max(len(c["x"]) for c in cs)
            out.append(f"Too few points to fit: each curve has at most {most} distinct value(s) of {kind} "
                       f"(values in this grid: {', '.join(_f(x, 0) for x in xs)}); a curve needs at least "
                       f"{'3 distinct values' if kind != 'step' else '3 checkpoints/phases after step 0'}.\n")
            continue
        rows = []
        for c in fitted:
            label = "/".join(str(c.get(k)) for k in ("model", "editor", "task", "remedy") if c.get(k) is not None)
            extra = ", ".join(f"{k}={c[k]}" for k in ("paraphrase_k", "freeze", "method") if k in c)
            pts = "; ".join(f"{_f(p['x'], 0)}: {_f(p['retention'])} (n={p['n']})" for p in c["points"])
            params = ", ".join(f"{k} {_f(v)} [{_f(c['ci'][k][0])}, {_f(c['ci'][k][1])}]" for k, v in c["fit"].items())
            rows.append([label + (f" ({extra})" if extra else ""), c["knowledge"], pts, params, str(c.get("n_boot", ""))])
        out.append(_table(["curve", "knowledge", "points (x: retention)", "fit [95% bootstrap CI]", "replicates"],
                          rows))
        skipped = len(cs) - len(fitted)
        if skipped:
            out.append(f"\n{skipped} other curve(s) of this axis have too few points to fit.")
        out.append("")
    out.append(
        "The reference study (arXiv 2507.14198) argues that edited knowledge is fragile because it rests "
        "on little data (one prompt per fact) while intrinsic knowledge was learned from many occurrences; "
        "that argument predicts a positive slope b in k (more edit data, better retention) and a slower "
        "decay (longer half-life) for intrinsic than for edited knowledge. A slope whose CI excludes 0 "
        "supports it; a CI around 0 at this n cannot tell.")
    return "\n".join(out)


def health_section(health: pd.DataFrame | None) -> str:
    """One row per edit: its health (health.py) and the gate's verdict."""
    if health is None or health.empty:
        return "No edit-health measurements (the cells name no health file)."
    rows = []
    for _, r in health.iterrows():
        rows.append([str(r["model"]), str(r["editor"]), str(r["regime"]), _f(r["paraphrase_k"], 0),
                     str(r["n_requests"]), _f(r["control_agreement"]), _f(r["neighborhood_agreement"]),
                     _f(r["first_token_es"]), _f(r["ppl_ratio"]), _f(r["delta_rel_norm"]),
                     "healthy" if bool(r["healthy"]) else f"**unhealthy**: {r['problems']}"])
    return _table(["model", "editor", "regime", "k", "facts", "control agreement", "neighbour agreement",
                   "first-token ES", "perplexity ratio", "max |Δ|/|W|", "gate"], rows)


def problems_section(problems: pd.DataFrame) -> str:
    if problems is None or problems.empty:
        return "None: every cell has n > 0, no NaN value, every seed of the grid is present."
    rows = []
    for _, r in problems.iterrows():
        where = "/".join(str(r[k]) for k in ("model", "editor", "task", "remedy") if str(r[k]) not in ("", "nan"))
        seed = "" if str(r["seed"]) in ("", "nan") else f"seed {r['seed']}"
        what = " ".join(str(r[k]) for k in ("knowledge", "phase", "metric") if str(r[k]) not in ("", "nan"))
        rows.append([where or "(all)", seed, what, r["problem"]])
    return (f"{len(rows)} problem(s); none of them is averaged into a number above (n = 0 cells carry no "
            "weight, failed cells and missing seeds are absent and listed here).\n\n"
            + _table(["cell", "seed", "what", "problem"], rows))


def grid_section(config: dict) -> str:
    g = config.get("grid", {})
    rows = [[k, ", ".join(map(str, v)) if isinstance(v, list) else str(v)] for k, v in g.items()]
    text = _table(["axis", "values"], rows)
    rem = config.get("remedies", {})
    used = g.get("remedies", list(rem))
    if rem:
        text += "\n\nRemedies (definitions used to find each claim's cells):\n\n" + _table(
            ["remedy", "definition"], [[r, json.dumps(rem.get(r), sort_keys=True)] for r in used])
    tasks = config.get("tasks", {})
    if tasks:
        text += "\n\nTasks:\n\n" + _table(["task", "definition"],
                                          [[t, json.dumps(tasks.get(t), sort_keys=True)] for t in g.get("tasks", tasks)])
    other = {k: config[k] for k in ("edit", "select", "paraphrase", "device") if k in config}
    if other:
        text += "\n\nOther settings: `" + json.dumps(other, sort_keys=True) + "`"
    return text


def versions_section(models: list[dict], facts: list[dict], commit: str) -> str:
    out = [f"- code: git commit `{commit}`"]
    for m in models:
        out.append(f"- model `{m['path']}`: source `{json.dumps(m['source'], sort_keys=True)}`; weights sha256 "
                   + (", ".join(f"{k} {v}" for k, v in m["weights_sha256"].items()) or "n/a"))
    for f in facts:
        out.append(f"- facts `{f['path']}`: {f['records']} records, sha256 {f['sha256']}")
        out += load_lines(f.get("load"))
    return "\n".join(out)


def _ids(ids: list, most: int = 20) -> str:
    return ", ".join(ids[:most]) + (f", ... (+{len(ids) - most} more in load_report.json)" if len(ids) > most else "")


def load_lines(load: dict | None) -> list[str]:
    """The fact load report (``facts.load_report``) as bullet lines: drops and removals by
    reason with case ids, the relation rule and strata, notes."""
    if not load:
        return []
    out = [f"  - loaded {load.get('n_rows')} rows -> {load.get('n_records')} records (bad_records: "
           f"{load.get('bad_records')})"]
    for key, what in (("dropped", "cases dropped"), ("removed", "parts removed")):
        for reason, d in load.get(key, {}).items():
            out.append(f"  - {what}, {reason} ({d['meaning']}): {d['n']}; case ids {_ids(d['case_ids'])}")
        if not load.get(key):
            out.append(f"  - {what}: none")
    rel = load.get("relations", {})
    out.append(f"  - relation strata: {rel.get('n_strata')} ({rel.get('n_singleton_strata')} with one fact), "
               f"rule `{rel.get('rule')}`: {rel.get('meaning')}")
    out += [f"  - note: {n}" for n in load.get("notes", [])]
    return out


def results_markdown(cells: pd.DataFrame, claims: pd.DataFrame, curves: list[dict], problems: pd.DataFrame,
                     config: dict, models: list[dict] | None = None, facts: list[dict] | None = None,
                     commit: str = "unknown", health: pd.DataFrame | None = None) -> str:
    n_problems = 0 if problems is None else len(problems)
    n_unhealthy = 0 if health is None or health.empty else int((~health["healthy"].astype(bool)).sum())
    parts = [
        "# Results",
        "",
        "Written by the pipeline (`report` rule); numbers from `data/results/cells.csv`, "
        "`claims.csv` and `elasticity.json`.",
        "",
        f"Problems: **{n_problems}** (see the last section).",
        "",
        *([f"**{n_unhealthy} edit(s) failed the health gate**: claims about their cells say "
           f"\"edit unhealthy\" instead of a verdict (see Edit health).", ""] if n_unhealthy else []),
        "## Claims",
        "",
        "Under the teacher-forced probability protocol (the next subsection repeats each claim under every "
        "protocol).",
        "",
        claims_section(claims),
        "",
        "### Claims under each success protocol",
        "",
        protocol_section(claims),
        "",
        f"Verdicts: with the effect signed in the claim's direction, *supports* when its 95% CI lies above 0 "
        f"and p < 0.05; *contradicts* when the CI lies below 0 (p < 0.05), or lies entirely within "
        f"±{MARGIN} (no effect of that size); otherwise *cannot tell at this n*. F1 is a one-sample "
        f"bound on the edit forgetting rate (supports: CI above 0; contradicts: CI below {MARGIN}). "
        f"Tests: relation-stratified (CMH-weighted) differences; p from {N_PERM} permutations "
        f"(labels of whole facts shuffled within relation; sign flips per fact for remedy contrasts, "
        f"which share facts); CI = {N_BOOT}-replicate two-way bootstrap over facts (within relation) "
        f"and seeds, united with Newcombe's score interval so that all-equal outcomes do not give a "
        f"zero-width interval. See `src/edit_retention/comparison.py`.",
        "",
        "## Edit health (after the edit, before fine-tuning)",
        "",
        health_section(health),
        "",
        "Control / neighbour agreement: share of control facts' main prompts / edited subjects' "
        "neighbourhood prompts whose greedy next token is the base model's; first-token ES: share of "
        "edited facts whose greedy next token is target_new's first token; perplexity ratio: held-out "
        "corpus text, edited / base; max |Δ|/|W|: the largest delta norm relative to its weight. The "
        "gate's thresholds are the study config's `health:` block.",
        "",
        "## Headline numbers (95% CI)",
        "",
        headline_section(cells),
        "",
        *[f"PS caveat ({f['path']}): {n}\n" for f in facts or [] for n in (f.get("load") or {}).get("notes", [])],
        "## Elasticity",
        "",
        elasticity_section(curves),
        "",
        "## The grid that produced these numbers",
        "",
        grid_section(config),
        "",
        "## Versions",
        "",
        versions_section(models or [], facts or [], commit),
        "",
        "## Problems",
        "",
        problems_section(problems),
        "",
    ]
    return "\n".join(parts)


__all__ = ["results_markdown", "git_commit", "model_versions", "fact_versions", "phase_order"]
