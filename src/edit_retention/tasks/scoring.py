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
def greedy_generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches), decoded without specials."""
    was, side = model.training, tok.padding_side
    model.eval()
    tok.padding_side = "left"
    dev = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = [prompt_ids(tok, p) for p in prompts[i: i + batch_size]]
            width = max(map(len, chunk))
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=dev)
            mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=dev)
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=tok.eos_token_id)
            out += tok.batch_decode(gen[:, width:], skip_special_tokens=True)
    finally:
        tok.padding_side = side
        model.train(was)
    return out


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf
