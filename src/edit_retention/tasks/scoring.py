"""Scoring a fine-tuned model on a task's held-out examples: loss, generation, perplexity."""
from __future__ import annotations

import math

import torch

from .encoding import IGNORE, prompt_ids, trim


@torch.no_grad()
def eval_nll(model, tensors: dict, batch_size: int) -> float:
    """Mean NLL per predicted (label != -100) token over the whole set."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for i in range(0, len(tensors["input_ids"]), batch_size):
            b = trim({k: v[i: i + batch_size].to(dev) for k, v in tensors.items()})
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
            tgt = b["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                     ignore_index=IGNORE, reduction="sum")
            total += loss.item()
            count += int((tgt != IGNORE).sum())
    finally:
        model.train(was)
    return total / max(count, 1)


@torch.no_grad()
def greedy_ids(model, prompts: list[list[int]], max_new_tokens: int, batch_size: int, pad_id: int,
               eos_id: int | None) -> list[list[int]]:
    """Greedy continuations (new token ids, at most ``max_new_tokens``, cut after EOS) of
    tokenized ``prompts``, in left-padded batches with the KV cache.

    Left padding with its attention mask: ``generate`` derives each row's position ids
    from the mask (cumulative sum), so a prompt gets the same positions, and the same
    continuation, at any batch size and beside prompts of any length (tested at batch
    sizes 1 and 8). The caller orders prompts by length if it wants less padding.
    """
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out: list[list[int]] = []
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i: i + batch_size]
            width = max(map(len, chunk))
            ids = torch.tensor([[pad_id] * (width - len(c)) + list(c) for c in chunk], device=dev)
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=dev)
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 min_new_tokens=0, do_sample=False, num_beams=1, use_cache=True,
                                 pad_token_id=pad_id, eos_token_id=eos_id)
            for row in gen[:, width:].tolist():
                if eos_id is not None and eos_id in row:
                    row = row[: row.index(eos_id) + 1]
                out.append(row)
    finally:
        model.train(was)
    return out


def greedy_generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches), decoded without specials."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen = greedy_ids(model, [prompt_ids(tok, p) for p in prompts], max_new_tokens, batch_size, pad,
                     tok.eos_token_id)
    return tok.batch_decode(gen, skip_special_tokens=True)


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
