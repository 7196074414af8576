import math

import pytest
import torch

from edit_retention.finetune import FinetuneArgs, finetune, pack_blocks
from edit_retention.io import InputError

TEXTS = [f"Passage number {i} talks about rivers, clocks and the weather in spring." * 3 for i in range(40)]


def test_pack_blocks_shape_and_eos(tiny_model):
    _, tok = tiny_model
    blocks = pack_blocks(tok, TEXTS[:5], 16)
    assert blocks.shape[1] == 16 and blocks.shape[0] >= 5
    assert (blocks == tok.eos_token_id).any()
    with pytest.raises(InputError, match="fewer than one block"):
        pack_blocks(tok, ["hi"], 4096)


def test_finetune_lowers_loss_and_freezes_layers(tiny_model):
    model, tok = tiny_model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = FinetuneArgs(steps=6, lr=3e-3, batch_size=4, seq_len=32, warmup_steps=1, eval_blocks=4)
    log = finetune(model, tok, TEXTS, TEXTS[:8], args, seed=0, frozen_layers=[1])
    assert log["eval_loss"] < log["eval_loss_before"]
    assert math.isclose(log["eval_perplexity"], math.exp(log["eval_loss"]))
    assert log["n_frozen_params"] > 0
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if n.startswith("model.layers.1."):
            assert not changed, n
        elif n.startswith("model.layers.2.mlp"):
            assert changed, n
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_is_deterministic_for_a_seed(tiny_model_dir):
    from edit_retention.models import load_model
    args = FinetuneArgs(steps=2, lr=1e-3, batch_size=2, seq_len=16, warmup_steps=1, eval_blocks=2)
    logs = []
    for _ in range(2):
        m, t = load_model(tiny_model_dir)
        logs.append(finetune(m, t, TEXTS, TEXTS[:4], args, seed=3)["train_loss"])
    assert logs[0] == logs[1]


def test_finetune_nan_loss_stops_with_message(tiny_model):
    model, tok = tiny_model
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))
    args = FinetuneArgs(steps=2, batch_size=2, seq_len=16, eval_blocks=2)
    with pytest.raises(FloatingPointError, match="diverged"):
        finetune(model, tok, TEXTS, TEXTS[:4], args, seed=0)


def test_args_reject_unknown_key_and_wrong_type():
    with pytest.raises(InputError, match="unknown key 'stepz'"):
        FinetuneArgs.from_dict({"stepz": 3}, where="tasks.text.params")
    with pytest.raises(InputError, match="'lr' must be float"):
        FinetuneArgs.from_dict({"lr": "fast"})
    assert FinetuneArgs.from_dict({"lr": 1}).lr == 1.0
