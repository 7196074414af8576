"""The editor contract, checked the same way for every editor (tests/test_editors*.py):
the model at the end equals the model at the start (weights, requires_grad flags, train
mode), the deltas are float32, name the edited parameters, and are exactly reversible."""
from __future__ import annotations

import torch

from edit_retention.editors import apply_deltas, deltas_applied, get_editor


def snapshot(model):
    return ({n: p.detach().clone() for n, p in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()}, model.training)


def assert_same(model, snap):
    state, flags, training = snap
    assert all(torch.equal(state[n], p) for n, p in model.state_dict().items())
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    assert model.training == training


def check_editor_contract(model, tok, editor: str, hp, requests, stats=None, atol: float = 1e-6):
    """Edit a model in train mode with one frozen parameter; return the edit's result."""
    model.train()
    next(model.parameters()).requires_grad_(False)
    snap = snapshot(model)
    res = get_editor(editor).edit(model, tok, requests, hp, stats)
    assert_same(model, snap)
    assert all(d.dtype == torch.float32 for d in res.deltas.values())
    assert sorted(res.deltas) == sorted(res.log["edited_params"])
    assert res.log["editor"] == editor and res.log["n_requests"] == len(requests) and res.log["seconds"] > 0
    apply_deltas(model, res.deltas)
    assert not all(torch.equal(snap[0][n], p) for n, p in model.state_dict().items())
    apply_deltas(model, res.deltas, sign=-1.0)
    for n, p in model.state_dict().items():
        torch.testing.assert_close(p, snap[0][n], rtol=0, atol=atol)
    model.load_state_dict(snap[0])
    with deltas_applied(model, res.deltas):
        pass
    assert_same(model, snap)
    model.eval()
    return res
