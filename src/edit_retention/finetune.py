"""Downstream fine-tuning of a (possibly edited) model, with layer freezing.

Usage (through the CLI)::

    python -m edit_retention finetune --model data/models/m/base --edit data/edits/... \
        --train train.jsonl --eval eval.jsonl --params '{"steps": 40, "lr": 5e-5}' \
        --freeze edited --out-model DIR --out-metrics metrics.json

The task here is unstructured causal-LM training on passages of unrelated text: the
passages are tokenised, joined with EOS and cut into fixed-length blocks (the packing of
HF ``run_clm.py``). ``freeze="edited"`` freezes every parameter of the transformer blocks
the editor touched (taken from the edit's own log, never from the config).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

import torch
from tqdm import tqdm

from .io import InputError
from .models import arch_of, layer_of_param


@dataclass
class FinetuneArgs:
    steps: int = 40                # optimiser steps
    lr: float = 5e-5               # peak learning rate (AdamW)
    batch_size: int = 8            # blocks per step
    seq_len: int = 64              # tokens per block
    warmup_steps: int = 4          # linear warm-up, then linear decay to 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_blocks: int = 32          # held-out blocks for the task score (perplexity)

    @classmethod
    def from_dict(cls, d: dict, where: str = "finetune") -> "FinetuneArgs":
        known = {f.name: f for f in fields(cls)}
        out = {}
        for k, v in d.items():
            if k not in known:
                raise InputError(f"{where}: unknown key {k!r} (known: {', '.join(known)})")
            typ = type(getattr(cls(), k))
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, typ) or isinstance(v, bool):
                raise InputError(f"{where}: key {k!r} must be {typ.__name__}, got {v!r}")
            out[k] = v
        return cls(**out)


def pack_blocks(tok, texts: list[str], seq_len: int) -> torch.Tensor:
    """Tokenise, join with EOS, and cut into (n_blocks, seq_len) token blocks."""
    ids: list[int] = []
    for t in texts:
        ids.extend(tok(t, add_special_tokens=False)["input_ids"])
        ids.append(tok.eos_token_id)
    n = len(ids) // seq_len
    if n == 0:
        raise InputError(f"fine-tuning data: {len(ids)} tokens are fewer than one block of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def freeze_layers(model, layers: list[int]) -> list[str]:
    """Set requires_grad=False on every parameter of the given blocks; return their names."""
    frozen = []
    layers = set(layers)
    for name, p in model.named_parameters():
        if layer_of_param(model, name) in layers:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


@torch.no_grad()
def eval_loss(model, blocks: torch.Tensor, batch_size: int) -> float:
    model.eval()
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        b = blocks[i : i + batch_size].to(dev)
        out = model(input_ids=b, labels=b)
        total += out.loss.item() * b.shape[0]
        count += b.shape[0]
    return total / max(count, 1)


def finetune(model, tok, train_texts, eval_texts, args: FinetuneArgs, seed: int,
             frozen_layers: list[int] = (), progress: bool = True) -> dict:
    """Train ``model`` in place; return a log with the task score before and after."""
    arch_of(model)
    torch.manual_seed(seed)
    train = pack_blocks(tok, train_texts, args.seq_len)
    held = pack_blocks(tok, eval_texts, args.seq_len)[: args.eval_blocks]
    frozen = freeze_layers(model, list(frozen_layers))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(args.warmup_steps, 1), max(0.0, (args.steps - s) / max(args.steps - args.warmup_steps, 1))))
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    loss_before = eval_loss(model, held, args.batch_size)
    losses, t0, order, pos = [], time.time(), torch.randperm(len(train), generator=gen), 0
    model.train()
    for step in tqdm(range(args.steps), desc="finetune", mininterval=5, disable=not progress):
        if pos + args.batch_size > len(order):
            order, pos = torch.randperm(len(train), generator=gen), 0
        batch = train[order[pos : pos + args.batch_size]].to(dev)
        pos += args.batch_size
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning diverged: loss is {loss.item()} at step {step} (lower lr?)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    loss_after = eval_loss(model, held, args.batch_size)
    return {
        "args": asdict(args), "seed": seed, "frozen_layers": sorted(set(frozen_layers)),
        "n_frozen_params": len(frozen), "train_blocks": len(train), "train_loss": losses,
        "seconds": time.time() - t0,
        "eval_loss_before": loss_before, "eval_loss": loss_after,
        "eval_perplexity_before": math.exp(loss_before), "eval_perplexity": math.exp(loss_after),
    }
