"""The model passes that measure an edit's health (the measures and the gate: ``health``).

Usage::

    h = measure_health(model, tok, deltas, edited, control, texts)         # batch/sequential
    h = measure_health(model, tok, None, edited, control, texts, groups=edit_groups(res))  # single/groups

The model is bit-identical on return (deltas are applied inside ``deltas_applied``).
"""
from __future__ import annotations

import math

import torch

from .editors.base import deltas_applied
from .evaluate import _pad_id, _position_logits
from .io import InputError
from .records import fill


def _right_padded(chunk: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token lists, right-padded to the longest."""
    width = max(map(len, chunk))
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, e in enumerate(chunk):
        ids[b, : len(e)] = torch.tensor(e)
        mask[b, : len(e)] = 1
    return ids, mask


@torch.inference_mode()
def greedy_next(model, tok, prompts: list[str], batch_size: int = 32) -> list[int]:
    """The greedy next-token id after each prompt (right padding; eval mode while it runs)."""
    if not prompts:
        return []
    dev = next(model.parameters()).device
    pad = _pad_id(tok)
    enc = tok(prompts)["input_ids"]
    out: list[int] = []
    was = model.training
    model.eval()
    try:
        for s in range(0, len(enc), batch_size):
            chunk = enc[s: s + batch_size]
            ids, mask = _right_padded(chunk, pad)
            rows = torch.arange(len(chunk))
            cols = torch.tensor([len(p) - 1 for p in chunk])
            logits = _position_logits(model, ids.to(dev), mask.to(dev), rows.to(dev), cols.to(dev))
            out += logits.argmax(-1).tolist()
    finally:
        model.train(was)
    return out


@torch.inference_mode()
def text_nll(model, tok, texts: list[str], max_len: int = 128, batch_size: int = 8) -> float:
    """Mean next-token NLL (nats) over every token of ``texts`` (each cut to ``max_len``)."""
    if not texts:
        return math.nan
    dev = next(model.parameters()).device
    pad = _pad_id(tok)
    enc = [e[:max_len] for e in tok(texts)["input_ids"]]
    total, count = 0.0, 0
    was = model.training
    model.eval()
    try:
        for s in range(0, len(enc), batch_size):
            chunk = [e for e in enc[s: s + batch_size] if len(e) > 1]
            if not chunk:
                continue
            ids, mask = (t.to(dev) for t in _right_padded(chunk, pad))
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
            tgt = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                       ignore_index=-100, reduction="sum").item()
            count += int((tgt != -100).sum())
    finally:
        model.train(was)
    return total / max(count, 1)


def delta_rel_norms(model, deltas: dict[str, torch.Tensor]) -> dict[str, float]:
    """||delta||_F / ||W||_F per edited parameter (W: the unedited weight)."""
    params = dict(model.named_parameters())
    out = {}
    for name, d in deltas.items():
        w = params[name].detach().double()
        out[name] = float(d.double().norm() / w.norm().clamp_min(1e-30))
    return out


def _first_token(tok, target: str) -> int:
    ids = tok(" " + target, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InputError(f"target {target!r} tokenizes to nothing")
    return ids[0]


def _neighbours(rec: dict, exclude: set[str]) -> list[str]:
    """A fact's neighbourhood prompts, less those naming a subject in ``exclude`` (another
    fact of the same edit, which may rightly change them)."""
    return [n["prompt"] for n in rec.get("neighborhood_prompts", []) if not any(s in n["prompt"] for s in exclude)]


def _prompts(edited: list[dict], control: list[dict], exclude: set[str]) -> list[str]:
    """Every prompt a health measure reads: main prompts, neighbours, control main prompts."""
    return ([fill(r["prompt"], r["subject"]) for r in edited + control]
            + [p for r in edited for p in _neighbours(r, exclude)])


def _per_fact(model, tok, edited, control, base_next: dict, batch_size: int, exclude: set[str]) -> dict:
    """{measure: {case_id: (hits, n)}} for the model as it is now."""
    prompts = list(dict.fromkeys(_prompts(edited, control, exclude)))
    now = dict(zip(prompts, greedy_next(model, tok, prompts, batch_size)))
    out: dict = {"first_token_es": {}, "neighborhood_agreement": {}, "control_agreement": {}}
    for r in edited:
        out["first_token_es"][r["case_id"]] = (int(now[fill(r["prompt"], r["subject"])]
                                                   == _first_token(tok, r["target_new"])), 1)
        neigh = _neighbours(r, exclude)
        if neigh:
            out["neighborhood_agreement"][r["case_id"]] = (sum(now[p] == base_next[p] for p in neigh), len(neigh))
    for r in control:
        p = fill(r["prompt"], r["subject"])
        out["control_agreement"][r["case_id"]] = (int(now[p] == base_next[p]), 1)
    return out


def measure_health(model, tok, deltas: dict | None, edited: list[dict], control: list[dict],
                   texts: list[str], groups: list[tuple[list[str], dict]] | None = None,
                   batch_size: int = 32, max_len: int = 128, ppl_cases: int = 8) -> dict:
    """Every measure of the module docstring for one edit; the model is unchanged on return.

    ``deltas``: the edit (batch/sequential regimes); ``groups``: (case_ids, deltas) per fresh
    model (single/groups regimes, ``editors.regimes.edit_groups``) -- give one of the two.
    ``texts``: held-out unrelated text for the perplexity ratio.
    """
    if (deltas is None) == (groups is None):
        raise InputError("measure_health: give either deltas or groups")
    subjects = {r["subject"] for r in edited}
    everything = list(dict.fromkeys(_prompts(edited, control, subjects)))
    base_next = dict(zip(everything, greedy_next(model, tok, everything, batch_size)))
    base_nll = text_nll(model, tok, texts, max_len)
    per_fact: dict = {"first_token_es": {}, "neighborhood_agreement": {}, "control_agreement": {}}
    norms: dict[str, float] = {}
    ratios: list[float] = []
    if groups is None:
        models = [(edited, control, deltas, True)]
    else:
        from .single import group_facts   # the single/groups regimes' own control pairing
        step = max(1, math.ceil(len(groups) / max(ppl_cases, 1)))
        models = [(recs, ctrls, d, i % step == 0)
                  for i, (recs, ctrls, d) in enumerate(group_facts(edited, control, groups))]
    for recs, ctrls, d, with_ppl in models:
        for name, v in delta_rel_norms(model, d).items():
            norms[name] = max(norms.get(name, 0.0), v)
        with deltas_applied(model, d):
            for k, facts in _per_fact(model, tok, recs, ctrls, base_next, batch_size, subjects).items():
                per_fact[k].update(facts)
            if with_ppl and texts:
                ratios.append(math.exp(text_nll(model, tok, texts, max_len) - base_nll))
    out: dict = {}
    for k, facts in per_fact.items():
        hits, n = sum(h for h, _ in facts.values()), sum(m for _, m in facts.values())
        out[k] = hits / n if n else math.nan
        out[f"n_{k}"] = n
    out["per_fact"] = {k: {c: list(v) for c, v in facts.items()} for k, facts in per_fact.items()}
    out["ppl_ratio"] = sum(ratios) / len(ratios) if ratios else math.nan
    out["ppl_base"] = math.exp(base_nll) if not math.isnan(base_nll) else math.nan
    out["n_texts"] = len(texts)
    out["delta_rel_norm"] = max(norms.values()) if norms else 0.0
    out["delta_rel_norms"] = norms
    return out
