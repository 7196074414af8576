"""Pure metric functions (numpy / plain Python; no torch, no I/O, no state).

Usage::

    from edit_retention import metrics as M
    ok = M.prob_success(lp_target=-2.0, n_target=2, lp_alt=-9.0, n_alt=3)   # True
    value, n = M.rate([True, False, True])                                # (0.667, 3)
    value, n = M.retention({"a": True, "b": True, "c": False},
                           {"a": True, "b": False, "c": True})            # (0.5, 2)
    lo, hi = M.wilson_ci(k=8, n=10)

Protocols (each metric is named by the protocol it implements):

* ``prob_success`` -- CounterFact/ROME "probability" test: the target beats the
  alternative when its MEAN per-token log-probability under teacher forcing is strictly
  higher.  ES/PS use target=target_new, alt=target_true; NS and intrinsic "fact holds"
  use target=the true object, alt=target_new.  Ties count as failure.
* ``rate`` -- share of True among booleans, returned with its denominator.
* ``retention`` -- share of cases True before fine-tuning that are still True after it
  (arXiv 2511.05852); ``efr`` (edit forgetting rate) is 1 - retention.
* ``prob_ratio`` -- geometric mean over facts of P_after / P_before.
* ``wilson_ci`` -- Wilson score interval for a binomial share; ``bootstrap_ci`` --
  percentile bootstrap interval for a mean.

Every ``(value, n)`` function returns ``value = nan`` when ``n == 0``; nothing is
silently dropped or replaced by 0.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Iterable, Mapping, Sequence

import numpy as np

from .io import InputError

NAN = float("nan")


def mean_logprob(lp_sum: float, n: int) -> float:
    """Mean per-token log-probability of a target whose token log-probs sum to ``lp_sum``."""
    if n <= 0:
        raise InputError(f"mean_logprob: the target has {n} tokens; it needs at least one")
    return float(lp_sum) / int(n)


def prob_success(lp_target: float, n_target: int, lp_alt: float, n_alt: int) -> bool:
    """True when the target's mean token log-prob is strictly above the alternative's.

    Why the mean and not the sum (= log of the product of token probabilities): the
    two objects usually have different token counts ("Rome" 1 token, "Buenos Aires" 3),
    and a sum penalises every extra token, so the shorter object would win by length
    alone.  The per-token mean is what ROME/MEMIT's CounterFact evaluation compares
    (their ``test_batch_prediction`` divides each NLL by the target length), so our
    ES/PS/NS numbers are comparable to the published ones.
    """
    return mean_logprob(lp_target, n_target) > mean_logprob(lp_alt, n_alt)


def row_success(row: Mapping) -> bool:
    """``prob_success`` for one scored row of ``evaluate.score_items``."""
    return prob_success(row["lp_target"], row["n_target"], row["lp_alt"], row["n_alt"])


def rate(bools: Iterable[bool]) -> tuple[float, int]:
    """(share of True, number of values); share is nan for an empty input."""
    vals = [bool(b) for b in bools]
    if not vals:
        return NAN, 0
    return sum(vals) / len(vals), len(vals)


def mean(values: Iterable[float]) -> tuple[float, int]:
    """(arithmetic mean, number of values); nan for an empty input (NaNs propagate)."""
    vals = [float(v) for v in values]
    if not vals:
        return NAN, 0
    return float(np.mean(vals)), len(vals)


def retention(before: Mapping[str, bool], after: Mapping[str, bool]) -> tuple[float, int]:
    """Share of cases True in ``before`` that are still True in ``after``.

    ``n`` is the number of cases True before; value is nan when ``n == 0``.  A case that
    held before but is missing from ``after`` is an error (it would otherwise be
    silently left out of the denominator or counted as forgotten).
    """
    held = [k for k, v in before.items() if v]
    missing = [k for k in held if k not in after]
    if missing:
        raise InputError(
            f"retention: {len(missing)} case(s) held before but have no 'after' value, "
            f"e.g. {missing[:3]!r}"
        )
    if not held:
        return NAN, 0
    kept = sum(bool(after[k]) for k in held)
    return kept / len(held), len(held)


def efr(before: Mapping[str, bool], after: Mapping[str, bool]) -> tuple[float, int]:
    """Edit forgetting rate (arXiv 2511.05852): 1 - retention, over cases True before."""
    value, n = retention(before, after)
    return 1.0 - value, n


def prob_ratio(before_probs: Mapping[str, float] | Sequence[float],
               after_probs: Mapping[str, float] | Sequence[float]) -> tuple[float, int]:
    """Geometric mean of after/before probability ratios, with the number of pairs.

    Accepts two mappings (aligned by the keys of ``before_probs``) or two equal-length
    sequences.  A zero probability gives 0 or inf (never a silently dropped pair).
    """
    if isinstance(before_probs, Mapping):
        if not isinstance(after_probs, Mapping):
            raise InputError("prob_ratio: pass two mappings or two sequences, not one of each")
        missing = [k for k in before_probs if k not in after_probs]
        if missing:
            raise InputError(f"prob_ratio: case(s) {missing[:3]!r} have no 'after' probability")
        keys = list(before_probs)
        b = np.array([before_probs[k] for k in keys], dtype=np.float64)
        a = np.array([after_probs[k] for k in keys], dtype=np.float64)
    else:
        b = np.asarray(before_probs, dtype=np.float64)
        a = np.asarray(after_probs, dtype=np.float64)
        if b.shape != a.shape:
            raise InputError(f"prob_ratio: {b.size} 'before' but {a.size} 'after' probabilities")
    if b.size == 0:
        return NAN, 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(a) - np.log(b)
    return float(np.exp(np.mean(log_ratio))), int(b.size)


def wilson_ci(k: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for k successes out of n; (nan, nan) when n == 0."""
    if n <= 0:
        return NAN, NAN
    if not 0 <= k <= n:
        raise InputError(f"wilson_ci: k={k} is outside 0..n={n}")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of ``values``; (nan, nan) if empty."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
