"""Minimum detectable differences (``power``): known values, 1/sqrt(n) scaling, the paired
case, seeded Monte Carlo checks of the 80% power, and the MDD in results.md."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from edit_retention.comparison import CANNOT_TELL, compare, verdict
from edit_retention.power import mdd_from_ci, mdd_paired, mdd_unpaired, scale_for, z_sum
from edit_retention.report import results_markdown

Z = 1.959964 + 0.841621


def test_known_values():
    assert z_sum() == pytest.approx(Z, abs=1e-5)
    assert mdd_unpaired(100, 100, 0.5) == pytest.approx(0.198, abs=5e-4)     # 2.80 * sqrt(0.25 * 0.02)
    assert mdd_unpaired(100, 100, 0.5) == pytest.approx(Z * math.sqrt(0.25 * 0.02), rel=1e-6)
    assert mdd_unpaired(50, 200, 0.3) == pytest.approx(Z * math.sqrt(0.21 * (1 / 50 + 1 / 200)), rel=1e-6)
    # A 95% CI of half-width 1.96 * SE gives the same MDD as that SE.
    se = math.sqrt(0.25 * 0.02)
    assert mdd_from_ci(0.1 - 1.959964 * se, 0.1 + 1.959964 * se) == pytest.approx(0.198, abs=5e-4)
    assert mdd_unpaired(100, 100, 0.5, power=0.5) == pytest.approx(1.959964 * se, rel=1e-5)
    assert mdd_unpaired(100, 100, 0.5, alpha=0.01) > mdd_unpaired(100, 100, 0.5)


def test_quadrupling_n_halves_the_mdd():
    for p in (0.5, 0.3, 0.9):
        assert mdd_unpaired(400, 400, p) == pytest.approx(mdd_unpaired(100, 100, p) / 2, rel=1e-9)
    d = np.array([1] * 15 + [-1] * 5 + [0] * 80)
    assert mdd_paired(np.tile(d, 4)) == pytest.approx(mdd_paired(d) / 2, rel=0.01)   # ddof 1: not exact
    assert scale_for(0.2, 0.1) == pytest.approx(4.0)


def test_rates_at_the_bounds_give_a_finite_conservative_mdd():
    at_one = mdd_unpaired(100, 100, 1.0)
    assert at_one == mdd_unpaired(100, 100, 0.0) == pytest.approx(0.0755, abs=1e-3)   # Fisher's exact: ~0.078
    assert 0 < at_one < mdd_unpaired(100, 100, 0.9) < mdd_unpaired(100, 100, 0.5)
    # Continuous where the clipping starts (rate = MDD / 2 from the bound).
    ps = np.linspace(0.0, 0.2, 2001)
    ms = np.array([mdd_unpaired(100, 100, p) for p in ps])
    assert np.all(np.diff(ms) >= 0) and np.max(np.abs(np.diff(ms))) < 1e-3


def test_paired_known_value_and_fallback():
    d = [1] * 15 + [-1] * 5 + [0] * 80                     # 15 facts gained, 5 lost, 80 unchanged
    sd = math.sqrt((20 - 100 * 0.1 ** 2) / 99)
    assert mdd_paired(d) == pytest.approx(Z * sd / 10, rel=1e-5)       # 0.1227
    assert mdd_paired(d) < mdd_unpaired(100, 100, 0.5)
    # No discordant fact: no spread to use; the unpaired formula (worst case rate 0.5, or the given one).
    assert mdd_paired([0] * 100) == pytest.approx(mdd_unpaired(100, 100, 0.5))
    assert mdd_paired([1] * 100, rate=0.9) == pytest.approx(mdd_unpaired(100, 100, 0.9))


def test_not_computable_is_nan():
    for x in (mdd_from_ci(math.nan, 0.2), mdd_from_ci(0.3, 0.1), mdd_from_ci(None, None), mdd_unpaired(0, 10, 0.5),
              mdd_unpaired(10, 10, math.nan), mdd_paired([1]), mdd_paired([])):
        assert math.isnan(x)
    with pytest.raises(ValueError):
        z_sum(power=1.0)


def test_z_tests_reject_about_80_percent_at_the_mdd():
    rng = np.random.default_rng(13)
    draws = 20000
    for n, p in ((100, 0.5), (200, 0.3)):                  # unpaired: pooled two-proportion z-test
        d = mdd_unpaired(n, n, p)
        a = rng.binomial(n, p - d / 2, draws) / n
        b = rng.binomial(n, p + d / 2, draws) / n
        pool = (a + b) / 2
        z = (b - a) / np.sqrt(pool * (1 - pool) * 2 / n)
        assert np.mean(np.abs(z) > 1.959964) == pytest.approx(0.8, abs=0.03), (n, p)
    n, q_lost = 150, 0.05                                   # paired: z-test on per-fact differences
    q_gain = q_lost + 0.1
    d_true = q_gain - q_lost
    sd = math.sqrt(q_gain + q_lost - d_true ** 2)
    mdd = Z * sd / math.sqrt(n)
    scale = mdd / d_true                                    # move gains and losses to a true difference = mdd
    qg, ql = q_gain + (scale - 1) * d_true / 2, q_lost - (scale - 1) * d_true / 2
    mdd = Z * math.sqrt(qg + ql - (qg - ql) ** 2) / math.sqrt(n)   # the MDD at those rates
    counts = rng.multinomial(n, [qg, ql, 1 - qg - ql], size=draws)
    mean = (counts[:, 0] - counts[:, 1]) / n
    sdd = np.sqrt((counts[:, 0] + counts[:, 1] - n * mean ** 2) / (n - 1))
    assert qg - ql == pytest.approx(mdd, abs=0.01)
    assert np.mean(np.abs(mean / (sdd / math.sqrt(n))) > 1.959964) == pytest.approx(0.8, abs=0.04)


def _units(values, group, strata=4):
    return pd.DataFrame({"fact": [f"{group}{i}" for i in range(len(values))],
                         "stratum": [f"r{i % strata}" for i in range(len(values))], "seed": 0,
                         "num": np.asarray(values, float), "den": 1.0})


def test_the_pipelines_verdict_at_its_own_mdd():
    """Unpaired (edited vs intrinsic): the CI-implied MDD matches the formula, and the verdict
    (CI above 0 and permutation p < 0.05) detects a true difference of that size about 77% of
    the time (the discrete permutation test costs a little power). Paired (remedy vs remedy):
    the verdict's CI uses the pairing (Newcombe's paired interval in the union), so its MDD
    is the paired formula's, and a true difference above it is found almost always."""
    rng = np.random.default_rng(7)
    n, draws = 100, 200
    d = mdd_unpaired(n, n, 0.5)
    hits, mdds = 0, []
    for i in range(draws):
        a = _units(rng.random(n) < 0.5 - d / 2, "e")
        b = _units(rng.random(n) < 0.5 + d / 2, "i")
        c = compare(a, b, paired=False, n_boot=200, n_perm=200, seed=i)
        hits += verdict(c) == "supports"
        mdds.append(mdd_from_ci(c.ci_low, c.ci_high))
    assert np.mean(mdds) == pytest.approx(d, rel=0.05)
    assert 0.70 <= hits / draws <= 0.86
    q_gain, q_lost, hits, mdds, paired_mdds = 0.20, 0.02, 0, [], []
    for i in range(100):
        u = rng.random(n)
        before = np.where(u < q_lost, 1, np.where(u < q_lost + q_gain, 0, rng.random(n) < 0.7))
        after = np.where(u < q_lost, 0, np.where(u < q_lost + q_gain, 1, before))
        ua = _units(before, "f")
        c = compare(ua, ua.assign(num=after.astype(float)), paired=True, n_boot=200, n_perm=200, seed=i)
        hits += verdict(c) == "supports"
        mdds.append(mdd_from_ci(c.ci_low, c.ci_high))
        paired_mdds.append(mdd_paired(after - before))
    assert np.mean(mdds) == pytest.approx(np.mean(paired_mdds), rel=0.1)   # the CI's MDD is the paired one (0.12)
    assert np.mean(mdds) < 0.8 * (q_gain - q_lost)                         # well below the true difference 0.18
    assert hits / 100 >= 0.9                                               # ... which is then found


def _claims():
    base = {"source": "s", "statement": "x", "protocol": "probability", "test": "t", "note": "", "p": 0.4,
            "n_a": 96, "n_b": 96}
    rows = [dict(base, claim="C1", scope="all", contrast="intrinsic - edited retention", primary=True,
                 effect=0.05, ci_low=-0.1, ci_high=0.2, verdict=CANNOT_TELL, min_detectable_diff=mdd_from_ci(-0.1, 0.2)),
            dict(base, claim="C1", scope="m/rome/t", contrast="intrinsic - edited retention", primary=False,
                 effect=0.05, ci_low=-0.2, ci_high=0.3, verdict=CANNOT_TELL, min_detectable_diff=mdd_from_ci(-0.2, 0.3)),
            dict(base, claim="F2", scope="all", contrast="lora vs full", primary=True, effect=0.4, ci_low=0.2,
                 ci_high=0.6, p=0.001, verdict="supports", min_detectable_diff=mdd_from_ci(0.2, 0.6))]
    return pd.DataFrame(rows)


def test_results_md_gives_the_mdd_of_every_cannot_tell():
    cells = pd.DataFrame(columns=["model", "editor", "task", "remedy", "knowledge", "phase", "metric", "value",
                                  "ci_low", "ci_high", "n", "n_seeds", "seed_std"])
    claims = _claims()
    md = results_markdown(cells, claims, [], pd.DataFrame(), {"grid": {}})
    c1 = next(line for line in md.splitlines() if line.startswith("| C1 | arXiv"))
    assert CANNOT_TELL in c1 and f"smallest detectable difference {mdd_from_ci(-0.1, 0.2):.3f}" in c1   # 0.214
    f2 = next(line for line in md.splitlines() if line.startswith("| F2 | arXiv"))
    assert "supports" in f2 and "detectable" not in f2
    detail = next(line for line in md.splitlines() if line.startswith("| C1 | m/rome/t |"))
    assert f"(MDD {mdd_from_ci(-0.2, 0.3):.3f})" in detail
    grid = md.split("### Claims under each success protocol")[1]
    assert f"(MDD {mdd_from_ci(-0.1, 0.2):.3f})" in grid.split("\n| C1 | all |")[1].splitlines()[0].split("]")[1]
    assert "Smallest detectable difference (MDD)" in md
    # A "cannot tell" with no CI (n = 0) says so instead of leaving it out.
    empty = dict(claims.iloc[0], effect=math.nan, ci_low=math.nan, ci_high=math.nan, n_a=0, n_b=0,
                 min_detectable_diff=math.nan)
    md0 = results_markdown(cells, pd.DataFrame([empty]), [], pd.DataFrame(), {"grid": {}})
    assert "**cannot tell at this n** (smallest detectable difference n/a)" in md0
    # A claims.csv written before the column: the verdicts are shown without it.
    old = results_markdown(cells, claims.drop(columns="min_detectable_diff"), [], pd.DataFrame(), {"grid": {}})
    assert "cannot tell at this n**" in old and "smallest detectable difference 0" not in old
