"""Intervals, paired/stratified tests, claims and elasticity fits on synthetic units."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from _synth import KEEP, REMEDIES, TASKS, make_grid
from edit_retention.summarize import relations_of, summarize_all
from edit_retention.bootstrap import group_estimate
from edit_retention.cells import remedy_traits
from edit_retention.claims import evaluate_claims
from edit_retention.comparison import CANNOT_TELL, Comparison, NOT_IN_GRID, compare, newcombe_ci, verdict
from edit_retention.elasticity import elasticity, fit_decay, fit_log_linear
from edit_retention.phases import phase_order, phase_step
from edit_retention.power import mdd_from_ci


def _units(values: dict, seeds=(0,), relation=lambda j: f"P{j % 2}", group=""):
    """Units from {case_id: [0/1 per seed]}."""
    rows = []
    for j, (cid, outs) in enumerate(values.items()):
        for s, v in zip(seeds, outs):
            rows.append({"fact": f"{group}{cid}", "stratum": relation(j), "seed": s, "num": float(v), "den": 1.0})
    return pd.DataFrame(rows)


def test_group_estimate_pools_counts_and_is_deterministic():
    u = pd.DataFrame({"case_id": ["a", "b", "c", "a", "b", "c"], "relation": ["r"] * 6, "seed": [0, 0, 0, 1, 1, 1],
                      "num": [1, 1, 0, 1, 0, 0.0], "den": [1.0] * 6})
    est = group_estimate(u, "retention_rewrite", n_boot=200, seed=3, key=("x",))
    assert est["value"] == pytest.approx(0.5) and est["n"] == 6 and est["n_facts"] == 3 and est["n_seeds"] == 2
    assert est["seed_std"] == pytest.approx(np.std([2 / 3, 1 / 3], ddof=1))
    assert est["ci_low"] <= 0.5 <= est["ci_high"]
    assert est == group_estimate(u, "retention_rewrite", n_boot=200, seed=3, key=("x",))


def test_all_equal_outcomes_do_not_give_a_zero_width_interval():
    u = pd.DataFrame({"case_id": list("abcdefghij"), "relation": "r", "seed": 0, "num": 1.0, "den": 1.0})
    est = group_estimate(u, "retention_rewrite", n_boot=100)
    assert est["ci_high"] == 1.0 and est["ci_low"] < 0.75      # Wilson for 10/10: [0.72, 1]


@pytest.mark.parametrize("metric", ["retention_rewrite@first_token", "retention_rewrite@generation_contains",
                                    "efr@first_token", "rewrite_success@generation_contains"])
def test_every_protocol_gets_the_wilson_floor(metric):
    """A share scored under first_token or generation_contains is as much a count as under
    the probability test: 9 of 10 must not get a narrower interval than Wilson's."""
    u = pd.DataFrame({"case_id": list("abcdefghij"), "relation": list("ababababab"), "seed": 0,
                      "num": [1.0] * 9 + [0.0], "den": 1.0})
    est = group_estimate(u, metric, n_boot=200)
    base = group_estimate(u, metric.split("@")[0], n_boot=200)
    assert (est["ci_low"], est["ci_high"]) == (base["ci_low"], base["ci_high"])
    assert est["ci_low"] < 0.6                                 # Wilson for 9/10: [0.60, 0.98]


def test_no_fact_gives_nan_not_zero():
    u = pd.DataFrame({"case_id": ["a"], "relation": ["r"], "seed": [0], "num": [0.0], "den": [0.0]})
    est = group_estimate(u, "retention_rewrite", n_boot=50)
    assert math.isnan(est["value"]) and est["n"] == 0 and math.isnan(est["ci_low"])


def test_log_metric_is_geometric_mean():
    u = pd.DataFrame({"case_id": ["a", "b"], "relation": "r", "seed": 0, "num": np.log([0.5, 2.0 * 4]), "den": 1.0})
    est = group_estimate(u, "target_prob_ratio", n_boot=50)
    assert est["value"] == pytest.approx(math.sqrt(0.5 * 8))


def test_unpaired_stratified_difference_and_permutation_p():
    a = _units({f"e{j}": [j % 4 == 0] for j in range(40)}, group="e")     # edited: 25% kept
    b = _units({f"i{j}": [j % 10 != 0] for j in range(40)}, group="i")    # intrinsic: 90% kept
    c = compare(a, b, paired=False, n_boot=300, n_perm=500, seed=1)
    assert c.effect == pytest.approx(0.65, abs=0.05)
    assert c.ci_low > 0.3 and c.p < 0.01 and (c.n_a, c.n_b) == (40, 40)
    assert verdict(c) == "supports" and verdict(c, direction=-1) == "contradicts"
    same = compare(a, a.assign(fact="x" + a.fact), paired=False, n_boot=200, n_perm=300)
    assert same.effect == pytest.approx(0.0) and same.p > 0.5 and verdict(same) == CANNOT_TELL


def test_stratification_removes_relation_mix():
    # Relation P0 is always kept, P1 never; groups differ only in their relation mix.
    a = _units({f"a{j}": [j < 30] for j in range(40)}, relation=lambda j: "P0" if j < 30 else "P1")
    b = _units({f"b{j}": [j < 10] for j in range(40)}, relation=lambda j: "P0" if j < 10 else "P1")
    c = compare(a, b, paired=False, n_boot=200, n_perm=300)
    assert c.effect == pytest.approx(0.0)            # the unstratified difference would be -0.5


def test_paired_sign_flip_and_dropped_strata():
    before = _units({f"f{j}": [j % 2 == 0] for j in range(30)})
    after = _units({f"f{j}": [True] for j in range(30)})
    c = compare(before, after, paired=True, n_boot=300, n_perm=500)
    assert c.effect == pytest.approx(0.5) and c.p < 0.01 and verdict(c) == "supports"
    extra = pd.concat([after, _units({"z": [True]}, relation=lambda j: "P9")])
    c2 = compare(before, extra, paired=True, n_boot=50, n_perm=50)
    assert c2.dropped_strata == 1 and "left out" in c2.note


def test_equivalence_within_margin_contradicts_and_small_n_cannot_tell():
    big = Comparison(0.0, -0.02, 0.03, 0.8, 2000, 2000, 3, 0, "t")
    assert verdict(big) == "contradicts"
    small = Comparison(0.0, -0.3, 0.3, 0.9, 10, 10, 3, 0, "t")
    assert verdict(small) == CANNOT_TELL
    nan = Comparison(math.nan, math.nan, math.nan, math.nan, 0, 5, 0, 0, "t")
    assert verdict(nan) == CANNOT_TELL


def test_newcombe_interval_known_value():
    lo, hi = newcombe_ci(56, 70, 48, 80)          # Newcombe (1998) example 1: p1-p2 = 0.2 -> [0.0524, 0.3339]
    assert (-hi, -lo) == pytest.approx((0.0524, 0.3339), abs=2e-3)


def test_fits_recover_known_curves():
    t = np.array([0.0, 10, 20, 40, 80])
    y = 0.3 + 0.7 * np.exp(-0.05 * t)
    r_inf, lam = fit_decay(t, y, np.ones_like(t))
    assert r_inf == pytest.approx(0.3, abs=0.01) and lam == pytest.approx(0.05, rel=0.05)
    a, b = fit_log_linear(np.log1p([0, 1, 3, 7]), 0.2 + 0.1 * np.log1p([0, 1, 3, 7]), np.ones(4))
    assert (a, b) == pytest.approx((0.2, 0.1))


def test_phase_order_and_steps():
    phases = ["finetuned", "step-10", "base", "step-2", "edited"]
    assert sorted(phases, key=phase_order) == ["base", "edited", "step-2", "step-10", "finetuned"]
    assert phase_step("step-10") == 10 and phase_step("finetuned", 40) == 40 and phase_step("edited") == 0
    assert math.isnan(phase_step("base"))


def test_remedy_traits_from_definitions_not_names():
    t = remedy_traits({"anything": {"paraphrase_k": 2, "freeze": "non_edited", "method": {"type": "DoRA"}},
                         "x": {"paraphrase_k": 0, "freeze": "none"}})
    assert t["anything"] == {"paraphrase_k": 2, "freeze": "non_edited", "method": "dora"}
    assert t["x"]["method"] == "full"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    cells, rec = make_grid(tmp, list(REMEDIES), KEEP, steps=(1, 2, 3), n=15)
    res = summarize_all(cells, relations_of([rec]), REMEDIES, TASKS, n_boot=100)
    return res


def test_claims_table_finds_cells_by_definition(grid):
    claims = evaluate_claims(grid.units, grid.cells, n_boot=100, n_perm=200)
    assert set(claims.protocol) == {"probability", "first_token"}   # the synthetic rows have no generations
    primary = claims[claims.primary & (claims.protocol == "probability")].set_index("claim")
    assert list(primary.index) == ["C1", "C2", "C3", "F1", "F2"]
    assert primary.loc["C1", "verdict"] == "supports"          # edited 30% vs intrinsic 90% kept
    assert primary.loc["C2", "contrast"] == "k=3 vs k=0"       # largest k is the primary contrast
    assert primary.loc["F2", "verdict"] == "supports"          # lora keeps 90% vs full 30%
    assert primary.loc["F1", "effect"] > 0 and math.isnan(primary.loc["F1", "p"])
    assert set(claims.verdict) <= {"supports", "contradicts", CANNOT_TELL, NOT_IN_GRID}
    # Every row with a CI has its minimum detectable difference, from that CI.
    assert claims.ci_low.notna().all()
    assert [round(x, 9) for x in claims.min_detectable_diff] == [
        round(mdd_from_ci(lo, hi), 9) for lo, hi in zip(claims.ci_low, claims.ci_high)]
    assert (claims.min_detectable_diff > 0).all()
    # Renaming remedies changes nothing: cells are found by paraphrase_k / freeze / method.
    ren = {"none": "zz", "p3": "aa"}
    u2 = grid.units.assign(remedy=grid.units.remedy.replace(ren))
    c2 = grid.cells.assign(remedy=grid.cells.remedy.replace(ren))
    again = evaluate_claims(u2, c2, n_boot=100, n_perm=200)
    assert list(again[again.primary].verdict) == list(claims[claims.primary].verdict)


@pytest.mark.parametrize("freeze", ["above_edited", "below_edited", "non_edited"])
def test_reference_block_ranges_count_as_freezing_the_edit(grid, freeze):
    """The reference study freezes by training a contiguous block range (SEED_PROTOCOL):
    training only the blocks above (or below) the edit leaves the edited layer untouched, so
    C3 compares it with no freezing and F1 measures its forgetting, like freezing the layer."""
    cells = grid.cells.assign(freeze=grid.cells.freeze.replace({"edited": freeze}))
    claims = evaluate_claims(grid.units, cells, n_boot=50, n_perm=50)
    primary = claims[claims.primary & (claims.protocol == "probability")].set_index("claim")
    assert primary.loc["C3", "contrast"] == f"freeze={freeze} vs none"
    assert primary.loc["C3", "verdict"] == "supports"          # 70% kept vs 30% without freezing
    assert primary.loc["F1", "verdict"] != NOT_IN_GRID and primary.loc["F1", "effect"] > 0


def test_forgetting_under_each_freezing_strategy_is_its_own_row(grid):
    """F1 is not pooled over strategies: training only the blocks above the edit pins the
    blocks below it too, so its forgetting rate is a different quantity from the follow-up's
    (edited layers frozen, every other block trains), which stays the primary row."""
    cells, units = grid.cells, grid.units
    frozen_c, frozen_u = cells[cells.freeze == "edited"], units[units.remedy == "freeze"]
    cells2 = pd.concat([cells, frozen_c.assign(freeze="above_edited", remedy="above")], ignore_index=True)
    keep_all = frozen_u.assign(remedy="above", num=np.where(frozen_u.metric.str.startswith("efr"), 0.0, frozen_u.num))
    claims = evaluate_claims(pd.concat([units, keep_all], ignore_index=True), cells2, n_boot=50, n_perm=50)
    f1 = claims[(claims.claim == "F1") & (claims.scope == "all") & (claims.protocol == "probability")]
    assert list(f1.contrast) == ["EFR of edits with only non-edited layers trained (freeze=edited)",
                                 "EFR of edits with only non-edited layers trained (freeze=above_edited)"]
    assert list(f1.primary) == [True, False]
    edited, above = f1.iloc[0], f1.iloc[1]
    assert edited.effect > 0 and above.effect == 0 and edited.n_a == above.n_a   # one remedy's facts each


def test_claims_absent_from_grid(grid):
    keep = grid.cells.remedy.isin(["none"])
    claims = evaluate_claims(grid.units[grid.units.remedy == "none"], grid.cells[keep], n_boot=50, n_perm=50)
    for _, sub in claims[claims.primary].groupby("protocol"):
        v = sub.set_index("claim").verdict
        assert v["C1"] != NOT_IN_GRID
        assert all(v[c] == NOT_IN_GRID for c in ("C2", "C3", "F1", "F2"))
        mdd = sub.set_index("claim").min_detectable_diff
        assert mdd["C1"] > 0 and all(math.isnan(mdd[c]) for c in ("C2", "C3", "F1", "F2"))
    unknown = evaluate_claims(grid.units, grid.cells.assign(paraphrase_k=np.nan), n_boot=50, n_perm=50)
    assert (unknown.verdict == CANNOT_TELL).all() and unknown.note.str.contains("--remedies").all()


def test_elasticity_fits_k_and_steps_and_says_too_few(grid):
    curves = elasticity(grid.units, grid.cells, n_boot=60)
    k = [c for c in curves if c["kind"] == "k" and c["status"] == "fitted"]
    assert len(k) == 1 and k[0]["fit"]["slope"] > 0 and k[0]["x"] == [0.0, 1.0, 3.0]
    lo, hi = k[0]["ci"]["slope"]
    assert lo <= k[0]["fit"]["slope"] <= hi
    steps = [c for c in curves if c["kind"] == "step" and c["status"] == "fitted"]
    assert {c["knowledge"] for c in steps} == {"edited", "intrinsic"} and len(steps) == 10
    sizes = [c for c in curves if c["kind"] == "n_edits"]
    assert sizes and all(c["status"].startswith("too few points") for c in sizes)


def test_paired_newcombe_uses_the_pairing():
    """Remedy comparisons pair the same facts: with correlated outcomes the paired interval
    (phi > 0) is narrower than the independent-samples one, still covers the truth ~95% of
    the time, and phi = 0 is the unpaired interval."""
    from edit_retention.comparison import pair_phi
    assert newcombe_ci(40, 50, 45, 50, phi=0.0) == newcombe_ci(40, 50, 45, 50)
    x = np.array([1] * 35 + [0] * 5 + [1] * 2 + [0] * 8)      # condition a
    y = np.array([1] * 35 + [1] * 5 + [0] * 2 + [0] * 8)      # condition b: 5 gained, 2 lost
    phi = pair_phi(x, y)
    assert 0 < phi < 1
    paired, unpaired = newcombe_ci(x.sum(), 50, y.sum(), 50, phi), newcombe_ci(x.sum(), 50, y.sum(), 50)
    assert unpaired[0] < paired[0] < 0.06 < paired[1] < unpaired[1]
    rng = np.random.default_rng(0)                       # coverage on correlated pairs, true diff 0.1
    hits, n = 0, 50
    for _ in range(400):
        base = rng.random(n) < 0.7
        flip_up, flip_down = rng.random(n) < 0.2, rng.random(n) < 0.05
        a = base.astype(int)
        b = np.where(base, ~flip_down, flip_up).astype(int)
        truth = 0.3 * 0.2 - 0.7 * 0.05
        lo, hi = newcombe_ci(a.sum(), n, b.sum(), n, pair_phi(a, b))
        hits += lo <= truth <= hi
    assert 0.92 <= hits / 400 <= 0.99


def test_paired_newcombe_does_not_collapse_when_every_pair_agrees():
    """11 facts retained alike with and without a remedy (6 both, 5 neither): the data say
    little about a difference, so the interval must stay wide. Uncorrected phi = 1 gave
    +-0.02 (a "contradicts" verdict at n = 11); Newcombe's corrected phi (ad - bc - n/2)
    gives phi = 24.5 / 30 and about +-0.16, as Newcombe's (1998) method 10 does."""
    from edit_retention.comparison import pair_phi
    x = np.array([1] * 6 + [0] * 5)
    assert pair_phi(x, x) == pytest.approx(24.5 / 30)
    lo, hi = newcombe_ci(6, 11, 6, 11, pair_phi(x, x))
    assert lo == pytest.approx(-hi, abs=1e-9) and 0.12 < hi < 0.2
    # negatively correlated pairs keep their (uncorrected) negative phi
    y = np.array([1, 0] * 20)
    assert pair_phi(y, 1 - y) < 0
    # and the compare() path carries it: all pairs concordant, interval not collapsed
    before = pd.DataFrame({"fact": [f"f{i}" for i in range(11)], "stratum": "r", "seed": 0,
                           "num": x.astype(float), "den": 1.0})
    c = compare(before, before.copy(), paired=True, n_boot=200, n_perm=100)
    assert c.effect == 0 and c.ci_high - c.ci_low > 0.2


def test_compare_paired_interval_is_narrower_than_unpaired_on_matched_binary_units():
    before = _units({f"f{j}": [j % 10 < 6] for j in range(60)})
    after = _units({f"f{j}": [j % 10 < 7] for j in range(60)})     # the same facts, one in ten gained
    paired = compare(before, after, paired=True, n_boot=400, n_perm=200)
    unpaired = compare(before, after.assign(fact="u" + after["fact"]), paired=False, n_boot=400, n_perm=200)
    assert paired.effect == pytest.approx(unpaired.effect)
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low
