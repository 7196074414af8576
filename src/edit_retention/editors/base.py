"""What every editor shares: the result type, delta files, hparam checking, request rows.

THE INVARIANT (every editor keeps it, tests check it): ``editor.edit(model, ...)`` returns
with the model bit-identical to how it came in (weights, ``requires_grad`` flags, train/eval
mode); the edit exists only as additive ``deltas``. Only :func:`apply_deltas` changes the
model. ``apply_deltas(m, d)`` then ``apply_deltas(m, d, sign=-1)`` restores it to float
tolerance; :func:`deltas_applied` restores it exactly (it keeps a copy).

Usage::

    result = editor.edit(model, tok, requests, hp, stats)
    save_edit(result, "data/edits/rome/run1")          # delta.safetensors + log.json
    with deltas_applied(model, load_edit("data/edits/rome/run1").deltas):
        ...                                             # edited model here, exact base after
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file

from ..checksums import verify
from ..io import InputError, atomic_dir, read_json, without_timings, write_json
from ..records import fill


class EditError(RuntimeError):
    """An edit could not be computed (e.g. a non-finite value); the message names the case."""


@dataclass
class EditResult:
    """``deltas``: parameter name -> float32 additive delta (the parameter's own shape).
    ``log``: editor, edited_layers, edited_params, cases (one dict per request, with its
    case_id), seconds, hparams, warnings. ``state``: what a sequential run hands to the
    editor's next ``edit(..., state=...)`` call (e.g. AlphaEdit's keys of past edits);
    never saved, empty for editors that keep none."""
    deltas: dict[str, torch.Tensor]
    log: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- deltas
def _check_deltas(model, deltas: dict[str, torch.Tensor]) -> dict[str, torch.nn.Parameter]:
    params = dict(model.named_parameters())
    for name, d in deltas.items():
        if name not in params:
            raise InputError(f"delta for {name!r}: the model has no such parameter")
        if tuple(d.shape) != tuple(params[name].shape):
            raise InputError(f"delta for {name!r}: shape {tuple(d.shape)} != parameter shape "
                             f"{tuple(params[name].shape)}")
    return {n: params[n] for n in deltas}


@torch.no_grad()
def apply_deltas(model, deltas: dict[str, torch.Tensor], sign: float = 1.0) -> None:
    """W += sign * delta for each named parameter, in place."""
    for name, p in _check_deltas(model, deltas).items():
        p.add_(deltas[name].to(device=p.device, dtype=p.dtype), alpha=sign)


@contextlib.contextmanager
def deltas_applied(model, deltas: dict[str, torch.Tensor]) -> Iterator[None]:
    """Apply ``deltas`` inside the block; restore the exact original weights afterwards."""
    params = _check_deltas(model, deltas)
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        apply_deltas(model, deltas)
        yield
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


def save_edit(result: EditResult, out_dir: str | os.PathLike) -> None:
    """Write ``delta.safetensors`` and ``log.json`` into ``out_dir`` atomically (the log's
    timings go to the job's log, ``io.without_timings``)."""
    tensors = {n: d.detach().to("cpu", torch.float32).contiguous() for n, d in result.deltas.items()}
    with atomic_dir(out_dir) as tmp:
        save_file(tensors, str(tmp / "delta.safetensors"),
                  metadata={"editor": str(result.log.get("editor", ""))})
        write_json(tmp / "log.json", without_timings(result.log, f"edit {out_dir}"))


def load_edit(path: str | os.PathLike) -> EditResult:
    path = Path(path)
    for f in ("delta.safetensors", "log.json"):
        if not (path / f).exists():
            raise InputError(f"{path}: not an edit folder (no {f}); run the apply_edits stage")
    verify(path)
    return EditResult(deltas=load_file(str(path / "delta.safetensors")), log=read_json(path / "log.json"))


@contextlib.contextmanager
def frozen_eval(model) -> Iterator[None]:
    """Eval mode and no parameter gradients inside; the caller's mode and flags restored after."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.train(training)


# ---------------------------------------------------------------------------- hparams
def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value, hint):
    """Return ``value`` checked against the annotation ``hint``; raise TypeError if it does not fit."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for h in typing.get_args(hint):
            try:
                return _coerce(value, h)
            except TypeError:
                pass
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        (inner, *_) = typing.get_args(hint) or (typing.Any,)
        return [v if inner is typing.Any else _coerce(v, inner) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError
    if hint is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def build_hparams(editor: str, cls, overrides: dict | None):
    """Defaults of dataclass ``cls`` with ``overrides``; InputError names editor and key."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in overrides.items():
        if key not in names:
            raise InputError(f"{editor} hparams: unknown key {key!r} (known: {', '.join(names)})")
        try:
            kwargs[key] = _coerce(value, hints[key])
        except TypeError:
            raise InputError(f"{editor} hparams: key {key!r} must be {_type_name(hints[key])}, "
                             f"got {type(value).__name__} {value!r}") from None
    hp = cls(**kwargs)
    if hasattr(hp, "validate"):
        hp.validate()
    return hp


def help_of(cls) -> dict[str, str]:
    """Field name -> help text of a hyperparameter dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


# ---------------------------------------------------------------------------- requests
REQUEST_KEYS = ("case_id", "subject", "prompt", "target_new", "target_true", "aug_prompts")


def request_from_record(rec: dict, aug_prompts: list[str] | None = None) -> dict:
    """A record (records.py schema) as an edit request; ``aug_prompts`` are extra templates.
    The record's ``relation``, where it has one, goes along (the groups regime spreads over it)."""
    return {"case_id": rec["case_id"], "subject": rec["subject"], "prompt": rec["prompt"],
            "target_new": rec["target_new"], "target_true": rec["target_true"],
            "aug_prompts": list(aug_prompts or []), **({"relation": rec["relation"]} if "relation" in rec else {})}


def begin_edit(editor, hp, requests: list[dict]) -> tuple[float, object, list[dict]]:
    """How every editor's ``edit`` opens: (start time, ``hp`` (the editor's defaults when
    None) checked for type and validated, the validated requests)."""
    t0 = time.perf_counter()
    cls = editor.hparams_cls
    hp = cls() if hp is None else hp
    if not isinstance(hp, cls):
        raise InputError(f"{editor.name}: hparams must be {cls.__name__}, got {type(hp).__name__}")
    if hasattr(hp, "validate"):
        hp.validate()
    return t0, hp, validate_requests(requests, editor.name)


def validate_requests(requests: list[dict], editor: str) -> list[dict]:
    if not requests:
        raise InputError(f"{editor}: no edit requests given")
    seen = set()
    out = []
    for i, r in enumerate(requests):
        where = f"{editor}: request {i}" + (f" (case_id {r.get('case_id')!r})" if isinstance(r, dict) else "")
        if not isinstance(r, dict):
            raise InputError(f"{where}: expected a dict")
        for key in ("case_id", "subject", "prompt", "target_new"):
            if not isinstance(r.get(key), str) or not r[key].strip():
                raise InputError(f"{where}: field {key!r} must be a non-empty string")
        aug = r.get("aug_prompts", []) or []
        if not isinstance(aug, list):
            raise InputError(f"{where}: field 'aug_prompts' must be a list")
        for j, t in enumerate([r["prompt"]] + aug):
            if not isinstance(t, str) or t.count("{}") != 1:
                name = "prompt" if j == 0 else f"aug_prompts[{j - 1}]"
                raise InputError(f"{where}: field {name!r} must contain '{{}}' exactly once: {t!r}")
        if r["case_id"] in seen:
            raise InputError(f"{where}: case_id {r['case_id']!r} repeats")
        seen.add(r["case_id"])
        out.append({**r, "aug_prompts": list(aug)})
    return out


@dataclass
class Row:
    """One tokenised text: ``ids`` = prompt tokens then target tokens (``n_prompt`` of the
    former); ``subj`` = index of the subject's last token; ``req`` = request index."""
    ids: list[int]
    n_prompt: int
    subj: int
    req: int


def encode_row(tok, template: str, subject: str, target: str | None, req: int, prefix: str = "") -> Row:
    """Tokenise ``prefix + template(subject)`` (+ " " + target as separate tokens).

    The target is tokenised on its own with a leading space and appended, so the prompt's
    tokens are the same with or without it. The subject's last token is found from the
    tokenizer's character offsets (the token covering the subject's last character).
    """
    text = (prefix + " " if prefix else "") + fill(template, subject)
    subj_end = (len(prefix) + 1 if prefix else 0) + template.index("{}") + len(subject)
    if getattr(tok, "is_fast", False):
        enc = tok(text, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        subj = next((i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < subj_end <= e), None)
        if subj is None:
            subj = max(i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > 0 and s < subj_end)
    else:
        ids = list(tok(text)["input_ids"])
        subj = len(tok(text[:subj_end])["input_ids"]) - 1
    n_prompt = len(ids)
    if target is not None:
        tids = list(tok(" " + target.strip(), add_special_tokens=False)["input_ids"])
        if not tids:
            raise InputError(f"target {target!r} tokenises to nothing")
        ids += tids
    return Row(ids=ids, n_prompt=n_prompt, subj=subj, req=req)


def pad_rows(rows: list[Row], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for ``rows``."""
    n = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r.ids)] = torch.tensor(r.ids)
        mask[i, :len(r.ids)] = 1
    return ids.to(device), mask.to(device)


def length_buckets(lengths: list[int], pass_tokens: float = 48) -> list[list[int]]:
    """Indices of ``lengths`` in groups to pad together, longest first: the grouping of the
    rows sorted by length that minimises the tokens run, padding included, plus
    ``pass_tokens`` per group (a forward/backward pass costs about that many tokens more
    than its tokens on one CPU thread: 0.18 s against 4.8 ms per token for SmolLM2-135M).
    One right-padded batch of rows of very different lengths spends much of its matmuls on
    padding (FT-L with paraphrase rows: 720 padded for 412 real tokens)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    widths = sorted(set(lengths), reverse=True)
    count = [sum(1 for x in lengths if x == w) for w in widths]
    best, cut = [0.0], [0]          # best[k]: cost of the k longest widths; cut[k]: its last group's start
    for k in range(1, len(widths) + 1):
        options = [(best[j] + pass_tokens + widths[j] * sum(count[j:k]), j) for j in range(k)]
        cost, j = min(options)
        best.append(cost)
        cut.append(j)
    bounds, k = [], len(widths)
    while k:
        bounds.append((cut[k], k))
        k = cut[k]
    groups, at = [], 0
    for j, k in reversed(bounds):
        n = sum(count[j:k])
        groups.append(order[at: at + n])
        at += n
    return groups


def target_index(rows: list[Row], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, position, token) index tensors of every target token under teacher forcing."""
    ri, pi, ti = [], [], []
    for i, r in enumerate(rows):
        for j in range(r.n_prompt, len(r.ids)):
            ri.append(i)
            pi.append(j - 1)
            ti.append(r.ids[j])
    t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return t(ri), t(pi), t(ti)


def hidden_and_head(model):
    """(base model returning final hidden states, output head): logits only where needed."""
    return model.base_model, model.get_output_embeddings()


def row_target_logprob(model, ids, mask, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean token log-prob of the target (teacher forcing) and the final hidden states.

    Logits are computed only at the scored positions (the vocabulary projection of every
    position would dominate memory)."""
    base, head = hidden_and_head(model)
    h = base(input_ids=ids, attention_mask=mask, use_cache=False)[0]
    ri, pi, ti = target_index(rows, ids.device)
    logp = torch.log_softmax(head(h[ri, pi]).float(), dim=-1).gather(1, ti[:, None])[:, 0]
    n = torch.zeros(len(rows), device=ids.device).index_add_(0, ri, torch.ones_like(logp))
    s = torch.zeros(len(rows), device=ids.device).index_add_(0, ri, logp)
    return s / n.clamp(min=1), h
