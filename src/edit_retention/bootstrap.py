"""Two-way (facts x seeds) bootstrap of per-fact units: one cell's value and interval.

Pure functions (numpy / pandas, no I/O). Every random draw comes from
``numpy.random.default_rng`` seeded from the caller's seed and a stable hash of what is
being estimated, so the same inputs always give the same numbers.

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
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from . import metrics as M
from .protocols import split_metric

N_BOOT = 1000
ALPHA = 0.05
LOG_METRICS = {"target_prob_ratio"}      # num is a log ratio: value = exp(sum num / sum den)
# Counts of successes out of den: their cell CI is also united with Wilson's interval.
COUNT_METRICS = {"rewrite_success", "top1_accuracy", "retention_rewrite", "efr", "retention_paraphrase",
                 "health_control_agreement", "health_first_token_es", "health_neighborhood_agreement"}


def seeded_rng(seed: int, *key) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``key`` (not Python's hash())."""
    return np.random.default_rng([int(seed), zlib.crc32(repr(key).encode())])


def transform(metric: str, x):
    return np.exp(x) if metric in LOG_METRICS else x



def codes(values) -> tuple[np.ndarray, list]:
    cats = list(dict.fromkeys(values))
    index = {c: i for i, c in enumerate(cats)}
    return np.array([index[v] for v in values], dtype=np.int64), cats


def multinomial_weights(rng, strata: np.ndarray, n_boot: int) -> np.ndarray:
    """(n_boot, len(strata)) resampling multiplicities, each stratum resampled to its size."""
    out = np.zeros((n_boot, len(strata)))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        out[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot)
    return out


def unit_weights(rng, fact_idx: np.ndarray, fact_strata: np.ndarray, seed_idx: np.ndarray,
                 n_seeds: int, n_boot: int) -> np.ndarray:
    """(n_boot, n_units) two-way bootstrap weights: fact multiplicity x seed multiplicity."""
    fw = multinomial_weights(rng, fact_strata, n_boot)
    sw = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot) if n_seeds else np.zeros((n_boot, 0))
    return fw[:, fact_idx] * sw[:, seed_idx]


def percentile_ci(x: np.ndarray) -> tuple[float, float]:
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
        out["value"] = float(transform(metric, value))
        if np.isfinite(ratios).all():
            out["std"] = float(np.sqrt(np.average((ratios - value) ** 2, weights=den)))
        per_seed = u.groupby("seed")[["num", "den"]].sum()
        seed_vals = transform(metric, per_seed["num"] / per_seed["den"]).to_numpy(float)
        if len(seed_vals) > 1:
            out["seed_std"] = float(np.std(seed_vals, ddof=1))
        facts, _ = codes(list(u["case_id"]))
        fact_rel = pd.Series(list(u["relation"])).groupby(facts).first().to_numpy()
        strata, _ = codes(list(fact_rel))
        seeds, seed_cats = codes(list(u["seed"]))
        rng = seeded_rng(seed, *key)
        reps = []
        for start in range(0, n_boot, 250):          # bounded memory at paper scale
            w = unit_weights(rng, facts, strata, seeds, len(seed_cats), min(250, n_boot - start))
            reps.append((w @ num) / (w @ den))
        lo, hi = percentile_ci(transform(metric, np.concatenate(reps)))
        if split_metric(metric)[0] in COUNT_METRICS and 0 <= num.sum() <= den.sum():   # every protocol
            wl, wh = M.wilson_ci(float(num.sum()), int(round(den.sum())))
            lo, hi = min(lo, wl), max(hi, wh)
    out["ci_low"], out["ci_high"] = lo, hi
    return out
