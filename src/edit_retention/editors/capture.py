"""Activations at each row's subject token, captured with a hook that stops the forward pass
at the module read (ROME's keys k*, MEMIT's subject hidden states).

    H = subject_activations(model, rows, pad_id, "model.layers.5.mlp.down_proj", where="input")

Rows (``base.Row``) go through the model right-padded. Up to ``PASS_ROWS`` rows are one pass
in their own order (every edit of the default study: one fact's prefixes); more are sorted
by length and run in passes of ``PASS_ROWS``, so memory stays flat and short rows are not
padded to the longest of all (one padded pass over 1,024 T-REx facts x 11 prefixes peaked at
7.3 GB and cost 2.3x per fact what 16 facts did; README "Scale"). Each row's activation is
its own whatever pass it runs in, up to float rounding (tests/test_editors.py).
"""
from __future__ import annotations

import torch

from ..models import get_module
from .base import frozen_eval, pad_rows

PASS_ROWS = 256


class _Stop(Exception):
    pass


def _one_pass(model, rows, pad_id, module, where: str) -> torch.Tensor:
    device = next(model.parameters()).device
    ids, mask = pad_rows(rows, pad_id, device)
    got = {}
    pick = (torch.arange(len(rows), device=device), torch.tensor([r.subj for r in rows], device=device))

    def pre_hook(_m, inputs):
        got["h"] = inputs[0][pick].to(torch.float64)
        raise _Stop

    def hook(_m, _inputs, out):
        h = out[0] if isinstance(out, tuple) else out
        got["h"] = h[pick].to(torch.float64)
        raise _Stop

    handle = (module.register_forward_pre_hook(pre_hook) if where == "input" else module.register_forward_hook(hook))
    try:
        with frozen_eval(model):
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return got["h"]


@torch.no_grad()
def subject_activations(model, rows: list, pad_id: int, module_name: str, where: str = "input") -> torch.Tensor:
    """float64 (len(rows), d): the input (``where="input"``) or output (``"output"``) of
    ``module_name`` at each row's subject token, in the order of ``rows``."""
    module = get_module(model, module_name)
    if len(rows) <= PASS_ROWS:
        return _one_pass(model, rows, pad_id, module, where)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    parts = [_one_pass(model, [rows[i] for i in order[s:s + PASS_ROWS]], pad_id, module, where)
             for s in range(0, len(order), PASS_ROWS)]
    out = torch.empty(len(rows), parts[0].shape[1], dtype=torch.float64, device=parts[0].device)
    out[torch.tensor(order, device=out.device)] = torch.cat(parts)
    return out
