"""Editors on the tiny random model: ROME's math, the no-side-effect invariant, FT-L's bound,
hparam checking, error reporting."""
from __future__ import annotations

import random

import pytest
import torch

from conftest import make_record
from editor_contract import assert_same, check_editor_contract, snapshot
from edit_retention.editors import (EditError, deltas_applied, get_editor, load_edit,
                                    make_hparams, request_from_record, save_edit)
from edit_retention.editors import rome as rome_mod
from edit_retention.editors.base import encode_row, pad_rows, row_target_logprob
from edit_retention.editors.rome_math import rank_one_delta, sequential_delta
from edit_retention.io import InputError, split_timings
from edit_retention.models import mlp_out_name, mlp_out_weight
from edit_retention.stats import compute_mom2

WORDS = ("river city music table green quickly winter paper stone bright seven history light "
         "garden north market silver engine cloud letter simple mountain yellow quiet island "
         "science travel window orange forest people number strong summer planet").split()
ROME_HP = {"layer": 1, "clamp_norm_factor": 50.0, "v_steps": 15, "v_lr": 0.02, "v_weight_decay": 0.0}


def sharpen(model, factor=10.0):
    """The random tiny model's logits are nearly uniform (small tied embeddings), so no
    edit can move P(target) much; scaling the final norm makes its outputs peakier."""
    with torch.no_grad():
        model.model.norm.weight.mul_(factor)


def texts(n=40, k=16, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + "." for _ in range(n)]


@pytest.fixture()
def stats(tiny_model):
    model, tok = tiny_model
    return compute_mom2(model, tok, texts(), [1], max_len=32, progress=False)


def reqs(n=1, aug=False):
    pairs = [("Freedonia", "Paris", "Rome"), ("Sylvania", "Lyon", "Berlin"), ("Ruritania", "Graz", "Oslo")]
    return [request_from_record(make_record(i, *pairs[i]), ["{}'s capital city is"] if aug else [])
            for i in range(n)]


def p_new(model, tok, requests):
    rows = [encode_row(tok, r["prompt"], r["subject"], r["target_new"], i) for i, r in enumerate(requests)]
    ids, mask = pad_rows(rows, tok.pad_token_id, "cpu")
    with torch.no_grad():
        return row_target_logprob(model, ids, mask, rows)[0].exp()


def test_registry_and_hparams():
    with pytest.raises(InputError, match="unknown editor 'memitt'.*ft_l, memit, mend, rome"):
        get_editor("memitt")
    with pytest.raises(InputError, match="rome hparams: unknown key 'layre'"):
        make_hparams("rome", {"layre": 5})
    with pytest.raises(InputError, match="rome hparams: key 'layer' must be int"):
        make_hparams("rome", {"layer": "5"})
    with pytest.raises(InputError, match="rome hparams: key 'v_lr'"):
        make_hparams("rome", {"v_lr": True})
    with pytest.raises(InputError, match="ft_l hparams: key 'layers'"):
        make_hparams("ft_l", {"layers": [1, "2"]})
    with pytest.raises(InputError, match="rome hparams: key 'update'"):
        make_hparams("rome", {"update": "parallel"})
    hp = make_hparams("rome", {"v_lr": 1, "layer": 3})
    assert hp.v_lr == 1.0 and isinstance(hp.v_lr, float) and hp.layer == 3
    assert make_hparams("ft_l", {"layers": (1, 2)}).layers == [1, 2]


def test_rank_one_delta_math():
    g = torch.Generator().manual_seed(0)
    W, k, v = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((5, 7), (7,), (5,)))
    A = torch.randn(7, 7, generator=g, dtype=torch.float64)
    C = A @ A.T + torch.eye(7, dtype=torch.float64)
    D = rank_one_delta(W, k, v, C)
    torch.testing.assert_close((W + D) @ k, v)
    assert torch.linalg.matrix_rank(D) == 1
    u = torch.linalg.solve(C, k)                 # a key x with u^T x = 0 is untouched
    x = torch.randn(7, generator=g, dtype=torch.float64)
    x = x - (x @ u) / (k @ u) * k
    torch.testing.assert_close(D @ x, torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)


def test_rome_matches_values_and_raises_target(tiny_model, stats):
    model, tok = tiny_model
    sharpen(model)
    hp = make_hparams("rome", ROME_HP)
    r = reqs(1, aug=True)
    K = rome_mod.compute_keys(model, tok, r, hp)
    V, _ = rome_mod.compute_values(model, tok, r, hp, K)
    before = p_new(model, tok, r)
    res = get_editor("rome").edit(model, tok, r, hp, stats)
    assert res.log["edited_layers"] == [1] and res.log["edited_params"] == [mlp_out_name(model, 1)]
    assert res.log["cases"][0]["case_id"] == "c0" and not res.log["warnings"]
    with deltas_applied(model, res.deltas):
        Wn = mlp_out_weight(model, 1).detach().double()
        torch.testing.assert_close(K @ Wn.T, V, rtol=1e-4, atol=1e-5)      # W' k* = v*
        after = p_new(model, tok, r)
    assert after[0] > 10 * before[0]


def test_rome_batch_equals_single(tiny_model):
    """Each request has its own delta and rows: batching and padding change nothing."""
    model, tok = tiny_model
    hp = make_hparams("rome", {**ROME_HP, "v_steps": 6, "n_prefixes": 2})
    r = reqs(2, aug=True)
    r[0] = dict(r[0], subject="The Most Serene Republic of Freedonia")  # longer: padding differs
    K = rome_mod.compute_keys(model, tok, r, hp)
    V, cases = rome_mod.compute_values(model, tok, r, hp, K)
    K1 = rome_mod.compute_keys(model, tok, r[1:], hp)
    V1, cases1 = rome_mod.compute_values(model, tok, r[1:], hp, K1)
    torch.testing.assert_close(K[1], K1[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(V[1], V1[0], rtol=1e-4, atol=1e-6)
    assert cases[1]["steps"] == cases1[0]["steps"] == 6


def test_rome_batch_joint_and_sequential(tiny_model, stats):
    model, tok = tiny_model
    r = reqs(3)
    hp = make_hparams("rome", {**ROME_HP, "update": "joint", "v_steps": 4, "n_prefixes": 2})
    K = rome_mod.compute_keys(model, tok, r, hp)
    V, _ = rome_mod.compute_values(model, tok, r, hp, K)
    res = get_editor("rome").edit(model, tok, r, hp, stats)
    W0 = mlp_out_weight(model, 1).detach().double()
    W = W0 + res.deltas[mlp_out_name(model, 1)].double()
    assert ((K @ W.T - V).norm(dim=1) / V.norm(dim=1) < 1e-4).all()       # joint: every key exact
    Ws = W0 + sequential_delta(W0, K, V, stats[1])
    assert (K[-1] @ Ws.T - V[-1]).norm() / V[-1].norm() < 1e-6           # sequential: the last one
    assert [c["case_id"] for c in res.log["cases"]] == ["c0", "c1", "c2"]


def test_keys_in_passes_equal_one_pass(tiny_model, monkeypatch):
    """More rows than capture.PASS_ROWS run sorted by length in passes of that many; every
    request's key k* (ROME) and subject hidden state (MEMIT) is the one-pass value, in the
    requests' order, to float32 rounding."""
    from edit_retention.editors import capture
    from edit_retention.editors.memit import subject_hidden
    model, tok = tiny_model
    r = reqs(3)
    hp = make_hparams("rome", {**ROME_HP, "n_prefixes": 3})
    K1, H1 = rome_mod.compute_keys(model, tok, r, hp), subject_hidden(model, tok, r, 1)
    monkeypatch.setattr(capture, "PASS_ROWS", 2)
    passes = []
    real = capture._one_pass
    monkeypatch.setattr(capture, "_one_pass", lambda m, rows, *a: passes.append(len(rows)) or real(m, rows, *a))
    K2, H2 = rome_mod.compute_keys(model, tok, r, hp), subject_hidden(model, tok, r, 1)
    assert max(passes) == 2 and len(passes) > 3
    torch.testing.assert_close(K2, K1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(H2, H1, rtol=1e-5, atol=1e-6)
    assert not torch.equal(K2[0], K2[1])


def test_sequential_delta_is_the_chain_of_rank_one_updates():
    """sequential_delta solves C once for every key; the result is rank_one_delta applied
    row after row against the updated W (each solving C itself), to float64 rounding, and
    each update matches its own key exactly when it is made."""
    g = torch.Generator().manual_seed(3)
    d_out, d_in, n = 12, 20, 7
    W0 = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    K = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    V = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    A = torch.randn(d_in, 3 * d_in, generator=g, dtype=torch.float64)
    for C in (A @ A.T / (3 * d_in), None):
        cur = W0.clone()
        for k, v in zip(K, V):
            cur = cur + rank_one_delta(cur, k, v, C)
            torch.testing.assert_close(cur @ k, v, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(sequential_delta(W0, K, V, C), cur - W0, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(sequential_delta(W0.float(), K.float(), V.float(), C), cur - W0, rtol=1e-5, atol=1e-5)


def test_subject_position():
    class Tok:  # enough of a fast tokenizer: one token per character
        is_fast = True

        def __call__(self, text, return_offsets_mapping=False, add_special_tokens=True):
            out = {"input_ids": [ord(c) for c in text]}
            if return_offsets_mapping:
                out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
            return out
    row = encode_row(Tok(), "{}'s capital is", "Oslo", "Rome", 0, prefix="Hi.")
    assert chr(row.ids[row.subj]) == "o" and row.subj == len("Hi. Oslo") - 1
    assert "".join(map(chr, row.ids[row.n_prompt:])) == " Rome"


@pytest.mark.parametrize("name", ["rome", "ft_l"])
def test_model_unchanged_and_deltas_reversible(tiny_model, stats, name):
    model, tok = tiny_model
    hp = make_hparams(name, {**ROME_HP, "v_steps": 4, "n_prefixes": 2} if name == "rome"
                      else {"layers": [1, 2], "steps": 4})
    check_editor_contract(model, tok, name, hp, reqs(2), stats)


def test_rome_identity_stats_warns(tiny_model, stats, caplog):
    model, tok = tiny_model
    res = get_editor("rome").edit(model, tok, reqs(1), make_hparams("rome", {**ROME_HP, "v_steps": 2}), None)
    assert res.log["identity_stats"] and "stats=None" in res.log["warnings"][0]
    assert "C = I" in caplog.text
    with pytest.raises(InputError, match="no layer 2"):
        get_editor("rome").edit(model, tok, reqs(1), make_hparams("rome", {"layer": 2}), stats)


def test_ft_l_bound_and_success(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    eps = 2e-2
    r = reqs(2, aug=True)
    before = p_new(model, tok, r)
    res = get_editor("ft_l").edit(model, tok, r, make_hparams("ft_l", {"layers": [1], "lr": 1e-2,
                                                                       "norm_constraint": eps, "steps": 10}))
    (d,) = res.deltas.values()
    assert d.abs().max() <= eps * (1 + 1e-5) and d.abs().max() > eps / 2
    with deltas_applied(model, res.deltas):
        after = p_new(model, tok, r)
    assert (after > 10 * before).all()
    assert [c["case_id"] for c in res.log["cases"]] == ["c0", "c1"]


def test_nan_is_reported_with_case(tiny_model, stats, monkeypatch):
    model, tok = tiny_model
    real = rome_mod.compute_values

    def poisoned(*a, **k):
        V, cases = real(*a, **k)
        V[1, 0] = float("nan")
        return V, cases
    monkeypatch.setattr(rome_mod, "compute_values", poisoned)
    snap = snapshot(model)
    with pytest.raises(EditError, match="v\\* is not finite for case\\(s\\) \\['c1'\\]"):
        get_editor("rome").edit(model, tok, reqs(2), make_hparams("rome", {**ROME_HP, "v_steps": 1}), stats)
    assert_same(model, snap)


def test_save_load_edit(tiny_model, tmp_path):
    model, tok = tiny_model
    res = get_editor("ft_l").edit(model, tok, reqs(1), make_hparams("ft_l", {"layers": [0], "steps": 2}))
    save_edit(res, tmp_path / "e")
    back = load_edit(tmp_path / "e")
    # the log less its wall-clock timings, which go to the job's log (issue 14 item 8)
    assert "seconds" in res.log and back.log == split_timings(res.log)[0]
    assert all(torch.equal(back.deltas[n], d) for n, d in res.deltas.items())
    with pytest.raises(InputError, match="not an edit folder"):
        load_edit(tmp_path)


def test_rome_on_gpt2_conv1d(tiny_model):
    from transformers import GPT2Config, GPT2LMHeadModel
    _, tok = tiny_model
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2,
                                       n_positions=64)).eval()
    hp = make_hparams("rome", {"layer": 0, "v_steps": 3, "n_prefixes": 2})
    r = reqs(1)
    K = rome_mod.compute_keys(model, tok, r, hp)
    V, _ = rome_mod.compute_values(model, tok, r, hp, K)
    res = get_editor("rome").edit(model, tok, r, hp, None)
    name = "transformer.h.0.mlp.c_proj.weight"
    assert res.deltas[name].shape == (128, 32)       # Conv1D stores (d_in, d_out)
    with deltas_applied(model, res.deltas):
        torch.testing.assert_close(K @ mlp_out_weight(model, 0).detach().double().T, V, rtol=1e-4, atol=1e-5)


def test_rome_value_chunks_change_nothing(tiny_model):
    """v_batch only splits the optimisation into passes: requests never interact."""
    model, tok = tiny_model
    r = reqs(3, aug=True)
    hp_all = make_hparams("rome", {**ROME_HP, "v_steps": 5, "n_prefixes": 2, "v_batch": 0})
    hp_one = make_hparams("rome", {**ROME_HP, "v_steps": 5, "n_prefixes": 2, "v_batch": 2})
    K = rome_mod.compute_keys(model, tok, r, hp_all)
    V0, c0 = rome_mod.compute_values(model, tok, r, hp_all, K)
    V1, c1 = rome_mod.compute_values(model, tok, r, hp_one, K)
    torch.testing.assert_close(V0, V1, rtol=1e-4, atol=1e-6)
    assert [c["case_id"] for c in c1] == ["c0", "c1", "c2"] and [c["steps"] for c in c0] == [c["steps"] for c in c1]
    with pytest.raises(InputError, match="v_batch"):
        make_hparams("rome", {"v_batch": -1})


def test_rome_bf16_optimisation_still_edits(tiny_model, stats):
    """precision=bf16 autocasts the v* optimisation only: the model's weights stay float32,
    the rank-one update still maps k* to v* exactly, and P(target_new) still rises."""
    model, tok = tiny_model
    sharpen(model)
    hp = make_hparams("rome", {**ROME_HP, "precision": "bf16"})
    r = reqs(1, aug=True)
    before = p_new(model, tok, r)
    res = get_editor("rome").edit(model, tok, r, hp, stats)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert res.log["cases"][0]["key_residual"] < 1e-6
    with deltas_applied(model, res.deltas):
        after = p_new(model, tok, r)
    assert after[0] > 10 * before[0]
    with pytest.raises(InputError, match="rome hparams: key 'precision'.*'fp16'"):
        make_hparams("rome", {"precision": "fp16"})
    with pytest.raises(InputError, match="memit hparams: key 'precision'"):
        make_hparams("memit", {"precision": "half"})


def test_rome_without_mom2_adjustment_uses_identity_on_purpose(tiny_model, stats, caplog):
    """The reference study's Llama-3.1-8B set: C = I chosen (no warning), the same update as
    with no statistics, and not the C^-1 k* update the statistics give."""
    model, tok = tiny_model
    hp = {**ROME_HP, "v_steps": 2, "n_prefixes": 1}
    torch.manual_seed(0)
    off = get_editor("rome").edit(model, tok, reqs(1), make_hparams("rome", {**hp, "mom2_adjustment": False}), stats)
    assert off.log["identity_stats"] and off.log["warnings"] == [] and "C = I" not in caplog.text
    torch.manual_seed(0)
    none = get_editor("rome").edit(model, tok, reqs(1), make_hparams("rome", hp), None)
    torch.manual_seed(0)
    on = get_editor("rome").edit(model, tok, reqs(1), make_hparams("rome", hp), stats)
    (name, d_off), = off.deltas.items()
    assert torch.allclose(d_off, none.deltas[name], atol=1e-6)
    assert not torch.allclose(d_off, on.deltas[name], atol=1e-4)
