"""Count the forward and backward passes an editor makes through the model's transformer.

Usage::

    from edit_retention.editors.passes import count_passes
    with count_passes(model) as passes:
        result = editor.edit(model, tok, requests, hp, stats)
    passes  # {"forward": 31, "backward": 26}

A forward pass is one call of the transformer body (``model.base_model``), whether the
caller went through the whole model or, to skip the vocabulary projection, through the
body alone; a forward stopped early by a hook (ROME/MEMIT key collection) counts too. A
backward pass is one gradient computation that reaches the body's output (one per
``loss.backward()``, however many forward passes the loss spans: each forward's output
hook fires once). The hooks are removed on exit, so the model is left as it was.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def count_passes(model):
    counts = {"forward": 0, "backward": 0}
    seen: set[int] = set()
    body = model.base_model

    def on_backward(_grad):
        # Several forwards can feed one loss: every hook of one backward call runs in the
        # same autograd graph task, so count each task id once.
        task = torch._C._current_graph_task_id()
        if task not in seen:
            seen.add(task)
            counts["backward"] += 1

    def pre(_m, _args, _kwargs):
        counts["forward"] += 1

    def post(_m, _args, _kwargs, out):
        h = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
        if isinstance(h, torch.Tensor) and h.requires_grad:
            h.register_hook(on_backward)

    handles = [body.register_forward_pre_hook(pre, with_kwargs=True),
               body.register_forward_hook(post, with_kwargs=True)]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()
