"""Editing regimes: how a list of requests reaches an editor.

    batch       all requests in one ``edit`` call (one model, N facts)
    sequential  batches of ``batch_size`` applied one after another: each batch is computed
                on the model that already carries the earlier batches' deltas, and gets the
                previous call's ``EditResult.state`` (AlphaEdit's keys of past edits)
    single      every request alone, each from the unedited model (a fresh model per fact):
                one delta set per request, stored side by side (see ``single_deltas``)

Every regime keeps the editors' invariant: the model is bit-identical on return.

Usage::

    from edit_retention.editors.regimes import run_regime
    res = run_regime(get_editor("memit"), model, tok, requests, hp, stats, "sequential", 16)
"""
from __future__ import annotations

import time

import torch

from ..io import InputError
from ..models import load_model
from .base import EditResult, apply_deltas, deltas_applied, load_edit

REGIMES = ("batch", "sequential", "single")
SEP = "::"


def _merge_logs(logs: list[dict], regime: str, batch_size: int, seconds: float) -> dict:
    first = logs[0]
    out = {k: v for k, v in first.items() if k not in ("cases", "seconds", "steps")}
    out["edited_layers"] = sorted({l for g in logs for l in g.get("edited_layers", [])})
    out["edited_params"] = sorted({p for g in logs for p in g.get("edited_params", [])})
    out["cases"] = [dict(c, batch=j) for j, g in enumerate(logs) for c in g.get("cases", [])]
    out["warnings"] = sorted({w for g in logs for w in g.get("warnings", [])})
    out["batch_seconds"] = [g.get("seconds") for g in logs]
    out.update(regime=regime, batch_size=batch_size, n_batches=len(logs), seconds=seconds,
               n_requests=sum(g.get("n_requests", 0) for g in logs))
    return out


def run_regime(editor, model, tok, requests: list[dict], hp, stats=None, regime: str = "batch",
               batch_size: int = 0) -> EditResult:
    """Edit ``requests`` in ``regime``; ``batch_size`` (sequential only, 0 = all) per call."""
    if regime not in REGIMES:
        raise InputError(f"edit regime {regime!r} is unknown (known: {', '.join(REGIMES)})")
    if not requests:
        raise InputError(f"{editor.name}: no edit requests given")
    t0 = time.perf_counter()
    if regime == "batch":
        res = editor.edit(model, tok, requests, hp, stats)
        res.log.update(regime="batch", batch_size=len(requests), n_batches=1)
        return res
    if regime == "single":
        deltas, logs = {}, []
        for i, r in enumerate(requests):
            res = editor.edit(model, tok, [r], hp, stats)
            deltas.update({f"case{i}{SEP}{n}": d for n, d in res.deltas.items()})
            logs.append(res.log)
        log = _merge_logs(logs, "single", 1, time.perf_counter() - t0)
        log["single_case_ids"] = [r["case_id"] for r in requests]
        return EditResult(deltas=deltas, log=log)
    if batch_size < 0:
        raise InputError(f"edit batch_size must be >= 0 (0 = all), got {batch_size}")
    size = batch_size or len(requests)
    total: dict[str, torch.Tensor] = {}
    state, logs = None, []
    for start in range(0, len(requests), size):
        with deltas_applied(model, total):
            res = editor.edit(model, tok, requests[start:start + size], hp, stats, state=state)
        for n, d in res.deltas.items():
            total[n] = total[n] + d if n in total else d.clone()
        state = res.state
        logs.append(res.log)
    return EditResult(deltas=total, log=_merge_logs(logs, "sequential", size, time.perf_counter() - t0),
                      state=state or {})


def single_deltas(result: EditResult) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(case_id, deltas) per request of a ``single``-regime result, in request order."""
    ids = result.log.get("single_case_ids")
    if result.log.get("regime") != "single" or ids is None:
        raise InputError("this edit was not made in the 'single' regime")
    out = [(cid, {}) for cid in ids]
    for key, d in result.deltas.items():
        case, name = key.split(SEP, 1)
        out[int(case[len("case"):])][1][name] = d
    return out


def is_single(edit) -> bool:
    """Whether a loaded edit holds one delta set per fact (the single regime)."""
    return edit is not None and edit.log.get("regime") == "single"


def load_edited(model_dir, edit_dir=None, device: str = "cpu"):
    """(model, tok, edit) with the edit's deltas applied, except in the single regime (one
    delta set per fact; ``single_deltas``), where the caller applies them per fact."""
    model, tok = load_model(model_dir, device=device)
    edit = load_edit(edit_dir) if edit_dir else None
    if edit is not None and not is_single(edit):
        apply_deltas(model, edit.deltas)
    return model, tok, edit
