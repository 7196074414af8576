"""Comparing two groups of units (the claims' tests) and the verdict on a comparison.

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
  and seeds) and Newcombe's hybrid score interval on the pooled counts (for paired 0/1
  outcomes matched on fact and seed, his paired version with the outcomes' phi
  correlation, which a remedy comparison needs to gain from its pairing). The bootstrap
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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import metrics as M
from .bootstrap import ALPHA, N_BOOT, codes, group_estimate, percentile_ci, seeded_rng, unit_weights

N_PERM = 2000
MARGIN = 0.05
NOT_IN_GRID = "not in this grid"
CANNOT_TELL = "cannot tell at this n"


def newcombe_ci(k1: float, n1: float, k2: float, n2: float, phi: float = 0.0) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p2 - p1 (from two Wilson intervals).

    ``phi``: the correlation of the paired 0/1 outcomes (``pair_phi``; Newcombe 1998's
    method 10 for paired proportions); 0 gives the interval for independent samples."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    l1, u1 = M.wilson_ci(min(max(k1, 0), n1), int(round(n1)) if n1 >= 1 else 1)
    l2, u2 = M.wilson_ci(min(max(k2, 0), n2), int(round(n2)) if n2 >= 1 else 1)
    p1, p2 = k1 / n1, k2 / n2
    d = p2 - p1
    lo2 = (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2
    hi2 = (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2
    return d - math.sqrt(max(lo2, 0.0)), d + math.sqrt(max(hi2, 0.0))


def pair_phi(x: np.ndarray, y: np.ndarray) -> float:
    """The correlation of paired 0/1 outcomes ``x``, ``y`` as Newcombe (1998, method 10)
    uses it: phi with its numerator ad - bc shrunk by n/2 when positive (0 when that
    crosses zero, or when a margin is empty). Uncorrected phi reaches 1 when every pair is
    concordant, and the interval then collapses to |(p - l) - (u - p)|, which is near 0
    for p near 1/2 (11 concordant pairs at p = 6/11 gave +-0.02 instead of +-0.16)."""
    a = float(np.sum((x == 1) & (y == 1)))
    b = float(np.sum((x == 1) & (y == 0)))
    c = float(np.sum((x == 0) & (y == 1)))
    d = float(np.sum((x == 0) & (y == 0)))
    den = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    if den <= 0:
        return 0.0
    num = a * d - b * c
    n = a + b + c + d
    num = num - n / 2 if num > n / 2 else (num if num < 0 else 0.0)
    return num / den


def _paired_binary_phi(both: pd.DataFrame) -> float:
    """phi of the two groups' outcomes matched on (fact, stratum, seed) when every unit is
    one 0/1 outcome and every unit has its partner; otherwise 0 (the unpaired interval)."""
    if not ((both["den"] == 1).all() and both["num"].isin([0, 1]).all()):
        return 0.0
    key = ["fact", "stratum", "seed"]
    a = both[both["g"] == 0].set_index(key)["num"]
    b = both[both["g"] == 1].set_index(key)["num"]
    if a.index.has_duplicates or b.index.has_duplicates or len(a) != len(b) or not a.index.isin(b.index).all():
        return 0.0
    return pair_phi(a.to_numpy(), b.reindex(a.index).to_numpy())


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
    s_idx, s_cats = codes(list(both["stratum"]))
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
    rng = seeded_rng(seed, "compare", *key)
    # Bootstrap: facts within stratum (jointly for both groups when paired), and seeds.
    fkey = list(zip(both["fact"], both["stratum"])) if paired else list(zip(g, both["fact"], both["stratum"]))
    f_idx, f_cats = codes(fkey)
    f_strata, _ = codes([(c[-1],) if paired else (c[0], c[-1]) for c in f_cats])
    sd_idx, sd_cats = codes(list(both["seed"]))
    reps = []
    for start in range(0, n_boot, 250):
        w = unit_weights(rng, f_idx, f_strata, sd_idx, len(sd_cats), min(250, n_boot - start))
        Nw, Dw = sums(w)
        reps.append(_stratified(Nw[:, 0], Dw[:, 0], Nw[:, 1], Dw[:, 1]))
    b_lo, b_hi = percentile_ci(np.concatenate(reps))
    # Newcombe on the pooled counts (meaningful for 0/1 outcomes; clipped otherwise).
    ka, kb = float(NUM[0].sum()), float(NUM[1].sum())
    da, db = float(DEN[0].sum()), float(DEN[1].sum())
    if 0 <= ka <= da and 0 <= kb <= db:
        n_lo, n_hi = newcombe_ci(ka, da, kb, db, _paired_binary_phi(both) if paired else 0.0)
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
