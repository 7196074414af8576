"""Editing regimes: how a list of requests reaches an editor.

    batch       all requests in one ``edit`` call (one model, N facts)
    sequential  batches of ``batch_size`` applied one after another: each batch is computed
                on the model that already carries the earlier batches' deltas, and gets the
                previous call's ``EditResult.state`` (AlphaEdit's keys of past edits)
    single      every request alone, each from the unedited model (a fresh model per fact):
                one delta set per request, stored side by side (see ``single_deltas``)
    groups      groups of ``batch_size`` requests, each group in one ``edit`` call from the
                unedited model (a fresh model per group): one delta set per group. Groups
                are dealt round-robin over relations (``spread_relations``), so a group holds
                as few facts of one relation as it can: edits of one relation move that
                relation's other subjects (README "Which edits pass the gate"). ``single``
                is groups of one.

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

REGIMES = ("batch", "sequential", "single", "groups")
PER_GROUP = ("single", "groups")   # regimes with a fresh model per fact / group
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
    """Edit ``requests`` in ``regime``; ``batch_size``: requests per call (sequential, 0 = all)
    or per fresh model (groups)."""
    if regime not in REGIMES:
        raise InputError(f"edit regime {regime!r} is unknown (known: {', '.join(REGIMES)})")
    if not requests:
        raise InputError(f"{editor.name}: no edit requests given")
    t0 = time.perf_counter()
    if regime == "batch":
        res = editor.edit(model, tok, requests, hp, stats)
        res.log.update(regime="batch", batch_size=len(requests), n_batches=1)
        return res
    if regime in PER_GROUP:
        return _run_groups(editor, model, tok, requests, hp, stats, regime, batch_size, t0)
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


def spread_relations(requests: list[dict]) -> list[dict]:
    """``requests`` reordered round-robin over their ``relation`` (first of each relation,
    then second, ...; relations in order of first appearance); unchanged without relations."""
    by_rel: dict = {}
    for r in requests:
        by_rel.setdefault(r.get("relation"), []).append(r)
    if len(by_rel) <= 1:
        return list(requests)
    out, i = [], 0
    while len(out) < len(requests):
        out += [rs[i] for rs in by_rel.values() if i < len(rs)]
        i += 1
    return out


def _run_groups(editor, model, tok, requests, hp, stats, regime, batch_size, t0) -> EditResult:
    if regime == "groups" and batch_size < 1:
        raise InputError(f"edit regime 'groups' needs batch_size >= 1 (facts per fresh model), got {batch_size}")
    size = 1 if regime == "single" else batch_size
    ordered = spread_relations(requests) if size > 1 else list(requests)
    deltas, logs, ids = {}, [], []
    for g, start in enumerate(range(0, len(ordered), size)):
        chunk = ordered[start:start + size]
        res = editor.edit(model, tok, chunk, hp, stats)
        deltas.update({f"case{g}{SEP}{n}": d for n, d in res.deltas.items()})
        logs.append(res.log)
        ids.append([r["case_id"] for r in chunk])
    log = _merge_logs(logs, regime, size, time.perf_counter() - t0)
    log["group_case_ids"] = ids
    return EditResult(deltas=deltas, log=log)


def edit_groups(result) -> list[tuple[list[str], dict[str, torch.Tensor]]]:
    """(case_ids, deltas) per fresh model of a ``single``/``groups`` result, in edit order.
    Reads edits saved before groups existed (``single_case_ids``, one case per model)."""
    log = result.log
    ids = log.get("group_case_ids")
    if ids is None and log.get("single_case_ids") is not None:
        ids = [[c] for c in log["single_case_ids"]]
    if log.get("regime") not in PER_GROUP or ids is None:
        raise InputError("this edit was not made in the 'single' or 'groups' regime")
    out = [(list(g), {}) for g in ids]
    for key, d in result.deltas.items():
        case, name = key.split(SEP, 1)
        out[int(case[len("case"):])][1][name] = d
    return out


def single_deltas(result: EditResult) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(case_id, deltas) per request of a ``single``/``groups`` result, in request order
    (the facts of one group share its delta set)."""
    return [(cid, d) for ids, d in edit_groups(result) for cid in ids]


def is_single(edit) -> bool:
    """Whether a loaded edit holds one delta set per fact or group (``single``/``groups``:
    a fresh model each)."""
    return edit is not None and edit.log.get("regime") in PER_GROUP


def load_edited(model_dir, edit_dir=None, device: str = "cpu"):
    """(model, tok, edit) with the edit's deltas applied, except in the single/groups regimes
    (one delta set per fact or group; ``edit_groups``), where the caller applies them per group."""
    model, tok = load_model(model_dir, device=device)
    edit = load_edit(edit_dir) if edit_dir else None
    if edit is not None and not is_single(edit):
        apply_deltas(model, edit.deltas)
    return model, tok, edit
