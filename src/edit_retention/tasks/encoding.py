"""Examples -> model tensors.

A supervised example is encoded as prompt tokens followed by response tokens (+ EOS);
the loss (labels) covers the response only.
"""
from __future__ import annotations

import torch

from ..io import InputError

IGNORE = -100


def encode_supervised(task, tok, examples: list[dict], max_len: int, where: str) -> dict:
    """Right-padded (N, L) input_ids / labels (-100 outside the response) / attention_mask.

    The response is cut to fit ``max_len``; an example whose prompt alone fills
    ``max_len`` is dropped. No example left: InputError.
    """
    seqs = []
    for ex in examples:
        prompt, response = task.prompt_response(tok, ex)
        p = prompt_ids(tok, prompt)
        r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(p) >= max_len:
            continue
        seqs.append((p, r[: max_len - len(p)]))
    if not seqs:
        raise InputError(f"{where}: no example fits seq_len={max_len} with at least one response token "
                         f"({len(examples)} examples; raise seq_len)")
    width = max(len(p) + len(r) for p, r in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, r) in enumerate(seqs):
        n = len(p) + len(r)
        ids[i, :n] = torch.tensor(p + r)
        labels[i, len(p):n] = torch.tensor(r)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def prompt_ids(tok, prompt: str) -> list[int]:
    """Prompt tokens: with the tokenizer's special tokens, unless the prompt is chat-templated
    text that carries its own."""
    special = not (getattr(tok, "chat_template", None) and tok.bos_token and prompt.startswith(tok.bos_token))
    return tok(prompt, add_special_tokens=special)["input_ids"]


def trim(batch: dict) -> dict:
    """Cut right padding common to a whole batch."""
    width = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in batch.items()}
