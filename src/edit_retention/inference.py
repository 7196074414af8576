"""Statistical inference on per-fact units: cell intervals, claim tests, elasticity fits.

Pure functions (numpy / pandas, no I/O). Every random draw comes from
``numpy.random.default_rng`` seeded from the caller's seed and a stable hash of what is
being estimated, so the same inputs always give the same numbers.

Usage::

    from edit_retention import inference as I
    cells = I.cell_table(units, summary, traits)            # data/results/cells.csv
    claims = I.evaluate_claims(units, cells)                # data/results/claims.csv
    fits = I.elasticity(units, cells)                       # retention vs k / size / steps

Units
-----
``summarize`` writes one *unit* per (cell, seed, knowledge, phase, metric, fact)::

    model, editor, task, remedy, seed, knowledge, phase, metric, case_id, relation, num, den

A metric's value over any set of units is ``sum(num) / sum(den)`` (``exp`` of it for
``target_prob_ratio``, whose ``num`` is a log ratio). For share-type metrics (ES, PS, NS,
top-1, P(target)) ``den`` is 1 per fact, so the value is the mean over facts; for
retention ``den`` is 1 when the fact held before fine-tuning, and for
``retention_paraphrase`` it is the number of the fact's paraphrases that held. These sums
reproduce the per-seed numbers of ``summary.csv`` exactly and pool seeds by counts.

Interval for one cell: two-way bootstrap over facts and seeds
--------------------------------------------------------------
The same facts are scored under every seed (a crossed design: facts x seeds), so neither
"all (fact, seed) pairs independent" nor "average the seeds first" is right. Each
replicate draws fact multiplicities (multinomial, within each relation, as the facts
were sampled per relation) and, independently, seed multiplicities (multinomial over
the seeds: seeds are the second level); a unit's weight is the product, and the
replicate's value is the weighted ratio. The 95% interval is the 2.5/97.5 percentile of
``N_BOOT`` replicates; for counts (ES, top-1, retention, EFR) it is united with the Wilson
interval of the pooled count, because a bootstrap of 24/24 successes is [1, 1]. With one seed the seed level is constant and this is the ordinary
cluster bootstrap over facts. ``std`` is the spread of unit values (num/den, weighted by
den) over facts and seeds; ``seed_std`` the standard deviation of the per-seed values
(NaN with one seed).

Comparing two groups (claims)
-----------------------------
Effect = relation-stratified difference of the two pooled values: within each stratum
(model, editor, task, relation) the difference of the two ratios, averaged with the
Cochran-Mantel-Haenszel weights n_a n_b / (n_a + n_b); strata that only one group has
are left out (and counted in ``note``). Stratifying by relation is the "facts matched by
relation" of the study design: edited and control facts are different facts, but drawn
alternately from the same relations, and relations differ a lot in how easily they are
forgotten, so an unstratified difference would mix relation effects into the comparison.

* Edited vs intrinsic (different facts): p from a **stratified permutation test**: the
  knowledge labels of whole facts (all seeds together) are shuffled within each relation
  stratum. It is exact under the null that, within a relation, being edited does not
  change a fact's retention, needs no normal approximation at n ~ 10-50 per cell, and
  keeps a fact's seeds together (they are not independent).
* Remedy vs remedy (the same facts under two remedies, e.g. freeze vs none): p from a
  **paired sign-flip permutation test**: per fact the two conditions' outcomes are swapped
  with probability 1/2, again keeping seeds together.
* The 95% CI of the effect is the union of the two-way bootstrap interval (facts
  resampled within each relation stratum, jointly for both groups when they share facts,
  and seeds) and Newcombe's hybrid score interval on the pooled counts. The bootstrap
  accounts for clustering by fact and seed but collapses to a point when every outcome is
  equal (41/41 retained gives [0, 0]); Newcombe's interval does not collapse. Using the
  union never claims more certainty than either.

Verdicts (``verdict``): with the effect signed so that positive is the claim's
direction, **supports** when the CI lies above 0 and p < 0.05; **contradicts** when the
CI lies below 0 and p < 0.05, or when the whole CI lies inside +-``MARGIN`` (an effect
too small to matter, measured precisely); otherwise **cannot tell at this n**.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd

from . import metrics as M

N_BOOT = 1000
N_PERM = 2000
MARGIN = 0.05
ALPHA = 0.05
LOG_METRICS = {"target_prob_ratio"}      # num is a log ratio: value = exp(sum num / sum den)
# Counts of successes out of den: their cell CI is also united with Wilson's interval.
COUNT_METRICS = {"rewrite_success", "top1_accuracy", "retention_rewrite", "efr", "retention_paraphrase"}
CELL_KEYS = ["model", "editor", "task", "remedy"]
GROUP_KEYS = CELL_KEYS + ["knowledge", "phase", "metric"]
TRAIT_COLUMNS = ["paraphrase_k", "freeze", "method", "n_edits", "step"]
CELL_COLUMNS = GROUP_KEYS + ["value", "std", "seed_std", "ci_low", "ci_high", "n", "n_facts", "n_seeds",
                             "seeds"] + TRAIT_COLUMNS
NOT_IN_GRID = "not in this grid"
CANNOT_TELL = "cannot tell at this n"


def _rng(seed: int, *key) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``key`` (not Python's hash())."""
    return np.random.default_rng([int(seed), zlib.crc32(repr(key).encode())])


def _transform(metric: str, x):
    return np.exp(x) if metric in LOG_METRICS else x


def phase_step(phase: str, total_steps: float | None = None) -> float:
    """Fine-tuning step of a phase: edited 0, step-N N, finetuned the task's steps."""
    if phase == "edited":
        return 0.0
    m = re.fullmatch(r"step-(\d+)", str(phase))
    if m:
        return float(m.group(1))
    if phase == "finetuned" and total_steps is not None:
        return float(total_steps)
    return math.nan


def phase_order(phase: str) -> tuple:
    """Sort key: base, edited, step-N by N, finetuned, then anything else by name."""
    m = re.fullmatch(r"step-(\d+)", str(phase))
    if phase == "base":
        return (0, 0, "")
    if phase == "edited":
        return (1, 0, "")
    if m:
        return (2, int(m.group(1)), "")
    if phase == "finetuned":
        return (3, 0, "")
    return (4, 0, str(phase))


# ---------------------------------------------------------------------------------------
# Remedy definitions -> traits
# ---------------------------------------------------------------------------------------

NON_EDITED_ONLY = {"edited", "non_edited", "train_non_edited", "only_non_edited"}


def remedy_traits(remedies: dict | None, tasks: dict | None = None) -> dict[str, dict]:
    """{remedy: {paraphrase_k, freeze, method}} from the study's ``remedies:`` config.

    ``method`` (full | lora | dora) is the remedy's ``method`` field (a name, or an object
    whose ``type`` is the name); absent means full fine-tuning. Remedies are told apart by
    these definitions, never by their names.
    """
    out = {}
    for name, spec in (remedies or {}).items():
        spec = spec or {}
        method = spec.get("method") or (spec.get("finetune") or {}).get("method") or "full"
        if isinstance(method, dict):                      # {type: lora, r: .., ...}
            method = method.get("type", "full")
        out[str(name)] = {"paraphrase_k": spec.get("paraphrase_k", math.nan),
                          "freeze": str(spec.get("freeze", "none")), "method": str(method).lower(),
                          "n_edits": spec.get("n_edits", spec.get("edit_set_size"))}
    return out


def task_steps(tasks: dict | None) -> dict[str, float]:
    """{task: number of fine-tuning steps} from the ``tasks:`` config (params.steps)."""
    out = {}
    for name, spec in (tasks or {}).items():
        steps = ((spec or {}).get("params") or {}).get("steps")
        if isinstance(steps, (int, float)) and not isinstance(steps, bool):
            out[str(name)] = float(steps)
    return out


# ---------------------------------------------------------------------------------------
# Bootstrap machinery
# ---------------------------------------------------------------------------------------

def _codes(values) -> tuple[np.ndarray, list]:
    cats = list(dict.fromkeys(values))
    index = {c: i for i, c in enumerate(cats)}
    return np.array([index[v] for v in values], dtype=np.int64), cats


def _multinomial_weights(rng, strata: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, len(strata)) resampling multiplicities, each stratum resampled to its size."""
    out = np.zeros((n_boot, len(strata)))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        out[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot)
    return out


def unit_weights(rng, fact_idx: np.ndarray, fact_strata: np.ndarray, seed_idx: np.ndarray,
                 n_seeds: int, n_boot: int) -> np.ndarray:
    """(n_boot, n_units) two-way bootstrap weights: fact multiplicity x seed multiplicity."""
    fw = _multinomial_weights(rng, fact_strata, n_boot)
    sw = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) if n_seeds else np.zeros((n_boot, 0))
    return fw[:, fact_idx] * sw[:, seed_idx]


def _percentile(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)] if np.isfinite(x).any() else x
    if x.size == 0 or np.isnan(x).all():
        return math.nan, math.nan
    lo, hi = np.quantile(x, [ALPHA / 2, 1 - ALPHA / 2])
    return float(lo), float(hi)


def group_estimate(units: pd.DataFrame, metric: str, n_boot: int = N_BOOT, seed: int = 0,
                   key=()) -> dict:
    """value, std, seed_std, ci_low, ci_high, n, n_facts, n_seeds for one set of units."""
    u = units[units["den"] > 0]
    num = u["num"].to_numpy(float)
    den = u["den"].to_numpy(float)
    out = {"value": math.nan, "std": math.nan, "seed_std": math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "n": int(round(den.sum())) if len(u) else 0,
           "n_facts": int(u["case_id"].nunique()), "n_seeds": int(u["seed"].nunique()),
           "seeds": ";".join(str(s) for s in sorted(u["seed"].unique()))}
    if den.sum() <= 0:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        value = num.sum() / den.sum()
        ratios = num / den
        out["value"] = float(_transform(metric, value))
        if np.isfinite(ratios).all():
            out["std"] = float(np.sqrt(np.average((ratios - value) ** 2, weights=den)))
        per_seed = u.groupby("seed")[["num", "den"]].sum()
        seed_vals = _transform(metric, per_seed["num"] / per_seed["den"]).to_numpy(float)
        if len(seed_vals) > 1:
            out["seed_std"] = float(np.std(seed_vals, ddof=1))
        facts, _ = _codes(list(u["case_id"]))
        fact_rel = pd.Series(list(u["relation"])).groupby(facts).first().to_numpy()
        strata, _ = _codes(list(fact_rel))
        seeds, seed_cats = _codes(list(u["seed"]))
        rng = _rng(seed, *key)
        reps = []
        for start in range(0, n_boot, 250):          # bounded memory at paper scale
            w = unit_weights(rng, facts, strata, seeds, len(seed_cats), min(250, n_boot - start))
            reps.append((w @ num) / (w @ den))
        lo, hi = _percentile(_transform(metric, np.concatenate(reps)))
        if metric in COUNT_METRICS and 0 <= num.sum() <= den.sum():
            wl, wh = M.wilson_ci(float(num.sum()), int(round(den.sum())))
            lo, hi = min(lo, wl), max(hi, wh)
    out["ci_low"], out["ci_high"] = lo, hi
    return out


# ---------------------------------------------------------------------------------------
# Cell table
# ---------------------------------------------------------------------------------------

def cell_table(units: pd.DataFrame, summary: pd.DataFrame | None = None, traits: dict | None = None,
               steps: dict | None = None, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per (cell without seed, knowledge, phase, metric): pooled over seeds, with CI.

    Task metrics (knowledge "task" rows of ``summary``) get the mean over seeds, the seed
    standard deviation and a percentile bootstrap over seeds (NaN with fewer than 2).
    ``traits`` (``remedy_traits``) and ``steps`` (``task_steps``) add the remedy's
    paraphrase_k / freeze / method, the edit-set size and the phase's step.
    """
    rows = []
    for key, grp in units.groupby(GROUP_KEYS, sort=False):
        rows.append(dict(zip(GROUP_KEYS, key), **group_estimate(grp, key[-1], n_boot, seed, key)))
    if summary is not None:
        task = summary[summary["knowledge"] == "task"]
        for key, grp in task.groupby(GROUP_KEYS, sort=False):
            vals = grp["value"].to_numpy(float)
            finite = vals[np.isfinite(vals)]
            est = {"value": float(finite.mean()) if finite.size == len(vals) and len(vals) else math.nan,
                   "std": math.nan, "seed_std": float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan,
                   "ci_low": math.nan, "ci_high": math.nan,
                   "n": int(grp["n"].fillna(0).astype(int).sum()), "n_facts": 0,
                   "n_seeds": int(finite.size), "seeds": ";".join(str(s) for s in sorted(grp["seed"]))}
            if finite.size > 1 and finite.size == len(vals):
                est["ci_low"], est["ci_high"] = M.bootstrap_ci(finite, n_boot=n_boot, seed=seed)
            rows.append(dict(zip(GROUP_KEYS, key), **est))
    df = pd.DataFrame(rows, columns=[c for c in CELL_COLUMNS if c not in TRAIT_COLUMNS])
    return add_traits(df, units, traits, steps)


def add_traits(df: pd.DataFrame, units: pd.DataFrame, traits: dict | None, steps: dict | None) -> pd.DataFrame:
    traits = traits or {}
    steps = steps or {}
    edited = units[(units["knowledge"] == "edited") & (units["phase"] == "edited")
                   & (units["metric"] == "rewrite_success")]
    size = edited.groupby(CELL_KEYS)["case_id"].nunique().to_dict()
    out = df.copy()
    get = [traits.get(r, {}) for r in out["remedy"]]
    out["paraphrase_k"] = [t.get("paraphrase_k", math.nan) for t in get]
    out["freeze"] = [t.get("freeze", "unknown") for t in get]
    out["method"] = [t.get("method", "unknown") for t in get]
    out["n_edits"] = [t.get("n_edits") if t.get("n_edits") is not None else size.get(k, math.nan)
                      for t, k in zip(get, zip(*(out[c] for c in CELL_KEYS)))]
    out["step"] = [phase_step(p, steps.get(t)) for p, t in zip(out["phase"], out["task"])]
    out["_order"] = [phase_order(p) for p in out["phase"]]
    out = out.sort_values(CELL_KEYS + ["knowledge", "_order", "metric"], kind="stable")
    return out[CELL_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# Two-group comparison
# ---------------------------------------------------------------------------------------

def newcombe_ci(k1: float, n1: float, k2: float, n2: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p2 - p1 (from two Wilson intervals)."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    l1, u1 = M.wilson_ci(min(max(k1, 0), n1), int(round(n1)) if n1 >= 1 else 1)
    l2, u2 = M.wilson_ci(min(max(k2, 0), n2), int(round(n2)) if n2 >= 1 else 1)
    p1, p2 = k1 / n1, k2 / n2
    d = p2 - p1
    return (d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2))


@dataclass
class Comparison:
    effect: float
    ci_low: float
    ci_high: float
    p: float
    n_a: int
    n_b: int
    n_strata: int
    dropped_strata: int
    test: str
    note: str = ""
    extra: dict = field(default_factory=dict)


def _stratified(num_a, den_a, num_b, den_b) -> np.ndarray:
    """CMH-weighted difference b - a over strata (last axis = strata)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        w = den_a * den_b / (den_a + den_b)
        d = num_b / den_b - num_a / den_a
        ok = (den_a > 0) & (den_b > 0)
        w = np.where(ok, w, 0.0)
        d = np.where(ok, d, 0.0)
        return (w * d).sum(axis=-1) / w.sum(axis=-1)


def compare(a: pd.DataFrame, b: pd.DataFrame, paired: bool, n_boot: int = N_BOOT, n_perm: int = N_PERM,
            seed: int = 0, key=()) -> Comparison:
    """Relation-stratified difference b - a of two unit sets (columns fact, stratum, seed, num, den).

    ``paired``: the groups share facts (remedy comparisons); otherwise the facts differ
    (edited vs intrinsic). See the module docstring for the tests.
    """
    a = a[a["den"] > 0].assign(g=0)
    b = b[b["den"] > 0].assign(g=1)
    both = pd.concat([a, b], ignore_index=True)
    n_a, n_b = int(a["den"].sum()), int(b["den"].sum())
    test = ("paired sign-flip permutation over facts, relation-stratified" if paired
            else "stratified permutation of fact labels within relation")
    if not n_a or not n_b:
        return Comparison(math.nan, math.nan, math.nan, math.nan, n_a, n_b, 0, 0, test, "a group has n = 0")
    strata_a, strata_b = set(a["stratum"]), set(b["stratum"])
    shared = strata_a & strata_b
    dropped = len((strata_a | strata_b) - shared)
    both = both[both["stratum"].isin(shared)]
    if both.empty:
        return Comparison(math.nan, math.nan, math.nan, math.nan, n_a, n_b, 0, dropped, test,
                          "no relation is present in both groups")
    s_idx, s_cats = _codes(list(both["stratum"]))
    S = len(s_cats)
    g = both["g"].to_numpy()
    num, den = both["num"].to_numpy(float), both["den"].to_numpy(float)
    cell = g * S + s_idx                                   # (group, stratum) bin of each unit

    def sums(weights):                                     # (..., U) -> NUM, DEN of shape (..., 2, S)
        nb = np.zeros(weights.shape[:-1] + (2 * S,))
        db = np.zeros_like(nb)
        for c in range(2 * S):
            m = cell == c
            nb[..., c] = (weights[..., m] * num[m]).sum(axis=-1)
            db[..., c] = (weights[..., m] * den[m]).sum(axis=-1)
        return nb.reshape(nb.shape[:-1] + (2, S)), db.reshape(db.shape[:-1] + (2, S))

    ones = np.ones(len(both))
    NUM, DEN = sums(ones)
    effect = float(_stratified(NUM[0], DEN[0], NUM[1], DEN[1]))
    rng = _rng(seed, "compare", *key)
    # Bootstrap: facts within stratum (jointly for both groups when paired), and seeds.
    fkey = list(zip(both["fact"], both["stratum"])) if paired else list(zip(g, both["fact"], both["stratum"]))
    f_idx, f_cats = _codes(fkey)
    f_strata, _ = _codes([(c[-1],) if paired else (c[0], c[-1]) for c in f_cats])
    sd_idx, sd_cats = _codes(list(both["seed"]))
    reps = []
    for start in range(0, n_boot, 250):
        w = unit_weights(rng, f_idx, f_strata, sd_idx, len(sd_cats), min(250, n_boot - start))
        Nw, Dw = sums(w)
        reps.append(_stratified(Nw[:, 0], Dw[:, 0], Nw[:, 1], Dw[:, 1]))
    b_lo, b_hi = _percentile(np.concatenate(reps))
    # Newcombe on the pooled counts (meaningful for 0/1 outcomes; clipped otherwise).
    ka, kb = float(NUM[0].sum()), float(NUM[1].sum())
    da, db = float(DEN[0].sum()), float(DEN[1].sum())
    if 0 <= ka <= da and 0 <= kb <= db:
        n_lo, n_hi = newcombe_ci(ka, da, kb, db)
        lo, hi = min(b_lo, n_lo), max(b_hi, n_hi)
    else:
        lo, hi = b_lo, b_hi
    p = _permutation_p(both, s_idx, S, paired, effect, rng, n_perm)
    note = f"{dropped} stratum/strata in one group only, left out" if dropped else ""
    return Comparison(effect, float(lo), float(hi), p, n_a, n_b, S, dropped, test, note)


def _permutation_p(both: pd.DataFrame, s_idx: np.ndarray, S: int, paired: bool, observed: float,
                   rng, n_perm: int) -> float:
    """Two-sided permutation p-value of the stratified difference (facts keep their seeds)."""
    fact = both.assign(s=s_idx).groupby(["g", "fact", "s"], sort=True)[["num", "den"]].sum().reset_index()
    perm_stats = np.zeros(n_perm)
    NA = np.zeros((n_perm, S)); DA = np.zeros((n_perm, S)); NB = np.zeros((n_perm, S)); DB = np.zeros((n_perm, S))
    for s in range(S):
        fs = fact[fact["s"] == s]
        if paired:
            wide = fs.pivot_table(index="fact", columns="g", values=["num", "den"], aggfunc="sum", fill_value=0.0)
            na = wide[("num", 0)].to_numpy() if ("num", 0) in wide else np.zeros(len(wide))
            da = wide[("den", 0)].to_numpy() if ("den", 0) in wide else np.zeros(len(wide))
            nb = wide[("num", 1)].to_numpy() if ("num", 1) in wide else np.zeros(len(wide))
            db = wide[("den", 1)].to_numpy() if ("den", 1) in wide else np.zeros(len(wide))
            flip = rng.random((n_perm, len(wide))) < 0.5
            NA[:, s] = np.where(flip, nb, na).sum(1); DA[:, s] = np.where(flip, db, da).sum(1)
            NB[:, s] = np.where(flip, na, nb).sum(1); DB[:, s] = np.where(flip, da, db).sum(1)
        else:
            labels = fs["g"].to_numpy()
            n_, d_ = fs["num"].to_numpy(), fs["den"].to_numpy()
            perm = np.argsort(rng.random((n_perm, len(fs))), axis=1)
            lb = labels[perm] == 1
            NB[:, s] = (lb * n_).sum(1); DB[:, s] = (lb * d_).sum(1)
            NA[:, s] = (~lb * n_).sum(1); DA[:, s] = (~lb * d_).sum(1)
    perm_stats = _stratified(NA, DA, NB, DB)
    if not np.isfinite(observed):
        return math.nan
    extreme = np.sum(np.abs(np.nan_to_num(perm_stats, nan=0.0)) >= abs(observed) - 1e-12)
    return float((1 + extreme) / (1 + n_perm))


def one_sample(units: pd.DataFrame, metric: str = "efr", n_boot: int = N_BOOT, seed: int = 0, key=()) -> Comparison:
    """A share with its CI (two-way bootstrap union Wilson); no p (a bound, not a test)."""
    u = units.assign(case_id=units["fact"], relation=units["stratum"])
    est = group_estimate(u, metric, n_boot, seed, ("one", *key))
    k, n = float(u.loc[u.den > 0, "num"].sum()), float(u.loc[u.den > 0, "den"].sum())
    lo, hi = est["ci_low"], est["ci_high"]
    if n > 0 and 0 <= k <= n:
        wl, wh = M.wilson_ci(k, int(round(n)))
        lo, hi = min(lo, wl), max(hi, wh)
    return Comparison(est["value"], lo, hi, math.nan, int(n), 0, u["stratum"].nunique(), 0,
                      "one-sample share: two-way bootstrap CI union Wilson")


def verdict(c: Comparison, direction: int = 1, margin: float = MARGIN, one_sample_: bool = False) -> str:
    """supports | contradicts | cannot tell at this n (see the module docstring)."""
    if not (np.isfinite(c.effect) and np.isfinite(c.ci_low) and np.isfinite(c.ci_high)):
        return CANNOT_TELL
    lo, hi = (c.ci_low, c.ci_high) if direction > 0 else (-c.ci_high, -c.ci_low)
    if one_sample_:                          # effect is a share that the claim says is > 0
        if lo > 0:
            return "supports"
        if hi < margin:
            return "contradicts"
        return CANNOT_TELL
    significant = np.isfinite(c.p) and c.p < ALPHA
    if lo > 0 and significant:
        return "supports"
    if hi < 0 and significant:
        return "contradicts"
    if -margin < lo and hi < margin:
        return "contradicts"
    return CANNOT_TELL


# ---------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------

CLAIMS = [
    ("C1", "arXiv 2507.14198", "edited knowledge is forgotten more than intrinsic knowledge"),
    ("C2", "arXiv 2507.14198", "paraphrase augmentation improves retention of edits"),
    ("C3", "arXiv 2507.14198", "freezing the edited layers improves retention of edits"),
    ("F1", "arXiv 2511.05852", "fine-tuning only the non-edited layers still erases edits"),
    ("F2", "arXiv 2511.05852", "LoRA erases less than full fine-tuning"),
]
CLAIM_COLUMNS = ["claim", "source", "statement", "scope", "contrast", "primary", "test", "effect", "ci_low",
                 "ci_high", "p", "n_a", "n_b", "verdict", "note"]
RETENTION = "retention_rewrite"
FINAL_PHASE = "finetuned"


def _remedy_table(cells: pd.DataFrame) -> pd.DataFrame:
    t = cells[CELL_KEYS[:3] + ["remedy", "paraphrase_k", "freeze", "method"]].drop_duplicates(CELL_KEYS)
    return t.reset_index(drop=True)


def _units_for(units: pd.DataFrame, knowledge: str, metric: str = RETENTION, phase: str = FINAL_PHASE,
               remedies=None, scope=None) -> pd.DataFrame:
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
    base = {"claim": cid, "source": source, "statement": statement, "scope": scope, "contrast": contrast,
            "primary": primary, "verdict": verdict_}
    if c is None:
        return dict(base, test="", effect=math.nan, ci_low=math.nan, ci_high=math.nan, p=math.nan, n_a=0, n_b=0,
                    note=note)
    return dict(base, test=c.test, effect=c.effect, ci_low=c.ci_low, ci_high=c.ci_high, p=c.p, n_a=c.n_a,
                n_b=c.n_b, note="; ".join(x for x in (c.note, note) if x))


def _scopes(table: pd.DataFrame) -> list[tuple]:
    return list(dict.fromkeys(zip(table.model, table.editor, table.task)))


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


def _pair_comparisons(claim, units, pairs, contrast_of, n_boot, n_perm, seed, margin=MARGIN, direction=1):
    """Rows for remedy-vs-remedy contrasts (edited retention), per scope and pooled."""
    rows = []
    by_contrast: dict[str, list] = {}
    for ra, rb, scope in pairs:
        by_contrast.setdefault(contrast_of(ra, rb), []).append((ra, rb, scope))
    for i, (contrast, items) in enumerate(by_contrast.items()):
        pooled_a, pooled_b = [], []
        for ra, rb, scope in items:
            ua = _units_for(units, "edited", remedies=[ra], scope=scope)
            ub = _units_for(units, "edited", remedies=[rb], scope=scope)
            pooled_a.append(ua); pooled_b.append(ub)
            c = compare(ua, ub, paired=True, n_boot=n_boot, n_perm=n_perm, seed=seed, key=(claim[0], contrast, scope))
            rows.append(_row(claim, "/".join(scope), f"{contrast} ({rb} - {ra})", False, c, verdict(c, direction, margin)))
        if items:
            c = compare(pd.concat(pooled_a), pd.concat(pooled_b), paired=True, n_boot=n_boot, n_perm=n_perm,
                        seed=seed, key=(claim[0], contrast, "all"))
            rows.insert(len(rows) - len(items), _row(claim, "all", contrast, i == len(by_contrast) - 1, c,
                                                     verdict(c, direction, margin)))
    return rows


def evaluate_claims(units: pd.DataFrame, cells: pd.DataFrame, n_boot: int = N_BOOT, n_perm: int = N_PERM,
                    seed: int = 0, margin: float = MARGIN) -> pd.DataFrame:
    """The claims table (``CLAIM_COLUMNS``), from whatever cells the grid has.

    How cells are found (by the remedy *definitions* in cells.csv, never remedy names):
    baseline = paraphrase_k 0, freeze "none", method "full".
    C1  edited vs intrinsic retention_rewrite after fine-tuning in baseline cells
        (effect = intrinsic - edited; positive = edited forgotten more).
    C2  each remedy with paraphrase_k > 0 vs the remedy equal to it but with k = 0 (same
        freeze and method); effect = retention(k) - retention(0). Primary row: largest k.
    C3  freeze in {edited, non_edited, ...} (only non-edited layers train) vs freeze
        "none", same k and method; effect = retention(frozen) - retention(none).
    F1  in the frozen cells of C3: edit forgetting rate (one-sample); supports when its
        CI lies above 0, contradicts when it lies below ``margin``.
    F2  method "lora" vs "full", same k and freeze; effect = retention(lora) - retention(full).
    Each claim has one pooled row (scope "all": strata are model/editor/task/relation)
    and one row per (model, editor, task); ``primary`` marks the row giving the verdict.
    """
    rows = []
    if "paraphrase_k" not in cells or cells["paraphrase_k"].isna().all():
        for claim in CLAIMS:
            rows.append(_row(claim, "all", "", True, None, CANNOT_TELL,
                             "remedy definitions were not given to summarize (--remedies)"))
        return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    rt = _remedy_table(cells)
    base = rt[(rt.paraphrase_k == 0) & (rt.freeze == "none") & (rt.method == "full")]
    # C1
    claim = CLAIMS[0]
    if base.empty:
        rows.append(_row(claim, "all", "", True, None, NOT_IN_GRID, "no baseline remedy (k=0, no freezing, full)"))
    else:
        pa, pb = [], []
        sub_rows = []
        for scope in _scopes(base):
            rems = base[(base.model == scope[0]) & (base.editor == scope[1]) & (base.task == scope[2])].remedy
            ue = _units_for(units, "edited", remedies=list(rems), scope=scope)
            ui = _units_for(units, "intrinsic", remedies=list(rems), scope=scope)
            pa.append(ue); pb.append(ui)
            c = compare(ue, ui, paired=False, n_boot=n_boot, n_perm=n_perm, seed=seed, key=("C1", scope))
            sub_rows.append(_row(claim, "/".join(scope), "intrinsic - edited retention", False, c,
                                 verdict(c, 1, margin)))
        c = compare(pd.concat(pa), pd.concat(pb), paired=False, n_boot=n_boot, n_perm=n_perm, seed=seed,
                    key=("C1", "all"))
        rows.append(_row(claim, "all", "intrinsic - edited retention", True, c, verdict(c, 1, margin)))
        rows += sub_rows
    # C2
    claim = CLAIMS[1]
    pairs = _pairs(rt, "paraphrase_k", lambda r: r.paraphrase_k == 0, lambda r: r.paraphrase_k > 0)
    pairs.sort(key=lambda x: float(rt[rt.remedy == x[1]].paraphrase_k.iloc[0]))
    got = _pair_comparisons(claim, units, pairs,
                            lambda ra, rb: f"k={int(rt[rt.remedy == rb].paraphrase_k.iloc[0])} vs k=0"
                            + _traits_note(rt, ra, "paraphrase_k"),
                            n_boot, n_perm, seed, margin)
    rows += got or [_row(claim, "all", "", True, None, NOT_IN_GRID, "no remedy with paraphrase_k > 0 "
                         "beside one with k = 0 and the same freezing and method")]
    # C3
    claim = CLAIMS[2]
    pairs = _pairs(rt, "freeze", lambda r: r.freeze == "none", lambda r: r.freeze in NON_EDITED_ONLY)
    got = _pair_comparisons(claim, units, pairs, lambda ra, rb: f"freeze={rt[rt.remedy == rb].freeze.iloc[0]} vs none"
                            + _traits_note(rt, ra, "freeze"),
                            n_boot, n_perm, seed, margin)
    rows += got or [_row(claim, "all", "", True, None, NOT_IN_GRID, "no remedy freezing the edited layers "
                         "beside one without freezing")]
    # F1
    claim = CLAIMS[3]
    frozen = rt[rt.freeze.isin(NON_EDITED_ONLY)]
    if frozen.empty:
        rows.append(_row(claim, "all", "", True, None, NOT_IN_GRID, "no remedy training only non-edited layers"))
    else:
        parts, sub_rows = [], []
        for scope in _scopes(frozen):
            rems = frozen[(frozen.model == scope[0]) & (frozen.editor == scope[1]) & (frozen.task == scope[2])].remedy
            u = _units_for(units, "edited", metric="efr", remedies=list(rems), scope=scope)
            parts.append(u)
            c = one_sample(u, "efr", n_boot, seed, ("F1", scope))
            sub_rows.append(_row(claim, "/".join(scope), "EFR of edits (" + ",".join(rems) + ")", False, c,
                                 verdict(c, 1, margin, one_sample_=True)))
        c = one_sample(pd.concat(parts), "efr", n_boot, seed, ("F1", "all"))
        rows.append(_row(claim, "all", "EFR of edits with only non-edited layers trained", True, c,
                         verdict(c, 1, margin, one_sample_=True)))
        rows += sub_rows
    # F2
    claim = CLAIMS[4]
    pairs = _pairs(rt, "method", lambda r: r.method == "full", lambda r: r.method == "lora")
    got = _pair_comparisons(claim, units, pairs, lambda ra, rb: "lora vs full" + _traits_note(rt, ra, "method"),
                            n_boot, n_perm, seed, margin)
    rows += got or [_row(claim, "all", "", True, None, NOT_IN_GRID, "no LoRA remedy beside a full "
                         "fine-tuning one with the same k and freezing")]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# ---------------------------------------------------------------------------------------
# Elasticity: retention vs k, edit-set size, fine-tuning steps
# ---------------------------------------------------------------------------------------

MIN_POINTS = {"k": 3, "n_edits": 3, "step": 3}   # distinct x values (steps: > 0, besides R(0) = 1)
N_BOOT_FIT = 300


def fit_log_linear(x, y, w) -> tuple[float, float]:
    """Weighted least squares y = a + b ln(x') with x' = 1 + x (k) or x (sizes > 0); returns (a, b)."""
    x, y, w = (np.asarray(v, float) for v in (x, y, w))
    X = np.stack([np.ones_like(x), x], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    return float(coef[0]), float(coef[1])


def fit_decay(t, y, w, t_max: float | None = None) -> tuple[float, float]:
    """Least squares R(t) = r_inf + (1 - r_inf) exp(-lam t) (R(0) = 1 by definition).

    For each lam on a log grid r_inf has a closed form (linear least squares, clipped to
    [0, 1]); the lam with the smallest weighted squared error wins. Returns (r_inf, lam).
    """
    t, y, w = (np.asarray(v, float) for v in (t, y, w))
    t_max = float(t_max or t.max() or 1.0)
    lams = np.geomspace(1e-3 / t_max, 50.0 / t_max, 400)
    e = np.exp(-np.outer(lams, t))                         # (L, P)
    one_e = 1.0 - e
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((w * one_e * (y - e)).sum(1) / (w * one_e ** 2).sum(1), 0.0, 1.0)
    sse = (w * (y - (r[:, None] * one_e + e)) ** 2).sum(1)
    i = int(np.nanargmin(sse))
    return float(r[i]), float(lams[i])


def _curve_points(units, cells, knowledge, scope_cols, xcol, sel):
    """Units with an x column for one curve (retention_rewrite)."""
    c = cells[(cells.knowledge == knowledge) & (cells.metric == RETENTION) & sel(cells)]
    keys = c[GROUP_KEYS + [xcol]].drop_duplicates(GROUP_KEYS)
    u = units.merge(keys, on=GROUP_KEYS, how="inner")
    return u[u.den > 0]


def _py(v):
    """numpy scalars -> plain Python (for JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def _fit_curve(kind: str, u: pd.DataFrame, n_boot: int, seed: int, key) -> dict:
    """Point fit + bootstrap (facts and seeds, joint across x) of one curve's units (column x)."""
    xs = np.array(sorted(u["x"].unique()), float)
    out = {"kind": kind, "x": xs.tolist(), "points": [], "n_points": int(len(xs))}
    agg = u.groupby("x")[["num", "den"]].sum()
    y = (agg["num"] / agg["den"]).reindex(xs).to_numpy(float)
    n = agg["den"].reindex(xs).to_numpy(float)
    out["points"] = [{"x": float(a), "retention": float(b), "n": int(c)} for a, b, c in zip(xs, y, n)]
    if len(xs) < MIN_POINTS[kind]:
        out["status"] = f"too few points: {len(xs)} distinct {kind} value(s), a fit needs {MIN_POINTS[kind]}"
        return out

    def fit(yv, nv):
        if kind == "step":
            t = np.concatenate([[0.0], xs])
            r_inf, lam = fit_decay(t, np.concatenate([[1.0], yv]), np.concatenate([[nv.max()], nv]))
            return {"r_inf": r_inf, "lam": lam, "half_life": math.log(2) / lam}
        xt = np.log1p(xs) if kind == "k" else np.log(xs)
        a, b = fit_log_linear(xt, yv, nv)
        return {"intercept": a, "slope": b}

    out["fit"] = fit(y, n)
    f_idx, f_cats = _codes(list(u["case_id"]))
    rel = pd.Series(list(u["relation"])).groupby(f_idx).first().to_numpy()
    strata, _ = _codes(list(rel))
    s_idx, s_cats = _codes(list(u["seed"]))
    x_idx = np.searchsorted(xs, u["x"].to_numpy(float))
    rng = _rng(seed, "fit", *key)
    w = unit_weights(rng, f_idx, strata, s_idx, len(s_cats), n_boot)
    num, den = u["num"].to_numpy(float), u["den"].to_numpy(float)
    NUM = np.stack([(w[:, x_idx == j] * num[x_idx == j]).sum(1) for j in range(len(xs))], 1)
    DEN = np.stack([(w[:, x_idx == j] * den[x_idx == j]).sum(1) for j in range(len(xs))], 1)
    fits = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for r in range(n_boot):
            if (DEN[r] > 0).all():
                fits.append(fit(NUM[r] / DEN[r], DEN[r]))
    out["ci"] = {k: list(_percentile(np.array([f[k] for f in fits]))) for k in out["fit"]}
    out["n_boot"] = len(fits)
    out["status"] = "fitted"
    return out


def elasticity(units: pd.DataFrame, cells: pd.DataFrame, n_boot: int = N_BOOT_FIT, seed: int = 0) -> list[dict]:
    """Fitted retention curves (retention_rewrite after fine-tuning unless stated).

    * ``k``: edited retention vs paraphrase_k, per (model, editor, task, freeze, method):
      R = a + b ln(1 + k); ``slope`` b is the gain per e-fold of edit data (the reference
      study's data-volume argument predicts b > 0).
    * ``n_edits``: edited retention vs edit-set size, per (model, editor, task, k, freeze,
      method): R = a + b ln(N).
    * ``step``: retention vs fine-tuning step, per cell (remedy) and knowledge, over the
      edited phase (step 0, R = 1), checkpoints step-N and the final phase:
      R(t) = r_inf + (1 - r_inf) exp(-lam t); ``half_life`` = ln 2 / lam.
    Each fit has a bootstrap CI (facts within relation and seeds, resampled jointly
    across the curve's points); with too few distinct x values the curve is listed with
    ``status`` "too few points: ...".
    """
    out = []
    if units.empty or cells.empty:
        return out
    final = cells.phase == FINAL_PHASE
    for kind, group_cols in (("k", ["model", "editor", "task", "freeze", "method"]),
                             ("n_edits", ["model", "editor", "task", "paraphrase_k", "freeze", "method"])):
        xcol = "paraphrase_k" if kind == "k" else "n_edits"
        u = _curve_points(units, cells[final], "edited", group_cols, xcol, lambda c: c[xcol].notna())
        if u.empty:
            continue
        u = u.rename(columns={xcol: "x"})
        trait = cells[CELL_KEYS + [c for c in group_cols if c not in CELL_KEYS]].drop_duplicates(CELL_KEYS)
        u = u.merge(trait, on=CELL_KEYS, how="left")
        for key, grp in u.groupby(group_cols, sort=False):
            if kind == "n_edits" and (grp["x"] <= 0).any():
                continue
            res = _fit_curve(kind, grp, n_boot, seed, (kind, key))
            res.update({c: _py(v) for c, v in zip(group_cols, key)}, knowledge="edited")
            out.append(res)
    late = cells[cells.step.notna() & (cells.step > 0)]
    for knowledge in ("edited", "intrinsic"):
        u = _curve_points(units, late, knowledge, None, "step", lambda c: c.step.notna()).rename(columns={"step": "x"})
        for key, grp in u.groupby(CELL_KEYS, sort=False):
            res = _fit_curve("step", grp, n_boot, seed, ("step", knowledge, key))
            res.update({c: _py(v) for c, v in zip(CELL_KEYS, key)}, knowledge=knowledge)
            out.append(res)
    return out
