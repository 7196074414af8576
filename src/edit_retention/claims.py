"""The study's claims, tested on whatever cells the grid has: one small function per claim.

Usage::

    from edit_retention.claims import evaluate_claims
    claims = evaluate_claims(units, cells)          # data/results/claims.csv

Cells are found by the remedy *definitions* in cells.csv, never by remedy names; the
baseline remedy is paraphrase_k 0, freeze "none", method "full".

    C1  edited vs intrinsic retention_rewrite after fine-tuning in baseline cells
        (effect = intrinsic - edited; positive = edited forgotten more).
    C2  each remedy with paraphrase_k > 0 vs the remedy equal to it but with k = 0 (same
        freeze and method); effect = retention(k) - retention(0). Primary row: largest k.
    C3  freeze in ``freezing.TRAINS_NON_EDITED_ONLY`` vs freeze "none", same k and method;
        effect = retention(frozen) - retention(none).
    F1  in the frozen cells of C3: edit forgetting rate (one-sample), one row per freezing
        strategy (primary: freeze edited/non_edited, the follow-up's reading); supports when
        its CI lies above 0, contradicts when it lies below ``margin``.
    F2  method "lora" vs "full", same k and freeze; effect = retention(lora) - retention(full).

Each claim has one pooled row (scope "all": strata are model/editor/task/relation) and
one row per (model, editor, task); ``primary`` marks the row giving the verdict. The tests
and verdicts are those of ``comparison``. ``min_detectable_diff`` (every row): the smallest
true effect this row's n would detect with 80% power at alpha 0.05, two-sided, from the
row's own 95% CI (``power.mdd_from_ci``); NaN where there is no CI.

Protocols (column ``protocol``; ``protocols``): every claim is evaluated under each
symmetric protocol the units carry (probability always; first_token and
generation_contains when summarize wrote their ``@``-suffixed metrics), and each claim
that compares edited with intrinsic facts (``MIXED``: C1) also under
``reference_pairing``, the reference study's asymmetric test: edited units from
first_token, intrinsic units from generation_contains. The claims about edits alone read
edited units only, so their reference_pairing row would repeat first_token's and is not
written. ``primary`` marks one row per (claim, protocol).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .bootstrap import N_BOOT
from .cells import CELL_KEYS
from .comparison import CANNOT_TELL, MARGIN, N_PERM, NOT_IN_GRID, Comparison, compare, one_sample, verdict
from .freezing import TRAINS_NON_EDITED_ONLY
from .health_table import UNHEALTHY
from .phases import FINAL_PHASE
from .power import mdd_from_ci
from .protocols import (ASYMMETRIC, PROBABILITY, PROTOCOLS, REFERENCE_PAIRING, metric_name, protocol_for,
                        split_metric)

CLAIM_COLUMNS = ["claim", "source", "statement", "protocol", "scope", "contrast", "primary", "test", "effect", "ci_low",
                 "ci_high", "p", "n_a", "n_b", "min_detectable_diff", "verdict", "note"]
RETENTION = "retention_rewrite"


@dataclass
class Study:
    """What every claim reads: units, the remedy table and the test settings."""
    units: pd.DataFrame
    rt: pd.DataFrame          # one row per (model, editor, task, remedy): paraphrase_k, freeze, method
    n_boot: int
    n_perm: int
    seed: int
    margin: float
    protocol: str = PROBABILITY   # a name from PROTOCOLS, or ASYMMETRIC


def _remedy_table(cells: pd.DataFrame) -> pd.DataFrame:
    t = cells[CELL_KEYS[:3] + ["remedy", "paraphrase_k", "freeze", "method"]].drop_duplicates(CELL_KEYS)
    return t.reset_index(drop=True)


def _units_for(s: Study, knowledge: str, metric: str = RETENTION, phase: str = FINAL_PHASE,
               remedies=None, scope=None) -> pd.DataFrame:
    """Units of ``metric`` under the study's protocol for this kind of knowledge."""
    units, metric = s.units, metric_name(metric, protocol_for(s.protocol, knowledge))
    u = units[(units.knowledge == knowledge) & (units.metric == metric) & (units.phase == phase)]
    if remedies is not None:
        u = u[u.remedy.isin(remedies)]
    if scope is not None:
        for k, v in zip(CELL_KEYS[:3], scope):
            u = u[u[k] == v]
    fact = u.model + "/" + u.editor + "/" + u.task + "/" + u.case_id.astype(str)
    stratum = u.model + "/" + u.editor + "/" + u.task + "/" + u.relation.astype(str)
    return pd.DataFrame({"fact": fact, "stratum": stratum, "seed": u.seed, "num": u.num, "den": u.den,
                         "remedy": u.remedy}).reset_index(drop=True)


def _row(claim, scope, contrast, primary, c: Comparison | None, verdict_: str, note="") -> dict:
    cid, source, statement = claim
    base = {"claim": cid, "source": source, "statement": statement, "protocol": PROBABILITY, "scope": scope,
            "contrast": contrast,
            "primary": primary, "verdict": verdict_}
    if c is None:
        return dict(base, test="", effect=math.nan, ci_low=math.nan, ci_high=math.nan, p=math.nan, n_a=0, n_b=0,
                    min_detectable_diff=math.nan, note=note)
    return dict(base, test=c.test, effect=c.effect, ci_low=c.ci_low, ci_high=c.ci_high, p=c.p, n_a=c.n_a,
                n_b=c.n_b, min_detectable_diff=mdd_from_ci(c.ci_low, c.ci_high),
                note="; ".join(x for x in (c.note, note) if x))


def _scopes(table: pd.DataFrame) -> list[tuple]:
    return list(dict.fromkeys(zip(table.model, table.editor, table.task)))


def _in_scope(table: pd.DataFrame, scope) -> pd.Series:
    return table[(table.model == scope[0]) & (table.editor == scope[1]) & (table.task == scope[2])].remedy


def _pairs(rt: pd.DataFrame, differ: str, pick_a, pick_b) -> list[tuple[str, str, tuple]]:
    """(remedy_a, remedy_b, scope) where the two remedies agree on every trait but ``differ``."""
    same = [c for c in ("paraphrase_k", "freeze", "method") if c != differ]
    out = []
    for scope, sub in rt.groupby(CELL_KEYS[:3], sort=False):
        for _, ra in sub.iterrows():
            if not pick_a(ra):
                continue
            for _, rb in sub.iterrows():
                if rb.remedy != ra.remedy and pick_b(rb) and all(str(ra[c]) == str(rb[c]) for c in same):
                    out.append((ra.remedy, rb.remedy, scope))
    return out


def _traits_note(rt, remedy, differ) -> str:
    r = rt[rt.remedy == remedy].iloc[0]
    parts = [f"k={int(r.paraphrase_k)}" if differ != "paraphrase_k" and r.paraphrase_k != 0 else "",
             f"freeze={r.freeze}" if differ != "freeze" and r.freeze != "none" else "",
             f"method={r.method}" if differ != "method" and r.method != "full" else ""]
    parts = [p for p in parts if p]
    return f" [{', '.join(parts)}]" if parts else ""


def _pair_comparisons(claim, s: Study, pairs, contrast_of, direction=1) -> list[dict]:
    """Rows for remedy-vs-remedy contrasts (edited retention), per scope and pooled."""
    rows = []
    by_contrast: dict[str, list] = {}
    for ra, rb, scope in pairs:
        by_contrast.setdefault(contrast_of(ra, rb), []).append((ra, rb, scope))
    for i, (contrast, items) in enumerate(by_contrast.items()):
        pooled_a, pooled_b = [], []
        for ra, rb, scope in items:
            ua = _units_for(s, "edited", remedies=[ra], scope=scope)
            ub = _units_for(s, "edited", remedies=[rb], scope=scope)
            pooled_a.append(ua); pooled_b.append(ub)
            c = compare(ua, ub, paired=True, n_boot=s.n_boot, n_perm=s.n_perm, seed=s.seed,
                        key=(claim[0], contrast, scope))
            rows.append(_row(claim, "/".join(scope), f"{contrast} ({rb} - {ra})", False, c,
                             verdict(c, direction, s.margin)))
        if items:
            c = compare(pd.concat(pooled_a), pd.concat(pooled_b), paired=True, n_boot=s.n_boot, n_perm=s.n_perm,
                        seed=s.seed, key=(claim[0], contrast, "all"))
            rows.insert(len(rows) - len(items), _row(claim, "all", contrast, i == len(by_contrast) - 1, c,
                                                     verdict(c, direction, s.margin)))
    return rows


def _remedy_contrast(claim, s: Study, differ: str, pick_a, pick_b, contrast_of, missing: str) -> list[dict]:
    pairs = _pairs(s.rt, differ, pick_a, pick_b)
    if differ == "paraphrase_k":
        pairs.sort(key=lambda x: float(s.rt[s.rt.remedy == x[1]].paraphrase_k.iloc[0]))
    rows = _pair_comparisons(claim, s, pairs, lambda ra, rb: contrast_of(ra, rb) + _traits_note(s.rt, ra, differ))
    return rows or [_row(claim, "all", "", True, None, NOT_IN_GRID, missing)]


def _trait(s: Study, remedy: str, col: str):
    return s.rt[s.rt.remedy == remedy][col].iloc[0]


def edited_vs_intrinsic(claim, s: Study) -> list[dict]:
    """C1: intrinsic - edited retention in the baseline cells (different facts: unpaired)."""
    rt = s.rt
    base = rt[(rt.paraphrase_k == 0) & (rt.freeze == "none") & (rt.method == "full")]
    if base.empty:
        return [_row(claim, "all", "", True, None, NOT_IN_GRID, "no baseline remedy (k=0, no freezing, full)")]
    pa, pb, sub_rows = [], [], []
    for scope in _scopes(base):
        rems = list(_in_scope(base, scope))
        ue = _units_for(s, "edited", remedies=rems, scope=scope)
        ui = _units_for(s, "intrinsic", remedies=rems, scope=scope)
        pa.append(ue); pb.append(ui)
        c = compare(ue, ui, paired=False, n_boot=s.n_boot, n_perm=s.n_perm, seed=s.seed, key=("C1", scope))
        sub_rows.append(_row(claim, "/".join(scope), "intrinsic - edited retention", False, c,
                             verdict(c, 1, s.margin)))
    c = compare(pd.concat(pa), pd.concat(pb), paired=False, n_boot=s.n_boot, n_perm=s.n_perm, seed=s.seed,
                key=("C1", "all"))
    return [_row(claim, "all", "intrinsic - edited retention", True, c, verdict(c, 1, s.margin))] + sub_rows


def paraphrases_help(claim, s: Study) -> list[dict]:
    """C2: retention with k > 0 augmentation paraphrases vs k = 0 (same facts: paired)."""
    return _remedy_contrast(claim, s, "paraphrase_k", lambda r: r.paraphrase_k == 0, lambda r: r.paraphrase_k > 0,
                            lambda ra, rb: f"k={int(_trait(s, rb, 'paraphrase_k'))} vs k=0",
                            "no remedy with paraphrase_k > 0 beside one with k = 0 and the same freezing and method")


def freezing_helps(claim, s: Study) -> list[dict]:
    """C3: retention with the edited layers frozen vs no freezing (paired)."""
    return _remedy_contrast(claim, s, "freeze", lambda r: r.freeze == "none",
                            lambda r: r.freeze in TRAINS_NON_EDITED_ONLY,
                            lambda ra, rb: f"freeze={_trait(s, rb, 'freeze')} vs none",
                            "no remedy freezing the edited layers beside one without freezing")


def frozen_still_forgets(claim, s: Study) -> list[dict]:
    """F1: edit forgetting rate when only the non-edited layers train (one-sample), one row
    per freezing strategy: the follow-up's reading (the edited layers frozen, every other
    block trains) is the primary row when the grid has it; the reference study's block
    ranges are rows of their own, never pooled with it (they pin other blocks too)."""
    frozen = s.rt[s.rt.freeze.isin(TRAINS_NON_EDITED_ONLY)]
    if frozen.empty:
        return [_row(claim, "all", "", True, None, NOT_IN_GRID, "no remedy training only non-edited layers")]
    strategies = list(dict.fromkeys(frozen.freeze))
    follow_up = [f for f in strategies if f in ("edited", "non_edited")]
    primary = follow_up[0] if follow_up else strategies[-1]
    rows = []
    for strategy in strategies:
        part = frozen[frozen.freeze == strategy]
        parts, sub_rows = [], []
        for scope in _scopes(part):
            rems = _in_scope(part, scope)
            u = _units_for(s, "edited", metric="efr", remedies=list(rems), scope=scope)
            parts.append(u)
            c = one_sample(u, "efr", s.n_boot, s.seed, ("F1", scope))
            sub_rows.append(_row(claim, "/".join(scope), "EFR of edits (" + ",".join(rems) + ")", False, c,
                                 verdict(c, 1, s.margin, one_sample_=True)))
        c = one_sample(pd.concat(parts), "efr", s.n_boot, s.seed, ("F1", "all"))
        rows += [_row(claim, "all", f"EFR of edits with only non-edited layers trained (freeze={strategy})",
                      strategy == primary, c, verdict(c, 1, s.margin, one_sample_=True))] + sub_rows
    return rows


def lora_erases_less(claim, s: Study) -> list[dict]:
    """F2: retention after LoRA vs full fine-tuning (paired)."""
    return _remedy_contrast(claim, s, "method", lambda r: r.method == "full", lambda r: r.method == "lora",
                            lambda ra, rb: "lora vs full",
                            "no LoRA remedy beside a full fine-tuning one with the same k and freezing")


# (id, source, statement, test): the claims table, in report order.
CLAIMS = [
    ("C1", "arXiv 2507.14198", "edited knowledge is forgotten more than intrinsic knowledge", edited_vs_intrinsic),
    ("C2", "arXiv 2507.14198", "paraphrase augmentation improves retention of edits", paraphrases_help),
    ("C3", "arXiv 2507.14198", "freezing the edited layers improves retention of edits", freezing_helps),
    ("F1", "arXiv 2511.05852", "fine-tuning only the non-edited layers still erases edits", frozen_still_forgets),
    ("F2", "arXiv 2511.05852", "LoRA erases less than full fine-tuning", lora_erases_less),
]


def withhold_unhealthy(rows: list[dict], unhealthy: dict[tuple[str, str], str]) -> list[dict]:
    """Rows whose cells come from an edit that failed the health gate get the verdict
    ``health_table.UNHEALTHY`` instead of one (their numbers stay, for inspection): a
    per-scope row when its (model, editor) has an unhealthy edit, a pooled row when any
    scope of its claim does. The gate is per editor: one broken edit of an editor withholds
    every claim about that editor's cells (the safe side)."""
    if not unhealthy:
        return rows
    bad_claims: dict[str, list[str]] = {}
    for r in rows:
        parts = str(r["scope"]).split("/")
        if r["scope"] != "all" and len(parts) >= 2 and (parts[0], parts[1]) in unhealthy:
            bad_claims.setdefault(r["claim"], []).append(f"{parts[1]}: {unhealthy[(parts[0], parts[1])]}")
    out = []
    for r in rows:
        parts = str(r["scope"]).split("/")
        if r["scope"] == "all":
            reasons = sorted(set(bad_claims.get(r["claim"], [])))
        else:
            reasons = [f"{parts[1]}: {unhealthy[(parts[0], parts[1])]}"] if (parts[0], parts[1]) in unhealthy else []
        if reasons and r["verdict"] != NOT_IN_GRID:
            note = "; ".join(x for x in (r["note"], "withheld, edit health gate failed: " + " | ".join(reasons)) if x)
            r = dict(r, verdict=UNHEALTHY, note=note)
        out.append(r)
    return out


# Claims that compare edited with intrinsic facts: the only ones the asymmetric pairing changes.
MIXED = {"C1"}


def claim_protocols(units: pd.DataFrame) -> list[str]:
    """Protocols the units carry (probability always), then ASYMMETRIC when both of its
    protocols are there. A protocol counts as carried when any of its metrics has units
    (its retention may still have none: n = 0 is then reported, not hidden)."""
    have = {split_metric(m)[1] for m in set(units["metric"])} if len(units) else set()
    got = [p for p in PROTOCOLS if p == PROBABILITY or p in have]
    return got + ([ASYMMETRIC] if set(REFERENCE_PAIRING.values()) <= set(got) else [])


def evaluate_claims(units: pd.DataFrame, cells: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                    seed: int = 0, margin: float = MARGIN,
                    unhealthy: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """The claims table (``CLAIM_COLUMNS``): every claim of ``CLAIMS`` on these cells;
    ``unhealthy`` ({(model, editor): reasons}, ``health_table.unhealthy_scopes``) withholds
    the verdicts that rest on broken edits (``withhold_unhealthy``)."""
    if "paraphrase_k" not in cells or cells["paraphrase_k"].isna().all():
        rows = [_row(c[:3], "all", "", True, None, CANNOT_TELL,
                     "remedy definitions were not given to summarize (--remedies)") for c in CLAIMS]
        return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    rows = []
    for protocol in claim_protocols(units):
        study = Study(units, _remedy_table(cells), n_boot, n_perm, seed, margin, protocol)
        for cid, source, statement, test in CLAIMS:
            if protocol == ASYMMETRIC and cid not in MIXED:
                continue
            rows += [dict(r, protocol=protocol) for r in test((cid, source, statement), study)]
    return pd.DataFrame(withhold_unhealthy(rows, unhealthy or {}), columns=CLAIM_COLUMNS)
