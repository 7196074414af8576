"""Teacher-forced scoring of fact prompts: raw per-prompt log-probs (the evaluate stage).

Usage::

    from edit_retention.evaluate import build_items, score_items, evaluate
    items = build_items(edited_records, control_records, paraphrases)
    rows = score_items(model, tok, items, batch_size=32)      # one dict per item
    rows = evaluate(model, tok, edited_records, control_records, paraphrases)  # both

An item is one prompt with a target and an alternative object::

    case_id    the record's case id
    knowledge  "edited" (a counterfactual put in by an editor) | "intrinsic" (a control
               fact the base model already knew)
    kind       "rewrite" (the record's main prompt) | "paraphrase" (a held-out
               *evaluation* paraphrase, never an augmentation one) | "neighborhood"
               (a prompt about another subject; edited facts only)
    index      0 for rewrite; position in the evaluation / neighbourhood list otherwise
    prompt     the full text (template filled with the subject)
    target     the object whose probability we track; alt = the competing object

    edited     rewrite/paraphrase: target = target_new,  alt = target_true
               neighborhood:       target = neighbour's true object, alt = target_new
    intrinsic  rewrite/paraphrase: target = target_true, alt = target_new

so that, for every item, "success" is ``metrics.row_success(row)``: the target's mean
token log-prob beats the alternative's (CounterFact protocol; see ``metrics``).

A scored row adds::

    lp_target, n_target   sum of the target tokens' log-probs, and their number
    lp_alt, n_alt         the same for the alternative
    p_target, p_alt       exp(mean token log-prob) (per-token geometric-mean probability)
    top1                  greedy next token after the prompt == first target token
    generation            rewrite/paraphrase items, when ``generation_tokens`` > 0: the
                          greedy continuation of the prompt (that many new tokens at most,
                          KV cache, stopped at EOS), decoded without special tokens; what
                          the ``generation_contains`` protocol reads (``protocols``)

Tokens are ``tok(prompt)`` (with the tokenizer's special tokens, e.g. BOS) followed by
``tok(" " + target, add_special_tokens=False)``: the object follows the prompt after one
space, as in the record schema.
"""
from __future__ import annotations

import logging
import math
import time

import torch
from tqdm import tqdm

from .io import InputError
from .memory import AUTO, auto_batch_size, backoff_chunks, sequence_bytes
from .records import fill
from .tasks.scoring import greedy_ids

log = logging.getLogger(__name__)

KINDS = ("rewrite", "paraphrase", "neighborhood")
# Kinds that get a greedy continuation (the fact's own prompts; neighbourhood prompts need none).
GENERATED_KINDS = ("rewrite", "paraphrase")
KNOWLEDGE = ("edited", "intrinsic")


def _eval_templates(rec: dict, paraphrases: dict, knowledge: str) -> list[str]:
    """The held-out evaluation paraphrase templates of a record (checked)."""
    cid = rec["case_id"]
    entry = paraphrases.get(cid)
    if not isinstance(entry, dict) or not isinstance(entry.get("evaluate"), list):
        raise InputError(
            f"paraphrases: case_id {cid!r} ({knowledge} fact) has no entry with an 'evaluate' list"
        )
    augment = set(entry.get("augment") or [])
    for j, t in enumerate(entry["evaluate"]):
        if not isinstance(t, str) or t.count("{}") != 1:
            raise InputError(
                f"paraphrases: case_id {cid!r} field 'evaluate[{j}]' must be a template with "
                f"the subject slot '{{}}' exactly once: {t!r}"
            )
        if t in augment:
            raise InputError(
                f"paraphrases: case_id {cid!r} field 'evaluate[{j}]' is also an augmentation "
                f"paraphrase: {t!r}"
            )
    return entry["evaluate"]


def _item(rec: dict, knowledge: str, kind: str, index: int, prompt: str, target: str, alt: str) -> dict:
    return {"case_id": rec["case_id"], "knowledge": knowledge, "kind": kind, "index": index,
            "prompt": prompt, "target": target, "alt": alt}


def _fact_items(rec: dict, knowledge: str, paraphrases: dict) -> list[dict]:
    """Rewrite + evaluation-paraphrase (+ neighbourhood for edited) items of one record."""
    if knowledge == "edited":
        target, alt = rec["target_new"], rec["target_true"]
    else:
        target, alt = rec["target_true"], rec["target_new"]
    subj = rec["subject"]
    items = [_item(rec, knowledge, "rewrite", 0, fill(rec["prompt"], subj), target, alt)]
    for j, t in enumerate(_eval_templates(rec, paraphrases, knowledge)):
        items.append(_item(rec, knowledge, "paraphrase", j, fill(t, subj), target, alt))
    if knowledge == "edited":
        for j, n in enumerate(rec["neighborhood_prompts"]):
            if n["target"].strip() == rec["target_new"].strip():
                raise InputError(
                    f"case_id {rec['case_id']!r}: field 'neighborhood_prompts[{j}]' has target "
                    f"{n['target']!r} equal to target_new; neighbourhood success is undefined"
                )
            items.append(_item(rec, knowledge, "neighborhood", j, n["prompt"], n["target"], rec["target_new"]))
    return items


def build_items(edited: list[dict], control: list[dict], paraphrases: dict) -> list[dict]:
    """All items to score: edited facts first, then intrinsic (control) facts.

    ``paraphrases`` maps case_id -> {"augment": [...], "evaluate": [...]} (templates with
    "{}"); only the "evaluate" templates are scored, and one that also appears under
    "augment" is an error. Every record, edited or control, needs an entry.
    """
    items: list[dict] = []
    for knowledge, records in (("edited", edited), ("intrinsic", control)):
        for rec in records:
            items.extend(_fact_items(rec, knowledge, paraphrases))
    return items


def _where(item: dict) -> str:
    return f"case_id {item.get('case_id')!r} ({item.get('knowledge')} {item.get('kind')} {item.get('index')})"


def _tokenize(tok, items: list[dict]) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt ids, target ids, alt ids) per item; raise on anything empty."""
    for it in items:
        for field in ("target", "alt"):
            if not isinstance(it.get(field), str) or not it[field].strip():
                raise InputError(f"{_where(it)}: field {field!r} is empty")
    prompts = tok([it["prompt"] for it in items])["input_ids"]
    targets = tok([" " + it["target"] for it in items], add_special_tokens=False)["input_ids"]
    alts = tok([" " + it["alt"] for it in items], add_special_tokens=False)["input_ids"]
    out = []
    for it, p, t, a in zip(items, prompts, targets, alts):
        for field, ids in (("prompt", p), ("target", t), ("alt", a)):
            if len(ids) == 0:
                raise InputError(f"{_where(it)}: field {field!r} ({it[field]!r}) tokenizes to nothing")
        out.append((list(p), list(t), list(a)))
    return out


def _pad_id(tok) -> int:
    for pid in (tok.pad_token_id, tok.eos_token_id, 0):
        if pid is not None:
            return int(pid)
    return 0


def _plain_head(model) -> bool:
    """True when the logits are exactly ``head(final hidden state)``: then only the scored
    positions need the vocabulary projection. Models that rescale or cap their logits in
    the causal-LM wrapper (Gemma-2's soft-capping, Cohere's logit scale) use the full path."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        return False
    from transformers import PreTrainedModel
    return (isinstance(model, PreTrainedModel) and model.base_model is not model
            and model.get_output_embeddings() is not None)


def _position_logits(model, ids, mask, rows, cols, positions=None, past=None, cache: bool = False):
    """Float logits at (rows[i], cols[i]) only: the head is applied where a score is read
    (a 14-token row needs 2-3 of its 14 vocabulary projections). With ``cache`` (and
    ``past``, ``positions`` for a continuation) returns (logits, the KV cache)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model   # peft: the adapted LM
    kw = dict(input_ids=ids, attention_mask=mask, use_cache=cache)
    if cache:
        kw.update(position_ids=positions, past_key_values=past)
    if _plain_head(inner):
        out = inner.base_model(**kw)
        logits = inner.get_output_embeddings()(out[0][rows, cols]).float()
    else:
        out = model(**kw)
        logits = out.logits[rows, cols].float()
    return (logits, out.past_key_values) if cache else logits


def _score_batch(model, seqs: list[tuple[list[int], list[int]]], pad_id: int, device) -> list[tuple[float, int, bool]]:
    """(sum of continuation log-probs, its length, greedy-first-token hit) per sequence.

    Each sequence is (prompt ids, continuation ids), right-padded into one batch; with
    right padding every real token keeps its position, so padding cannot change it.
    Position j's logits predict token j+1, so continuation token t (at len(p) + t) is read
    at position len(p) - 1 + t; its first one also gives the greedy next token.
    """
    lengths = [len(p) + len(c) for p, c in seqs]
    width = max(lengths)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, cols, tgt, first = [], [], [], []
    for b, (p, c) in enumerate(seqs):
        ids[b, : lengths[b]] = torch.tensor(p + c)
        mask[b, : lengths[b]] = 1
        first.append(len(rows))
        for t, token in enumerate(c):
            rows.append(b)
            cols.append(len(p) - 1 + t)
            tgt.append(token)
    ids, mask = ids.to(device), mask.to(device)
    r, k, t = (torch.tensor(x, device=device) for x in (rows, cols, tgt))
    logits = _position_logits(model, ids, mask, r, k)
    tok_lp = logits.gather(-1, t[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    lp_sum = torch.zeros(len(seqs), device=device, dtype=tok_lp.dtype).index_add_(0, r, tok_lp).tolist()
    greedy = logits[torch.tensor(first, device=device)].argmax(dim=-1).tolist()
    return [(lp_sum[b], len(c), greedy[b] == c[0]) for b, (_, c) in enumerate(seqs)]


def _score_shared(model, encoded: list[tuple[list[int], list[int], list[int]]], pad_id: int,
                  device) -> list[tuple[tuple[float, int, bool], tuple[float, int, bool]]]:
    """``_score_batch`` of (prompt + target, prompt + alt) per item, with the prompt run once.

    Pass 1 runs the prompts, left-padded (position ids from the mask, so each prompt keeps
    the positions it has alone), and keeps the KV cache; the logits at its last position
    give the first token of both objects. Pass 2 runs only what is left: every object but
    its last token, for objects of two or more tokens, each row on a copy of its prompt's
    cache, at the positions that follow the prompt. Single-token objects need no pass 2.
    Returns None when the model gives no cache, or one that cannot be copied row by row
    (then the caller scores the full sequences).
    """
    n = len(encoded)
    width = max(len(p) for p, _, _ in encoded)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for b, (p, _, _) in enumerate(encoded):
        ids[b, width - len(p):] = torch.tensor(p)
        mask[b, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    last = torch.full((n,), width - 1, dtype=torch.long, device=device)
    first_logits, past = _position_logits(model, ids, mask, torch.arange(n, device=device), last, positions,
                                          cache=True)
    if past is None or not hasattr(past, "reorder_cache"):
        return None
    first_lp = torch.log_softmax(first_logits, dim=-1)
    greedy = first_lp.argmax(dim=-1).tolist()
    objects = [(b, c) for b, (_, t, a) in enumerate(encoded) for c in (t, a)]
    sums = [float(first_lp[b, c[0]]) for b, c in objects]
    rest = [(j, b, c) for j, (b, c) in enumerate(objects) if len(c) > 1]
    if rest:
        past.reorder_cache(torch.tensor([b for _, b, _ in rest], device=device))
        w2 = max(len(c) - 1 for _, _, c in rest)
        ids2 = torch.full((len(rest), w2), pad_id, dtype=torch.long)
        mask2 = torch.zeros((len(rest), width + w2), dtype=torch.long)
        pos2 = torch.zeros((len(rest), w2), dtype=torch.long)
        rows, cols, tgt = [], [], []
        for r, (_, b, c) in enumerate(rest):
            ids2[r, : len(c) - 1] = torch.tensor(c[:-1])
            mask2[r] = torch.cat([mask[b].cpu(), torch.tensor([1] * (len(c) - 1) + [0] * (w2 - len(c) + 1))])
            pos2[r] = len(encoded[b][0]) + torch.arange(w2)
            for t in range(1, len(c)):   # token t is read at the position of token t - 1
                rows.append(r)
                cols.append(t - 1)
                tgt.append(c[t])
        r_, k_, t_ = (torch.tensor(x, device=device) for x in (rows, cols, tgt))
        logits, _ = _position_logits(model, ids2.to(device), mask2.to(device), r_, k_, pos2.to(device), past,
                                     cache=True)
        tok_lp = logits.gather(-1, t_[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
        add = torch.zeros(len(rest), dtype=tok_lp.dtype, device=device).index_add_(0, r_, tok_lp).tolist()
        for r, (j, _, _) in enumerate(rest):
            sums[j] += add[r]
    return [((sums[2 * b], len(t), greedy[b] == t[0]), (sums[2 * b + 1], len(a), greedy[b] == a[0]))
            for b, (_, t, a) in enumerate(encoded)]


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _auto_size(model, encoded, n_items: int) -> int:
    """Items per pass that fit the job's memory: two sequences of the longest item each."""
    longest = max(len(p) + max(len(t), len(a)) for p, t, a in encoded)
    scored = 2 * max(max(len(t), len(a)) for _, t, a in encoded)
    per_item = 2 * sequence_bytes(model.config, longest, train=False, logit_positions=scored)
    return auto_batch_size(model, per_item, cap=n_items, where="scoring", inference=True)


def score_items(model, tok, items: list[dict], batch_size: int | str = 32, device=None,
                progress: bool = True, generation_tokens: int = 0, share_prompt: bool = True) -> list[dict]:
    """Score every item by teacher forcing; return the items (same order) with scores.

    ``batch_size`` counts items per forward pass ("auto": as many as the job's memory
    holds, memory.py; a pass that runs out of memory is redone at half the size); each
    item contributes two sequences (prompt + target, prompt + alt) to the same batch.
    Items are batched in order of length to limit padding; results come back in input
    order and equal scoring one by one up to float rounding.  The model is put in eval mode while scoring and its
    previous mode restored.  ``device`` defaults to the model's device.
    ``generation_tokens`` > 0 adds each rewrite/paraphrase row's greedy continuation
    (``generation``; see ``add_generations``), generated in batches of the same size.
    ``share_prompt``: run each prompt once and continue both objects from its KV cache
    (``_score_shared``; equal to scoring the two full sequences up to float rounding);
    False scores the two full sequences (``_score_batch``).
    """
    if generation_tokens < 0:
        raise InputError(f"score_items: generation_tokens must be >= 0, got {generation_tokens}")
    if batch_size != AUTO and batch_size < 1:
        raise InputError(f"score_items: batch_size must be >= 1 or \"auto\", got {batch_size}")
    if not items:
        return []
    device = _model_device(model) if device is None else torch.device(device)
    encoded = _tokenize(tok, items)
    # Longest first, so that batches hold similar lengths: by prompt when the prompt is run
    # once (its pass is most of the tokens), else by the full sequence.
    def length(i):
        p, t, a = encoded[i]
        return (-len(p), -max(len(t), len(a))) if share_prompt else (-(len(p) + max(len(t), len(a))),)

    order = sorted(range(len(items)), key=length)
    size = _auto_size(model, encoded, len(items)) if batch_size == AUTO else batch_size
    pad_id = _pad_id(tok)
    results: list[dict | None] = [None] * len(items)

    def score_chunk(start: int, n: int) -> list[dict]:
        chunk = order[start: start + n]
        shared = _score_shared(model, [encoded[i] for i in chunk], pad_id, device) if share_prompt else None
        if shared is not None:
            return [_row(items[i], *shared[j]) for j, i in enumerate(chunk)]
        seqs = [(encoded[i][0], encoded[i][k]) for i in chunk for k in (1, 2)]
        scored = _score_batch(model, seqs, pad_id, device)
        return [_row(items[i], scored[2 * j], scored[2 * j + 1]) for j, i in enumerate(chunk)]

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(items), desc="scoring", unit="item",
                                          disable=not progress, leave=False) as bar:
            for start, n, rows in backoff_chunks(len(order), size, score_chunk, where="scoring"):
                for i, row in zip(order[start: start + n], rows):
                    results[i] = row
                bar.update(n)
        if generation_tokens:
            add_generations(model, tok, results, [e[0] for e in encoded], generation_tokens, size)
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


def add_generations(model, tok, rows: list[dict], prompt_ids: list[list[int]], max_new_tokens: int,
                    batch_size: int) -> None:
    """Set ``row["generation"]`` on every rewrite/paraphrase row: the greedy continuation of
    its prompt tokens (the same ids the scores read). Prompts go longest first so batches
    hold similar lengths; the text does not depend on the batching (``greedy_ids``)."""
    todo = sorted((i for i, r in enumerate(rows) if r["kind"] in GENERATED_KINDS), key=lambda i: -len(prompt_ids[i]))
    if not todo:
        return
    t0 = time.perf_counter()

    def generate_chunk(start: int, n: int) -> list[str]:
        ids = greedy_ids(model, [prompt_ids[i] for i in todo[start: start + n]], max_new_tokens, n,
                         _pad_id(tok), tok.eos_token_id)
        return tok.batch_decode(ids, skip_special_tokens=True)

    for start, n, texts in backoff_chunks(len(todo), batch_size, generate_chunk, where="generation"):
        for i, text in zip(todo[start: start + n], texts):
            rows[i]["generation"] = text
    log.info("generation: %d prompts x %d new tokens at most in %.1f s", len(todo), max_new_tokens,
             time.perf_counter() - t0)


def _row(item: dict, target: tuple[float, int, bool], alt: tuple[float, int, bool]) -> dict:
    (lp_t, n_t, top1), (lp_a, n_a, _) = target, alt
    return {**item, "lp_target": lp_t, "n_target": n_t, "lp_alt": lp_a, "n_alt": n_a,
            "p_target": math.exp(lp_t / n_t), "p_alt": math.exp(lp_a / n_a), "top1": bool(top1)}


def evaluate(model, tok, edited: list[dict], control: list[dict], paraphrases: dict,
             batch_size: int = 32, device=None, progress: bool = True, generation_tokens: int = 0) -> list[dict]:
    """``score_items(build_items(edited, control, paraphrases))``."""
    items = build_items(edited, control, paraphrases)
    return score_items(model, tok, items, batch_size=batch_size, device=device, progress=progress,
                       generation_tokens=generation_tokens)
