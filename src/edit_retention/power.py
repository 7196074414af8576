"""The smallest difference a comparison of this size could have detected (pure functions).

Usage::

    from edit_retention.power import mdd_from_ci, mdd_unpaired, mdd_paired
    mdd_from_ci(-0.05, 0.23)            # claims.csv's min_detectable_diff: from the claim's own CI
    mdd_unpaired(100, 100, 0.5)         # 0.198: planning two groups of 100 facts at a 50% rate
    mdd_paired(per_fact_differences)    # the same facts under two conditions

The minimum detectable difference (MDD) at power 1 - beta and two-sided level alpha is the
true difference that an estimate with standard error SE declares non-zero with probability
1 - beta::

    MDD = (z_{1-alpha/2} + z_{1-beta}) * SE          (z_0.975 + z_0.8 = 1.960 + 0.842 = 2.802)

What claims.csv uses: the claim's own interval (``mdd_from_ci``)
-----------------------------------------------------------------
Every claim row's ``min_detectable_diff`` is ``mdd_from_ci(ci_low, ci_high)``, with
SE = (ci_high - ci_low) / (2 z_{1-alpha/2}): the standard error implied by the 95% interval
the verdict is decided on (``comparison``: the two-way facts x seeds bootstrap within
relation, united with Newcombe's or Wilson's score interval). One rule for every claim, and
the only one that respects what a formula in n cannot: the relation-stratified (CMH)
weighting, the facts x seeds clustering (n_a, n_b count fact-seed units, and seeds of the
same fact agree closely, so a formula in them would claim too much), and the union with the
score interval. A verdict needs that interval to exclude 0, so the MDD is the size of effect
the verdict itself would detect 80% of the time. For F1 (a one-sample share) it is the
smallest edit forgetting rate the interval would tell from 0. NaN when the interval is not
finite (n = 0, not in the grid).

How exact it is (simulated in tests/test_power.py): for edited-vs-intrinsic (unpaired)
comparisons the interval's SE matches the textbook two-proportion SE (``mdd_unpaired``), and
the verdict's real power at the MDD is about 0.77, not 0.80 (it also needs the permutation
p < 0.05, which on 0/1 outcomes is discrete and slightly conservative). For remedy-vs-remedy
(paired) comparisons of 0/1 outcomes matched on fact and seed, the interval uses Newcombe's
paired version (``comparison.pair_phi``), so its MDD matches the paired formula
(``mdd_paired``: 0.124 vs 0.121 at n = 100 in the test). Paired units that are not one 0/1
outcome each fall back to the independent-samples interval, which is conservative.

Formulas in n (planning, and cross-checks of the above)
-------------------------------------------------------
* ``mdd_unpaired(n1, n2, p)``: two independent proportions at baseline rate p (the pooled
  rate of both groups): (z_a + z_b) sqrt(p(1-p)(1/n1 + 1/n2)). Near 0 or 1 the rate is moved
  toward 1/2 by half the MDD (the two groups' mean rate under the alternative can be no
  closer to the bound than that), solved exactly; so p = 1 (everything retained) still
  gives a finite, roughly right MDD (n = 100 + 100: 0.075; Fisher's exact test needs about
  0.08) instead of 0.
* ``mdd_paired(d)``: per-fact differences d (e.g. retained under B minus under A, in
  {-1, 0, 1}): (z_a + z_b) sd(d) / sqrt(n), sd with ddof 1. When sd(d) = 0 (no discordant
  fact: every fact has the same difference) there is no spread to estimate it from, and the
  unpaired formula at ``rate`` (default 0.5, the worst case) is used instead: ignoring a
  positive pairing only widens the SE, so this is conservative.

Normal quantiles come from ``statistics.NormalDist`` (scipy is not a dependency).
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8


def z_sum(alpha: float = ALPHA, power: float = POWER) -> float:
    """z_{1-alpha/2} + z_{power}: the MDD in units of the standard error (2.802 by default)."""
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    nd = NormalDist()
    return nd.inv_cdf(1 - alpha / 2) + nd.inv_cdf(power)


def mdd_from_se(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """(z_{1-alpha/2} + z_power) * se; NaN for a missing, infinite or negative se."""
    if se is None or not math.isfinite(se) or se < 0:
        return math.nan
    return z_sum(alpha, power) * se


def mdd_from_ci(ci_low: float, ci_high: float, alpha: float = ALPHA, power: float = POWER,
                ci_level: float = 0.95) -> float:
    """The MDD implied by a two-sided ``ci_level`` interval: SE = width / (2 z_{(1+level)/2})."""
    if ci_low is None or ci_high is None or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return math.nan
    if ci_high < ci_low:
        return math.nan
    se = (ci_high - ci_low) / (2 * NormalDist().inv_cdf((1 + ci_level) / 2))
    return mdd_from_se(se, alpha, power)


def mdd_unpaired(n1: float, n2: float, p: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDD of two independent proportions (n1, n2 facts, pooled rate p); see the module docstring."""
    if not (n1 > 0 and n2 > 0) or p is None or not math.isfinite(p):
        return math.nan
    h = 1 / n1 + 1 / n2
    z = z_sum(alpha, power)
    m = min(max(p, 0.0), 1.0)
    m = min(m, 1 - m)                                  # distance of the rate from its nearer bound
    d = z * math.sqrt(m * (1 - m) * h)
    if d < 2 * m:
        return d
    # The rate moved to d/2 from the bound: d = z sqrt(d/2 (1 - d/2) h), whose root is below.
    return (z * z * h / 2) / (1 + z * z * h / 4)


def mdd_paired(diffs, alpha: float = ALPHA, power: float = POWER, rate: float = 0.5) -> float:
    """MDD of a paired difference from per-fact differences (see the module docstring;
    ``rate`` is the pooled rate used by the conservative fallback when sd = 0)."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    n = d.size
    if n < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    if sd == 0:
        return mdd_unpaired(n, n, rate, alpha, power)
    return z_sum(alpha, power) * sd / math.sqrt(n)


def scale_for(mdd: float, target: float) -> float:
    """How many times the current n a run needs for its MDD to reach ``target`` (MDD ~ 1/sqrt(n))."""
    if not (math.isfinite(mdd) and target > 0):
        return math.nan
    return (mdd / target) ** 2
