"""results.md's sections on the measured results: headline numbers with CIs (cells.csv),
elasticity fits, edit health and the gate's verdicts, and the problems list.

Usage::

    from edit_retention.report_results import headline_section, problems_section
    text = headline_section(cells) + problems_section(problems)
"""
from __future__ import annotations

import pandas as pd

from .report_format import fmt, fmt_ci, md_table

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
            row.append(fmt_ci(hit.iloc[0]) if len(hit) else "n/a")
        if score_name:
            hit = sub[(sub.knowledge == "task") & (sub.metric == score_name)]
            if len(hit):
                r = hit.iloc[0]
                row.append(f"{fmt(r['value'], 2)} (sd {fmt(r['seed_std'], 2)}, {int(r['n_seeds'])} seed(s))")
            else:
                row.append("n/a")
        seeds = sub[sub.knowledge != "task"]["n_seeds"]
        row.append(str(int(seeds.max())) if len(seeds) else "0")
        rows.append(row)
    header = ["model/editor/task", "remedy"] + cols + ([score_name] if score_name else []) + ["seeds"]
    out.append(md_table(header, rows))
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
                       f"(values in this grid: {', '.join(fmt(x, 0) for x in xs)}); a curve needs at least "
                       f"{'3 distinct values' if kind != 'step' else '3 checkpoints/phases after step 0'}.\n")
            continue
        rows = []
        for c in fitted:
            label = "/".join(str(c.get(k)) for k in ("model", "editor", "task", "remedy") if c.get(k) is not None)
            extra = ", ".join(f"{k}={c[k]}" for k in ("paraphrase_k", "freeze", "method") if k in c)
            pts = "; ".join(f"{fmt(p['x'], 0)}: {fmt(p['retention'])} (n={p['n']})" for p in c["points"])
            params = ", ".join(f"{k} {fmt(v)} [{fmt(c['ci'][k][0])}, {fmt(c['ci'][k][1])}]" for k, v in c["fit"].items())
            rows.append([label + (f" ({extra})" if extra else ""), c["knowledge"], pts, params, str(c.get("n_boot", ""))])
        out.append(md_table(["curve", "knowledge", "points (x: retention)", "fit [95% bootstrap CI]", "replicates"],
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
        rows.append([str(r["model"]), str(r["editor"]), str(r["regime"]), fmt(r["paraphrase_k"], 0),
                     str(r["n_requests"]), fmt(r["control_agreement"]), fmt(r["neighborhood_agreement"]),
                     fmt(r["first_token_es"]), fmt(r["ppl_ratio"]), fmt(r["delta_rel_norm"]),
                     "healthy" if bool(r["healthy"]) else f"**unhealthy**: {r['problems']}"])
    return md_table(["model", "editor", "regime", "k", "facts", "control agreement", "neighbour agreement",
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
            + md_table(["cell", "seed", "what", "problem"], rows))
