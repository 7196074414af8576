"""Counting an editor's forward and backward passes (reported in each edit's log)."""
from __future__ import annotations

import torch

from conftest import make_record
from edit_retention.editors import get_editor, make_hparams, request_from_record
from edit_retention.editors.passes import count_passes


def test_counts_body_forwards_and_one_backward_per_backward_call(tiny_model):
    model, tok = tiny_model
    ids = tok(["The capital of France is"], return_tensors="pt")["input_ids"]
    w = model.model.layers[1].mlp.down_proj.weight
    w.requires_grad_(True)
    with count_passes(model) as n:
        with torch.no_grad():
            model(input_ids=ids)                              # whole model, no grad
        h1 = model.base_model(input_ids=ids)[0]                # body only
        h2 = model(input_ids=ids).logits
        (h1.sum() + h2.sum()).backward()                      # one backward over two forwards
        model(input_ids=ids).logits.sum().backward()
    assert n == {"forward": 4, "backward": 2}
    # the hooks are gone: later passes are not counted
    model(input_ids=ids)
    assert n == {"forward": 4, "backward": 2}
    assert not model.base_model._forward_hooks and not model.base_model._forward_pre_hooks


def test_ft_passes_match_its_steps(tiny_model):
    """FT without early stopping: one forward per step plus the final check, one backward per step."""
    model, tok = tiny_model
    hp = make_hparams("ft", {"layers": [1], "steps": 3, "lr": 1e-6, "stop_at_argmax": False})
    with count_passes(model) as n:
        get_editor("ft").edit(model, tok, [request_from_record(make_record(0))], hp)
    assert n == {"forward": 4, "backward": 3}
