"""Metric functions on hand-made numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edit_retention import metrics as M
from edit_retention.io import InputError


def test_mean_logprob():
    assert M.mean_logprob(-6.0, 3) == -2.0
    with pytest.raises(InputError):
        M.mean_logprob(-1.0, 0)


def test_prob_success_compares_means_not_sums():
    # target: 3 tokens, each log p = -1 (sum -3, mean -1); alt: 1 token, log p = -2.
    # The sum would prefer alt (-2 > -3); the CounterFact mean prefers target (-1 > -2).
    assert M.prob_success(-3.0, 3, -2.0, 1) is True
    assert M.prob_success(-2.0, 1, -3.0, 3) is False
    assert M.prob_success(-1.0, 1, -1.0, 1) is False  # ties fail
    assert M.row_success({"lp_target": -3.0, "n_target": 3, "lp_alt": -2.0, "n_alt": 1})


def test_prob_success_from_known_logits():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])  # two positions, vocab 3
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    lp_target = logp[0, 0] + logp[1, 1]   # target tokens 0 then 1
    lp_alt = logp[0, 2]                   # alt: the single token 2
    assert M.prob_success(lp_target, 2, lp_alt, 1)


def test_rate():
    assert M.rate([True, False, True, True]) == (0.75, 4)
    v, n = M.rate([])
    assert math.isnan(v) and n == 0


def test_retention_and_efr():
    before = {"a": True, "b": True, "c": True, "d": False}
    after = {"a": True, "b": False, "c": True, "d": True}
    assert M.retention(before, after) == (2 / 3, 3)   # d was not true before: not counted
    v, n = M.efr(before, after)
    assert v == pytest.approx(1 / 3) and n == 3
    v, n = M.retention({"a": False}, {"a": True})
    assert math.isnan(v) and n == 0
    with pytest.raises(InputError, match="'b'"):
        M.retention({"a": True, "b": True}, {"a": True})


def test_prob_ratio_is_geometric_mean():
    v, n = M.prob_ratio({"a": 0.5, "b": 0.1}, {"a": 0.25, "b": 0.4})  # ratios 0.5 and 4
    assert v == pytest.approx(math.sqrt(2.0)) and n == 2
    assert M.prob_ratio([0.2], [0.1]) == (pytest.approx(0.5), 1)
    v, n = M.prob_ratio([], [])
    assert math.isnan(v) and n == 0
    with pytest.raises(InputError):
        M.prob_ratio([0.1, 0.2], [0.1])


def test_wilson_ci_known_values_and_contains_share():
    lo, hi = M.wilson_ci(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    for k, n in [(0, 5), (5, 5), (3, 7), (50, 100)]:
        lo, hi = M.wilson_ci(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert M.wilson_ci(0, 5)[0] == 0.0 and M.wilson_ci(5, 5)[1] == 1.0
    assert all(math.isnan(b) for b in M.wilson_ci(0, 0))


def test_bootstrap_ci_contains_mean_and_is_reproducible():
    x = np.random.default_rng(1).normal(size=50)
    lo, hi = M.bootstrap_ci(x, n_boot=500, seed=3)
    assert lo < x.mean() < hi
    assert (lo, hi) == M.bootstrap_ci(x, n_boot=500, seed=3)
    assert M.bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    assert all(math.isnan(b) for b in M.bootstrap_ci([]))
