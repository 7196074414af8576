"""Benchmark fine-tuning methods: training tokens per second and peak memory, per method.

Runs ``finetune.finetune`` (causal_lm on python_docs passages, the default study's task)
for a few steps with each configuration, each in a fresh subprocess so that its peak
resident memory (``ru_maxrss``) is its own:

    full          every parameter trained
    lora          LoRA r=8 on all linear layers (peft), merged afterwards
    dora          DoRA r=8 on all linear layers
    freeze-edited full fine-tuning with one block frozen (the default ROME layer, 5)
    only-edited   full fine-tuning of that one block only (everything else frozen)

Tokens/s counts the training tokens of the optimiser steps (forward + backward + step),
not the before/after evaluation. Peak RSS includes the loaded model (reported separately
as ``rss_loaded_mb``); on CUDA the peak allocated GPU memory is reported too.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_finetune.py --model /tmp/smollm/base --steps 5
    OMP_NUM_THREADS=1 python benchmarks/bench_finetune.py --model /tmp/smollm/base --precision bf16
    python benchmarks/bench_finetune.py --model data/models/smollm2-135m/base --device cuda --steps 50
"""
from __future__ import annotations

import argparse
import json
import time

from _runner import load, rss_mb, run_rows

CONFIGS = {
    "full": {"method": "full", "freeze": "none"},
    "lora": {"method": "lora", "freeze": "none"},
    "dora": {"method": "dora", "freeze": "none"},
    "freeze-edited": {"method": "full", "freeze": "edited"},
    "only-edited": {"method": "full", "freeze": "only_edited"},
}


def run_one(a) -> dict:
    import torch

    from edit_retention.corpus import build_corpus
    from edit_retention.finetune import FinetuneArgs, MethodSpec, finetune
    from edit_retention.freezing import resolve_freeze
    from edit_retention.models import num_layers

    torch.set_num_threads(a.threads)
    cfg = CONFIGS[a.one]
    texts = build_corpus({"type": "python_docs"}, [], n_train=400, n_eval=10, seed=0)
    model, tok = load(a.model, a.device)
    rss_loaded = rss_mb()
    frozen, non_layer = resolve_freeze(cfg["freeze"], [a.edited_layer], num_layers(model))
    args = FinetuneArgs(steps=a.steps, lr=5e-5, batch_size=a.batch_size, seq_len=a.seq_len, warmup_steps=1,
                        eval_blocks=1, precision=a.precision)
    if a.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    log = finetune(model, tok, texts["train"], texts["eval"], args, seed=0, frozen_layers=frozen,
                   freeze_non_layer=non_layer, progress=False, method=MethodSpec.parse(cfg["method"]))
    out = {"config": a.one, **cfg, "precision": a.precision, "steps": a.steps, "batch_size": a.batch_size, "seq_len": a.seq_len,
           "threads": a.threads, "device": a.device, "trainable_params": log["n_trainable_params"],
           "train_tokens": log["train_tokens"], "train_seconds": round(log["train_seconds"], 2),
           "tokens_per_s": round(log["train_tokens"] / log["train_seconds"], 1),
           "s_per_step": round(log["train_seconds"] / a.steps, 3), "wall_s": round(time.time() - t0, 1),
           "rss_loaded_mb": round(rss_loaded), "peak_rss_mb": round(rss_mb())}
    if a.device.startswith("cuda"):
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="prepared model folder")
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--edited-layer", type=int, default=5, help="the block the freezing configs treat as edited")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="training autocast (FinetuneArgs.precision)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--one", choices=list(CONFIGS), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a)))
        return
    cols = ["config", "precision", "trainable_params", "tokens_per_s", "s_per_step", "rss_loaded_mb", "peak_rss_mb"]
    cols += ["peak_gpu_mb"] if a.device.startswith("cuda") else []
    rows = run_rows(__file__, {name: ["--model", a.model, "--one", name, "--steps", str(a.steps),
                                      "--batch-size", str(a.batch_size), "--seq-len", str(a.seq_len),
                                      "--threads", str(a.threads), "--device", a.device,
                                      "--edited-layer", str(a.edited_layer), "--precision", a.precision]
                               for name in a.configs}, cols)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
