"""FT (unconstrained fine-tuning) and MEND (trained hypernetwork) on the tiny random model:
success, FT-L's bound vs FT's absence of one, the no-side-effect invariant, MEND training
and its saved hypernetwork, hparam and input errors."""
from __future__ import annotations

import random

import pytest
import torch

from editor_contract import assert_same, check_editor_contract, snapshot
from conftest import make_record
from edit_retention.editors import (EditError, deltas_applied, edited_layers, get_editor,
                                    hparams_sets, make_hparams, request_from_record)
from edit_retention.editors import mend as mend_mod
from edit_retention.editors.base import encode_row, length_buckets, pad_rows, row_target_logprob
from edit_retention.io import InputError, split_timings
from edit_retention.editors import mend_net
from edit_retention.editors.mend_net import load_hypernet, save_hypernet
from edit_retention.editors.mend_train import evaluate_hypernet, train_mend
from edit_retention.models import load_model, num_layers

SETS = {"smollm2-135m", "tiny", "gpt2-xl", "gpt-j-6b", "llama3-8b"}
MEND_TINY = {"layers": [1, 2, 3], "rank": 32, "train_steps": 25, "accumulate": 4, "train_lr": 1e-3,
             "lr_lr": 1e-3, "edit_lr": 1e-3, "norm_batches": 5}


def sharpen(model, factor=10.0):
    """The random tiny model's logits are nearly uniform; a larger final norm makes them peaky."""
    with torch.no_grad():
        model.model.norm.weight.mul_(factor)


def reqs(n=1, aug=False):
    pairs = [("Freedonia", "Paris", "Rome"), ("Sylvania", "Lyon", "Berlin"), ("Ruritania", "Graz", "Oslo")]
    return [request_from_record(make_record(i, *pairs[i]), ["{}'s capital city is"] if aug else [])
            for i in range(n)]


def logp_new(model, tok, requests):
    rows = [encode_row(tok, r["prompt"], r["subject"], r["target_new"], i) for i, r in enumerate(requests)]
    ids, mask = pad_rows(rows, tok.pad_token_id, "cpu")
    with torch.no_grad():
        return row_target_logprob(model, ids, mask, rows)[0]


# ------------------------------------------------------------------------------------- FT
def test_ft_registry_and_hparams():
    ed = get_editor("ft")
    assert ed.name == "ft" and ed.uses_stats is False and get_editor("mend").uses_stats is False
    hp = make_hparams("ft")
    assert hp.norm_constraint is None and edited_layers(hp) == hp.layers
    assert make_hparams("ft", {"norm_constraint": 1}).norm_constraint == 1.0
    assert make_hparams("ft", {"norm_constraint": None}).norm_constraint is None
    with pytest.raises(InputError, match="ft hparams: key 'norm_constraint' must be"):
        make_hparams("ft", {"norm_constraint": "none"})
    with pytest.raises(InputError, match="ft hparams: key 'layers'"):
        make_hparams("ft", {"layers": [1, "2"]})
    with pytest.raises(InputError, match="ft hparams: key 'steps' must be int"):
        make_hparams("ft", {"steps": 2.5})
    with pytest.raises(InputError, match="ft hparams: need steps >= 0, lr > 0"):
        make_hparams("ft", {"lr": 0})
    with pytest.raises(InputError, match="ft hparams: unknown key 'layer'"):
        make_hparams("ft", {"layer": 5})
    assert make_hparams("ft_l").norm_constraint == 2e-2          # FT-L unchanged


@pytest.mark.parametrize("editor", ["ft", "mend"])
def test_hparam_sets_shipped_and_valid(editor):
    assert SETS <= set(hparams_sets(editor))
    for s in SETS:
        hp = make_hparams(editor, None, s)
        assert hp.layers and all(isinstance(l, int) for l in hp.layers)
    assert make_hparams(editor, None, "smollm2-135m").layers[-1] <= 29
    assert max(make_hparams(editor, None, "tiny").layers) <= 3


def test_ft_raises_target_and_is_unbounded(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    r = reqs(2, aug=True)
    before = logp_new(model, tok, r)
    common = {"layers": [1], "lr": 1e-2, "steps": 10, "stop_at_argmax": False}
    eps = 2e-2
    ft = get_editor("ft").edit(model, tok, r, make_hparams("ft", common))
    ftl = get_editor("ft_l").edit(model, tok, r, make_hparams("ft_l", {**common, "norm_constraint": eps}))
    (d,), (dl,) = ft.deltas.values(), ftl.deltas.values()
    assert dl.abs().max() <= eps * (1 + 1e-5)                      # FT-L: clamped
    assert d.abs().max() > 2 * eps and ft.log["linf"] == pytest.approx(float(d.abs().max()))
    with deltas_applied(model, ft.deltas):
        after = logp_new(model, tok, r)
    assert (after > before + 2.3).all()                            # P(target_new) x10 at least
    assert ft.log["editor"] == "ft" and [c["case_id"] for c in ft.log["cases"]] == ["c0", "c1"]
    assert ft.log["hparams"]["norm_constraint"] is None
    # with a bound, FT is FT-L: same code, same numbers
    ft_b = get_editor("ft").edit(model, tok, r, make_hparams("ft", {**common, "norm_constraint": eps}))
    assert torch.equal(next(iter(ft_b.deltas.values())), dl)


def test_ft_l_in_bf16_raises_the_target_like_fp32_within_its_bound(tiny_model):
    """``precision: bf16`` (issue 16 item 4): the steps under bfloat16 autocast still raise
    P(target_new) tenfold, keep the L-inf bound, leave float32 deltas and the model as it was."""
    model, tok = tiny_model
    sharpen(model)
    r = reqs(2, aug=True)
    before = logp_new(model, tok, r)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    hp = {"layers": [1], "lr": 1e-2, "steps": 10, "stop_at_argmax": False, "norm_constraint": 2e-2}
    res = get_editor("ft_l").edit(model, tok, r, make_hparams("ft_l", {**hp, "precision": "bf16"}))
    (d,) = res.deltas.values()
    assert d.dtype == torch.float32 and d.abs().max() <= 2e-2 * (1 + 1e-5)
    with deltas_applied(model, res.deltas):
        assert (logp_new(model, tok, r) > before + 2.3).all()
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    assert res.log["hparams"]["precision"] == "bf16"
    with pytest.raises(InputError, match="precision"):
        make_hparams("ft_l", {"precision": "fp16"})


def test_length_buckets_minimise_padded_tokens_plus_passes():
    lengths = [9, 30, 10, 31, 12, 29, 9, 8, 33, 11]
    for pass_tokens, n_groups in ((48, 2), (1e9, 1), (0, len(set(lengths)))):
        groups = length_buckets(lengths, pass_tokens)
        assert len(groups) == n_groups and sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert all(lengths[g[0]] == max(lengths[i] for i in g) for g in groups)
    # the two groups split at the gap between 29 and 12: (33 x 4) + (12 x 6) + 2 passes
    assert [sorted(lengths[i] for i in g) for g in length_buckets(lengths, 48)] == [[29, 30, 31, 33],
                                                                                    [8, 9, 9, 10, 11, 12]]


def test_ft_l_rows_padded_in_length_groups_equal_one_batch(tiny_model, monkeypatch):
    """Issue 16 item 4: FT-L pads its rows (main prompt + paraphrases, of different
    lengths) in groups of similar length and sums the groups' gradients: the same edit as
    one padded batch, to float32 rounding, with the same steps and early stop."""
    from edit_retention.editors import ft_l
    model, tok = tiny_model
    sharpen(model)
    r = reqs(3, aug=True)
    r[1]["aug_prompts"] = ["Everyone who has ever studied the long history of {} agrees that its capital is"]
    hp = make_hparams("ft_l", {"layers": [1], "lr": 1e-2, "steps": 6, "norm_constraint": 2e-2})
    lengths = [len(encode_row(tok, t, q["subject"], q["target_new"], 0).ids) for q in r
               for t in [q["prompt"]] + q["aug_prompts"]]
    monkeypatch.setattr(ft_l, "PASS_TOKENS", 0)       # a group per length
    assert len(length_buckets(lengths, 0)) == 3
    grouped = get_editor("ft_l").edit(model, tok, r, hp)
    monkeypatch.setattr(ft_l, "PASS_TOKENS", 1e9)
    one = get_editor("ft_l").edit(model, tok, r, hp)
    (a,), (b,) = grouped.deltas.values(), one.deltas.values()
    # Adam divides by the root of the squared gradients, so rounding moves a few entries by
    # up to ~4e-6 (of a 2e-2 bound)
    assert torch.allclose(a, b, atol=2e-5, rtol=0) and a.abs().max() > 1e-3
    assert grouped.log["steps"] == one.log["steps"]
    for c, d in zip(grouped.log["cases"], one.log["cases"]):
        assert c["first_token_argmax"] == d["first_token_argmax"]
        assert c["p_target"] == pytest.approx(d["p_target"], rel=1e-5)


def test_ft_invariant_and_errors(tiny_model):
    model, tok = tiny_model
    check_editor_contract(model, tok, "ft", make_hparams("ft", {"layers": [1, 2], "steps": 4}), reqs(2))
    with pytest.raises(InputError, match="ft hparams 'layers': layer 7 is outside"):
        get_editor("ft").edit(model, tok, reqs(1), make_hparams("ft", {"layers": [7]}))
    with pytest.raises(InputError, match="ft: request 0 .*'prompt'"):
        get_editor("ft").edit(model, tok, [dict(reqs(1)[0], prompt="no slot")], make_hparams("ft"))


# ------------------------------------------------------------------------------------- MEND
NAMES = ("Aldor Brevia Corvan Dulmar Estrin Fenwick Galdra Hollin Istra Jorvik Kelmar Lunda Mirel "
         "Norvan Ostra Pellin Quarro Rusk Selva Tarnis Ulmar Vesta Wendl Xarin Yorra Zelda Ambro "
         "Belka Cindor Dravo Elmo Farris Gorran Helda Ivo Jasper Kora Lomi Marro Nessa").split()
CITIES = "Paris Rome Berlin Madrid Tokyo London Moscow Cairo Athens Dublin Vienna Lisbon Oslo Warsaw".split()
LANGS = "French Italian German Spanish Japanese English Russian Arabic Greek Irish".split()
TEMPLATES = [("The capital of {} is", ["{}'s capital city is"], CITIES),
             ("The mother tongue of {} is", ["The native language of {} is"], LANGS)]


def mend_requests():
    """40 made-up facts (two relations, one paraphrase each): 32 train, 8 held out."""
    rng = random.Random(0)
    out = []
    for i, name in enumerate(NAMES):
        prompt, aug, objs = TEMPLATES[i % 2]
        true, new = rng.sample(objs, 2)
        out.append({"case_id": f"m{i}", "subject": name, "prompt": prompt, "target_true": true,
                    "target_new": new, "aug_prompts": aug})
    return out[:32], out[32:]


@pytest.fixture(scope="module")
def mend_setup(tiny_model_dir, tmp_path_factory):
    """A sharpened tiny model, a hypernet trained on it and the untrained one (train_steps 0:
    same seed, initialisation and normalisation statistics), both saved."""
    model, tok = load_model(tiny_model_dir)
    sharpen(model)
    train, val = mend_requests()
    root = tmp_path_factory.mktemp("mend")
    out = {"model": model, "tok": tok, "train": train, "val": val}
    for name, steps in (("trained", MEND_TINY["train_steps"]), ("untrained", 0)):
        hp = make_hparams("mend", {**MEND_TINY, "train_steps": steps})
        tensors, config = train_mend(model, tok, train, hp, seed=0, val_requests=val)
        save_hypernet(root / name, tensors, config)
        out[name] = (tensors, config, root / name)
    return out


def mend_hp(path, **kw):
    return make_hparams("mend", {"layers": [1, 2, 3], "hypernet": str(path), **kw})


def test_mend_training_reduces_heldout_edit_loss(mend_setup):
    _, config, _ = mend_setup["trained"]
    first, last = config["train"]["val"]
    assert first["step"] == 0 and last["step"] == MEND_TINY["train_steps"]
    assert last["nll_before"] == pytest.approx(first["nll_before"])   # same held-out facts, same model
    assert last["nll_after"] < first["nll_after"] - 1.0               # held-out edit loss down
    assert last["nll_after"] < last["nll_before"]
    hist = config["train"]["history"]
    assert len(hist) == MEND_TINY["train_steps"]
    assert sum(h["edit_nll"] for h in hist[-5:]) < sum(h["edit_nll"] for h in hist[:5])
    assert config["train"]["n_train_requests"] == 32 and config["layers"] == [1, 2, 3]
    # the untrained hypernet's own record agrees with the trained one's step 0
    assert mend_setup["untrained"][1]["train"]["val"][0]["nll_after"] == pytest.approx(first["nll_after"])


def test_mend_trained_beats_untrained_on_unseen_facts(mend_setup):
    model, tok, val = mend_setup["model"], mend_setup["tok"], mend_setup["val"]
    base = logp_new(model, tok, val)
    gain = {}
    for name in ("trained", "untrained"):
        path = mend_setup[name][2]
        g = []
        for r in val:                                  # one edit each, as trained (train_batch 1)
            res = get_editor("mend").edit(model, tok, [r], mend_hp(path))
            with deltas_applied(model, res.deltas):
                after = logp_new(model, tok, [r])
            # the editor's own after-edit number was computed with hooks: the same model
            assert res.log["cases"][0]["p_target"] == pytest.approx(float(after.exp()[0]), rel=1e-3, abs=1e-7)
            g.append(float(after[0]))
        gain[name] = torch.tensor(g) - base
    assert (gain["trained"] > 0).all()
    assert gain["trained"].mean() > gain["untrained"].mean() + 1.0   # log P(new): > e x more


def test_mend_save_load_round_trip(mend_setup, tmp_path):
    model, tok, val = mend_setup["model"], mend_setup["tok"], mend_setup["val"]
    tensors, config, path = mend_setup["trained"]
    t2, c2 = load_hypernet(path)
    # the training config less its wall-clock timings (they go to the job's log: issue 14 item 8)
    assert c2 == split_timings(config)[0] and "seconds" in config["train"] and "seconds" not in c2["train"]
    assert sorted(t2) == sorted(tensors)
    assert all(torch.equal(t2[k], tensors[k]) and t2[k].dtype == tensors[k].dtype for k in tensors)
    save_hypernet(tmp_path / "copy", t2, c2)
    r = val[:2]
    a = get_editor("mend").edit(model, tok, r, mend_hp(path))
    b = get_editor("mend").edit(model, tok, r, mend_hp(tmp_path / "copy"))
    assert sorted(a.deltas) == sorted(b.deltas)
    assert all(torch.equal(a.deltas[k], b.deltas[k]) for k in a.deltas)
    ev = evaluate_hypernet(model, tok, val, t2, c2)
    assert ev["nll_after"] == pytest.approx(config["train"]["val"][-1]["nll_after"], rel=1e-5)


def test_mend_batch_edit_is_sum_of_single_edits(mend_setup):
    """Per-request loss sum: a joint edit's factors are the single edits' (padding aside)."""
    model, tok = mend_setup["model"], mend_setup["tok"]
    path = mend_setup["trained"][2]
    r = [dict(mend_setup["val"][0], subject="The Most Serene Republic of Aldovia"),  # longer: padding
         dict(mend_setup["val"][1], aug_prompts=[])]                               # 2 rows vs 1
    joint = get_editor("mend").edit(model, tok, r, mend_hp(path))
    single = [get_editor("mend").edit(model, tok, [x], mend_hp(path)) for x in r]
    for n, d in joint.deltas.items():
        torch.testing.assert_close(d, single[0].deltas[n] + single[1].deltas[n], rtol=1e-4, atol=1e-6)


def test_mend_invariant_and_log(mend_setup, tiny_model):
    model, tok = tiny_model
    sharpen(model)
    path = mend_setup["trained"][2]
    res = check_editor_contract(model, tok, "mend", mend_hp(path), reqs(2, aug=True))
    mlp = [f"model.layers.{l}.mlp.{w}_proj.weight" for l in (1, 2, 3) for w in ("gate", "up", "down")]
    assert sorted(res.log["edited_params"]) == sorted(mlp) and res.log["edited_layers"] == [1, 2, 3]
    params = dict(model.named_parameters())
    assert all(res.deltas[n].shape == params[n].shape for n in mlp)
    assert [c["case_id"] for c in res.log["cases"]] == ["c0", "c1"]
    assert res.log["cases"][0]["n_rows"] == 2 and not res.log["warnings"]


def test_mend_hypernet_errors(mend_setup, tmp_path):
    model, tok = mend_setup["model"], mend_setup["tok"]
    ed, r = get_editor("mend"), reqs(1)
    with pytest.raises(InputError, match="key 'hypernet' must name a folder"):
        ed.edit(model, tok, r, make_hparams("mend", {"layers": [1, 2, 3]}))
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match=f"{missing}: not a MEND hypernetwork folder"):
        ed.edit(model, tok, r, mend_hp(missing))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(mend_setup["trained"][2].joinpath("config.json").read_text())
    (broken / "hypernet.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match=f"{broken / 'hypernet.safetensors'}: unreadable"):
        ed.edit(model, tok, r, mend_hp(broken))
    (broken / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="config.json: not valid JSON"):
        ed.edit(model, tok, r, mend_hp(broken))
    with pytest.raises(InputError, match="trained for weights .* mend hparams ask for"):
        ed.edit(model, tok, r, mend_hp(mend_setup["trained"][2], layers=[3]))
    with pytest.raises(InputError, match="mend hparams: key 'mlp_weights'"):
        make_hparams("mend", {"mlp_weights": "mlp"})
    with pytest.raises(InputError, match="mend hparams: key 'rank' must be int"):
        make_hparams("mend", {"rank": "8"})
    with pytest.raises(InputError, match="train_mend: 1 training request"):
        train_mend(model, tok, mend_setup["train"][:1], make_hparams("mend", {**MEND_TINY, "train_batch": 2}), 0)


def test_mend_nan_is_reported_with_cases(mend_setup, monkeypatch):
    model, tok = mend_setup["model"], mend_setup["tok"]
    real = mend_net.MendNet.forward

    def poisoned(self, factors):
        out = real(self, factors)
        return {k: v * float("nan") for k, v in out.items()}
    monkeypatch.setattr(mend_net.MendNet, "forward", poisoned)
    snap = snapshot(model)
    with pytest.raises(EditError, match=r"mend: the delta for .* is not finite \(cases \['c0', 'c1'\]\)"):
        get_editor("mend").edit(model, tok, reqs(2), mend_hp(mend_setup["trained"][2]))
    assert_same(model, snap)


def test_mend_on_gpt2_conv1d(tiny_model, tmp_path):
    """Conv1D stores weights (d_in, d_out): deltas in that layout, and equal to what the
    hypernet's update did through the hooks."""
    from transformers import GPT2Config, GPT2LMHeadModel
    _, tok = tiny_model
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2,
                                       n_positions=64)).eval()
    train, _ = mend_requests()
    hp = make_hparams("mend", {**MEND_TINY, "layers": [1], "train_steps": 2, "accumulate": 1})
    save_hypernet(tmp_path / "h", *train_mend(model, tok, train[:8], hp, seed=0))
    r = reqs(1)
    res = get_editor("mend").edit(model, tok, r, make_hparams("mend", {"layers": [1], "hypernet": str(tmp_path / "h")}))
    assert res.deltas["transformer.h.1.mlp.c_fc.weight"].shape == (32, 128)
    assert res.deltas["transformer.h.1.mlp.c_proj.weight"].shape == (128, 32)
    with deltas_applied(model, res.deltas):
        after = logp_new(model, tok, r).exp()
    assert res.log["cases"][0]["p_target"] == pytest.approx(float(after[0]), rel=1e-4)
    assert res.log["cases"][0]["p_target"] != pytest.approx(res.log["cases"][0]["p_target_before"], rel=1e-6)
    (t,) = mend_mod.edit_targets(model, [1], "out")                    # the registry's mlp_out only
    assert (t.param, t.d_in, t.d_out, t.transposed) == ("transformer.h.1.mlp.c_proj.weight", 128, 32, True)
    assert num_layers(model) == 2
