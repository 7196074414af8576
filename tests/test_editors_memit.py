"""MEMIT and AlphaEdit on the tiny random model: their closed forms, the no-side-effect
invariant, the null-space property, AlphaEdit's sequential cache, error reporting."""
from __future__ import annotations

import pytest
import torch

from edit_retention.editors import (EditError, deltas_applied, get_editor, hparams_sets,
                                    make_hparams)
from edit_retention.editors import memit as memit_mod
from edit_retention.editors import rome as rome_mod
from edit_retention.editors.memit_math import alphaedit_delta, memit_delta, nullspace_projector
from edit_retention.io import InputError
from edit_retention.models import get_module, mlp_out_name
from edit_retention.stats import compute_mom2
from editor_contract import assert_same, check_editor_contract, snapshot
from test_editors import p_new, reqs, sharpen, texts

# Loosened for a random model (as the tiny hparam sets): its hidden states are small and its
# flat outputs need a large, unclamped target shift; the statistics' eigenvalues are ~1e-5..1e-3.
TARGET_HP = {"layers": [0, 1], "n_prefixes": 2, "v_steps": 15, "v_lr": 0.1, "clamp_norm_factor": 50.0,
             "v_weight_decay": 0.0}
HP = {"memit": {**TARGET_HP, "mom2_update_weight": 1.0},
      "alphaedit": {**TARGET_HP, "nullspace_threshold": 1e-4, "l2": 1e-3}}
F64 = torch.float64


@pytest.fixture()
def stats(tiny_model):
    model, tok = tiny_model
    return compute_mom2(model, tok, texts(), [0, 1, 2], max_len=32, progress=False)


def keys_of(model, tok, txts, layer):
    """All keys (inputs of the MLP output projection) at ``layer`` over ``txts``, float64."""
    got = []
    h = get_module(model, f"model.layers.{layer}.mlp.down_proj").register_forward_pre_hook(
        lambda _m, inp: got.append(inp[0].reshape(-1, inp[0].shape[-1]).double()))
    try:
        with torch.no_grad():
            for t in txts:
                model(**tok(t, return_tensors="pt"))
    finally:
        h.remove()
    return torch.cat(got)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ------------------------------------------------------------------------------ pure math
def test_memit_delta_normal_equations():
    K, R, A = rand(3, 7), rand(3, 5, seed=1), rand(7, 7, seed=2)
    C = A @ A.T / 7 + 0.1 * torch.eye(7, dtype=F64)
    for c, lam in ((C, 2.0), (None, 0.5)):
        D = memit_delta(K, R, c, lam)
        Cm = torch.eye(7, dtype=F64) if c is None else c
        torch.testing.assert_close(D @ (lam * Cm + K.T @ K), R.T @ K)      # the normal equations
        g = torch.func.grad(lambda X: ((X @ K.T - R.T) ** 2).sum() + lam * torch.trace(X @ Cm @ X.T))(D)
        assert g.abs().max() < 1e-10                                       # = least-squares optimum
    D_small = memit_delta(K, R, C, 1e-9)                                   # lam -> 0: keys matched
    torch.testing.assert_close(K @ D_small.T, R, rtol=1e-5, atol=1e-6)


def test_alphaedit_delta_nullspace_and_normal_equations():
    U = torch.linalg.qr(rand(8, 8))[0]
    evals = torch.tensor([5.0, 3.0, 2.0, 1.0, 1e-3, 5e-4, 1e-4, 1e-5], dtype=F64)
    C = U @ torch.diag(evals) @ U.T
    P, ev = nullspace_projector(C, 1e-2)
    torch.testing.assert_close(P, U[:, 4:] @ U[:, 4:].T)
    assert torch.linalg.matrix_rank(P) == 4 and torch.allclose(ev.sort().values, evals.sort().values)
    K, R, Kp = rand(2, 8, seed=1), rand(2, 5, seed=2), rand(3, 8, seed=3)
    D = alphaedit_delta(K, R, P, Kp, 0.1)
    I8 = torch.eye(8, dtype=F64)
    lhs = D @ (Kp.T @ Kp @ P + K.T @ K @ P + 0.1 * I8)
    torch.testing.assert_close(lhs, R.T @ K @ P)                           # AlphaEdit eq. 13
    K0 = U[:, :4] @ rand(4, 6, seed=4)                                     # preserved keys
    assert (D @ K0).norm() < 1e-12 * D.norm() * K0.norm()
    assert alphaedit_delta(K, R, torch.zeros(8, 8, dtype=F64), None, 0.1).abs().max() == 0
    with pytest.raises(InputError, match="keys .* and residuals"):
        memit_delta(K, rand(3, 5), None, 1.0)


# ------------------------------------------------------------------------------ MEMIT
def test_memit_identity_stats_normal_equations(tiny_model, caplog):
    """One layer, C = I: the delta satisfies Delta (lam I + K^T K) = R^T K with R = Z - H."""
    model, tok = tiny_model
    hp = make_hparams("memit", {**HP["memit"], "layers": [1], "mom2_update_weight": 0.01, "v_steps": 5})
    r = reqs(3)
    Z, H0, _ = memit_mod.compute_targets(model, tok, r, hp)
    K = rome_mod.compute_keys(model, tok, r, memit_mod.target_hparams(hp, 1))
    res = get_editor("memit").edit(model, tok, r, hp, None)
    assert res.log["identity_stats"] and "stats=None" in res.log["warnings"][0] and "C = I" in caplog.text
    D = res.deltas[mlp_out_name(model, 1)].double()
    lhs, rhs = D @ (0.01 * torch.eye(K.shape[1], dtype=F64) + K.T @ K), (Z - H0).T @ K
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-5 * rhs.abs().max().item())
    assert [c["case_id"] for c in res.log["cases"]] == ["c0", "c1", "c2"]


def test_memit_real_stats_disturb_unrelated_keys_less(tiny_model):
    """Same edit (lam -> 0: both match the keys), but C from text moves held-out text's keys less
    than C = I (C estimated on 300 texts; the 40-text fixture overfits the small directions)."""
    model, tok = tiny_model
    hp = make_hparams("memit", {**HP["memit"], "layers": [1], "mom2_update_weight": 1e-4, "v_steps": 5})
    r = reqs(3)
    big = compute_mom2(model, tok, texts(300, seed=3), [1], max_len=32, progress=False)
    d_real = get_editor("memit").edit(model, tok, r, hp, big).deltas[mlp_out_name(model, 1)].double()
    d_eye = get_editor("memit").edit(model, tok, r, hp, None).deltas[mlp_out_name(model, 1)].double()
    K_edit = rome_mod.compute_keys(model, tok, r, memit_mod.target_hparams(hp, 1))
    torch.testing.assert_close(K_edit @ d_real.T, K_edit @ d_eye.T, rtol=1e-2, atol=1e-3)  # same edit
    K_un = keys_of(model, tok, texts(20, seed=1), 1)                       # held-out text
    moved_real, moved_eye = (K_un @ d_real.T).norm(dim=1), (K_un @ d_eye.T).norm(dim=1)
    assert (moved_real ** 2).mean() < 0.7 * (moved_eye ** 2).mean()
    assert moved_real.mean() < 0.85 * moved_eye.mean()


def test_memit_spreads_over_layers_and_reaches_target(tiny_model, stats):
    model, tok = tiny_model
    hp = make_hparams("memit", {**HP["memit"], "layers": [1, 0]})         # order does not matter
    r = reqs(3)
    res = get_editor("memit").edit(model, tok, r, hp, stats)
    assert res.log["edited_layers"] == [0, 1]
    assert sorted(res.deltas) == sorted(mlp_out_name(model, l) for l in (0, 1))
    info = res.log["layer_updates"]
    assert [x["layer"] for x in info] == [0, 1] and info[1]["z_error"] < 0.75 * info[0]["z_error"]
    assert all(c["z_residual"] < 0.2 for c in res.log["cases"])           # z nearly reached
    Z, H0, _ = memit_mod.compute_targets(model, tok, r, hp)
    with deltas_applied(model, res.deltas):
        H = memit_mod.subject_hidden(model, tok, r, 1)
    assert ((Z - H).norm(dim=1) < 0.2 * (Z - H0).norm(dim=1)).all()


# ------------------------------------------------------------------------------ AlphaEdit
def test_alphaedit_leaves_preserved_keys(tiny_model, stats):
    model, tok = tiny_model
    hp = make_hparams("alphaedit", HP["alphaedit"])
    res = get_editor("alphaedit").edit(model, tok, reqs(3), hp, stats)
    for l in (0, 1):
        D = res.deltas[mlp_out_name(model, l)].double()
        P, ev = nullspace_projector(stats[l], hp.nullspace_threshold)
        assert 0 < res.log["layer_updates"][l]["nullspace_dim"] == int((ev < 1e-4).sum()) < 128
        K0 = (torch.eye(128, dtype=F64) - P) @ keys_of(model, tok, texts(10, seed=2), l).T  # preserved
        assert (D @ K0).norm() < 1e-5 * D.norm() * K0.norm()
        assert D.norm() > 0


def test_alphaedit_sequential_cache(tiny_model, stats):
    model, tok = tiny_model
    hp = make_hparams("alphaedit", HP["alphaedit"])
    ed = get_editor("alphaedit")
    first, second = reqs(3)[:2], reqs(3)[2:]
    r1 = ed.edit(model, tok, first, hp, stats)
    assert r1.state["n_past"] == 2 and {l: k.shape for l, k in r1.state["past_keys"].items()} == \
        {0: (2, 128), 1: (2, 128)}
    with deltas_applied(model, r1.deltas):
        r2 = ed.edit(model, tok, second, hp, stats, state=r1.state)
        r2_fresh = ed.edit(model, tok, second, hp, stats)
    assert r2.state["n_past"] == 3 and r2.log["n_past_edits"] == 2
    assert [x["past_edits"] for x in r2.log["layer_updates"]] == [2, 2]
    for l in (0, 1):
        Kp = r2.state["past_keys"][l]
        assert Kp.shape == (3, 128) and torch.equal(Kp[:2], r1.state["past_keys"][l])
        name = mlp_out_name(model, l)
        K1 = r1.state["past_keys"][l]
        kept = (K1 @ r2.deltas[name].double().T).norm()        # the cache protects earlier edits
        fresh = (K1 @ r2_fresh.deltas[name].double().T).norm()
        assert kept < 0.5 * fresh
    with pytest.raises(InputError, match="not \\[2\\]"):
        ed.edit(model, tok, second, make_hparams("alphaedit", {**HP["alphaedit"], "layers": [1, 2]}),
                stats, state=r1.state)
    with pytest.raises(InputError, match="state must be"):
        ed.edit(model, tok, second, hp, stats, state={"keys": 1})


# ------------------------------------------------------------------------------ both
@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_model_unchanged_and_deltas_reversible(tiny_model, stats, name):
    model, tok = tiny_model
    hp = make_hparams(name, {**HP[name], "v_steps": 3})
    check_editor_contract(model, tok, name, hp, reqs(2), stats, atol=1e-5)


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_edit_raises_target_probability(tiny_model, stats, name):
    model, tok = tiny_model
    sharpen(model)
    r = reqs(3, aug=True)
    before = p_new(model, tok, r)
    res = get_editor(name).edit(model, tok, r, make_hparams(name, HP[name]), stats)
    with deltas_applied(model, res.deltas):
        after = p_new(model, tok, r)
    assert (after > 5 * before).all()


def test_gpt2_conv1d(tiny_model):
    from transformers import GPT2Config, GPT2LMHeadModel
    _, tok = tiny_model
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2,
                                       n_positions=64)).eval()
    hp = make_hparams("memit", {"layers": [0], "v_steps": 3, "n_prefixes": 2, "mom2_update_weight": 0.01})
    r = reqs(2)
    Z, H0, _ = memit_mod.compute_targets(model, tok, r, hp)
    K = rome_mod.compute_keys(model, tok, r, memit_mod.target_hparams(hp, 0))
    res = get_editor("memit").edit(model, tok, r, hp, None)
    name = "transformer.h.0.mlp.c_proj.weight"
    assert res.deltas[name].shape == (128, 32)                             # Conv1D stores (d_in, d_out)
    D = res.deltas[name].double().T
    rhs = (Z - H0).T @ K
    torch.testing.assert_close(D @ (0.01 * torch.eye(128, dtype=F64) + K.T @ K), rhs, rtol=1e-4,
                               atol=1e-5 * rhs.abs().max().item())


# ------------------------------------------------------------------------------ errors
def test_nan_is_reported_with_case(tiny_model, stats, monkeypatch):
    model, tok = tiny_model
    snap = snapshot(model)
    real_values = rome_mod.compute_values

    def poisoned_values(*a, **k):
        V, cases = real_values(*a, **k)
        V[1, 0] = float("nan")
        return V, cases
    monkeypatch.setattr(rome_mod, "compute_values", poisoned_values)
    hp = make_hparams("memit", {**HP["memit"], "v_steps": 1})
    with pytest.raises(EditError, match="target z is not finite for case\\(s\\) \\['c1'\\]"):
        get_editor("memit").edit(model, tok, reqs(2), hp, stats)
    monkeypatch.setattr(rome_mod, "compute_values", real_values)
    real_delta = memit_mod.memit_delta

    def poisoned_delta(K, R, C, lam):                  # the second layer's update breaks
        D = real_delta(K, R, C, lam)
        if poisoned_delta.calls:
            D[:, 0] = float("inf")
        poisoned_delta.calls += 1
        return D
    poisoned_delta.calls = 0
    monkeypatch.setattr(memit_mod, "memit_delta", poisoned_delta)
    with pytest.raises(EditError, match="update of layer 1 is not finite \\(case\\(s\\) \\['c0', 'c1'\\]"):
        get_editor("memit").edit(model, tok, reqs(2), hp, stats)
    assert_same(model, snap)                           # layer 0's applied update was undone


def test_bad_input(tiny_model, stats):
    model, tok = tiny_model
    with pytest.raises(InputError, match="memit hparams: key 'layers' must be list, got str"):
        make_hparams("memit", {"layers": "1"})
    with pytest.raises(InputError, match="memit hparams: key 'mom2_update_weight' must be float"):
        make_hparams("memit", {"mom2_update_weight": "big"})
    with pytest.raises(InputError, match="memit hparams: key 'mom2_update_weight' must be > 0"):
        make_hparams("memit", {"mom2_update_weight": 0})
    with pytest.raises(InputError, match="memit hparams: key 'layers' repeats"):
        make_hparams("memit", {"layers": [1, 1]})
    with pytest.raises(InputError, match="memit hparams: key 'layers' must name at least one"):
        make_hparams("memit", {"layers": []})
    with pytest.raises(InputError, match="alphaedit hparams: key 'nullspace_threshold' must be > 0"):
        make_hparams("alphaedit", {"nullspace_threshold": -1.0})
    with pytest.raises(InputError, match="alphaedit hparams: unknown key 'mom2_update_weight'"):
        make_hparams("alphaedit", {"mom2_update_weight": 1.0})
    with pytest.raises(InputError, match="memit hparams 'layers': layer 7 is outside the model .*0..3"):
        get_editor("memit").edit(model, tok, reqs(1), make_hparams("memit", {"layers": [2, 7]}), stats)
    with pytest.raises(InputError, match="statistics have no layer\\(s\\) \\[3\\] \\(present: \\[0, 1, 2\\]\\)"):
        get_editor("memit").edit(model, tok, reqs(1), make_hparams("memit", {"layers": [2, 3]}), stats)
    with pytest.raises(InputError, match="alphaedit: statistics have no layer\\(s\\) \\[3\\]"):
        get_editor("alphaedit").edit(model, tok, reqs(1), make_hparams("alphaedit", {"layers": [3]}), stats)
    with pytest.raises(InputError, match="alphaedit: second-moment statistics are required"):
        get_editor("alphaedit").edit(model, tok, reqs(1), make_hparams("alphaedit", {"layers": [1]}), None)
    with pytest.raises(InputError, match="layer 1 have shape \\(3, 3\\), expected \\(128, 128\\)"):
        get_editor("memit").edit(model, tok, reqs(1), make_hparams("memit", {"layers": [1]}),
                                 {1: torch.eye(3)})
    with pytest.raises(InputError, match="no eigenvalue .* at layer 1 is below nullspace_threshold 1e-09"):
        get_editor("alphaedit").edit(model, tok, reqs(1), make_hparams(
            "alphaedit", {"layers": [1], "nullspace_threshold": 1e-9}), stats)
    with pytest.raises(InputError, match="memit: request 0 .*'target_new'"):
        get_editor("memit").edit(model, tok, [dict(reqs(1)[0], target_new="")], make_hparams("memit"), stats)


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_hparam_sets(tiny_model, name):
    """Every shipped set builds; the tiny set's layers exist in the tiny model."""
    assert {"smollm2-135m", "tiny", "gpt2-xl", "gpt-j-6b", "llama3-8b"} <= set(hparams_sets(name))
    for s in hparams_sets(name):
        hp = make_hparams(name, hparams_set=s)
        assert hp.layers == sorted(hp.layers)
    assert make_hparams(name, hparams_set="gpt2-xl").layers == [13, 14, 15, 16, 17]
    assert make_hparams(name, hparams_set="gpt-j-6b").layers == [3, 4, 5, 6, 7, 8]
    assert make_hparams(name, hparams_set="llama3-8b").layers == [4, 5, 6, 7, 8]
    assert make_hparams(name) == make_hparams(name, hparams_set="smollm2-135m")  # defaults = default model
    assert max(make_hparams(name, hparams_set="tiny").layers) < 4


def test_alphaedit_in_sequential_regime(tiny_model, stats):
    """The regime runner hands each batch the previous state: the cache ends with every key."""
    from edit_retention.editors.regimes import run_regime
    model, tok = tiny_model
    snap = snapshot(model)
    res = run_regime(get_editor("alphaedit"), model, tok, reqs(3),
                     make_hparams("alphaedit", {**HP["alphaedit"], "v_steps": 3}), stats,
                     regime="sequential", batch_size=1)
    assert res.state["n_past"] == 3 and res.state["past_keys"][1].shape == (3, 128)
    assert [c["case_id"] for c in res.log["cases"]] == ["c0", "c1", "c2"]
    assert_same(model, snap)


def test_alphaedit_projector_is_built_once_per_statistics_across_calls(tiny_model, stats, monkeypatch):
    """The single regime calls edit() once per fact with the same statistics: the null-space
    projector (an eigendecomposition per layer) is computed once per layer and threshold, and
    the edits equal those made with a fresh projector each call."""
    from edit_retention.editors import alphaedit as alpha_mod
    from edit_retention.editors.regimes import run_regime
    model, tok = tiny_model
    hp = make_hparams("alphaedit", {**HP["alphaedit"], "v_steps": 3})
    calls = []
    real = alpha_mod.nullspace_projector
    monkeypatch.setattr(alpha_mod, "nullspace_projector", lambda C, t: calls.append(t) or real(C, t))
    mine = {l: C.clone() for l, C in stats.items()}        # statistics no earlier test has cached
    cached = run_regime(get_editor("alphaedit"), model, tok, reqs(3), hp, mine, regime="single")
    assert len(calls) == len(hp.layers)                    # 3 facts, each layer's projector once
    run_regime(get_editor("alphaedit"), model, tok, reqs(1), make_hparams(
        "alphaedit", {**HP["alphaedit"], "v_steps": 3, "nullspace_threshold": hp.nullspace_threshold * 2}),
        mine, regime="single")
    assert len(calls) == 2 * len(hp.layers)                # another threshold: built again
    alpha_mod._PROJECTORS.clear()
    monkeypatch.setattr(alpha_mod, "cached_projector", lambda src, C, t: real(C, t))
    fresh = run_regime(get_editor("alphaedit"), model, tok, reqs(3), hp, mine, regime="single")
    assert cached.deltas.keys() == fresh.deltas.keys()
    for name in cached.deltas:
        torch.testing.assert_close(cached.deltas[name], fresh.deltas[name], rtol=0, atol=0)
