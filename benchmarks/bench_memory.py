"""Benchmark the memory estimate behind "auto" batch sizes against measured peaks.

For each micro-batch size, a fresh subprocess loads the model and runs fine-tuning steps
(causal_lm on python_docs passages, ``batch_size`` examples per optimiser step in passes
of ``micro`` examples), then reports:

    estimate_mb   memory.train_state_bytes + micro x memory.sequence_bytes (what "auto" plans with)
    measured_mb   peak resident memory minus the resident memory before the model was loaded
                  (on CUDA: peak allocated GPU memory)
    ratio         estimate / measured (above 1: the estimate is on the safe side)

and the micro-batch "auto" would pick for a few job reservations (``--mem-mb``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --model data/models/smollm2-135m/base
    python benchmarks/bench_memory.py --model data/models/smollm2-135m/base --device cuda --micro 8 16 32
"""
from __future__ import annotations

import argparse
import json
import os
import time

from _runner import load, rss_mb, run_rows


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(a) -> dict:
    import torch

    from edit_retention import memory
    from edit_retention.corpus import build_corpus
    from edit_retention.finetune import FinetuneArgs, finetune

    torch.set_num_threads(a.threads)
    texts = build_corpus({"type": "python_docs"}, [], n_train=200, n_eval=10, seed=0)
    base = current_rss_mb()
    model, tok = load(a.model, a.device)
    args = FinetuneArgs(steps=a.steps, lr=5e-5, batch_size=a.batch_size, micro_batch_size=a.one, seq_len=a.seq_len,
                        warmup_steps=1, eval_blocks=1, precision=a.precision)
    state = memory.train_state_bytes(model, a.precision)
    per_item = memory.sequence_bytes(model.config, a.seq_len, train=True, precision=a.precision)
    estimate = state + a.one * per_item
    cuda = a.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    log = finetune(model, tok, texts["train"], texts["eval"], args, seed=0, progress=False)
    measured = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb() - base
    return {"micro": a.one, "batch_size": a.batch_size, "seq_len": a.seq_len, "precision": a.precision,
            "device": a.device, "estimate_mb": round(estimate / 2**20), "measured_mb": round(measured),
            "ratio": round(estimate / 2**20 / measured, 2), "s_per_step": round(log["train_seconds"] / a.steps, 2),
            "wall_s": round(time.time() - t0, 1), "state_bytes": state, "per_item_bytes": per_item}


def picks(a, row: dict) -> dict:
    """The micro-batch "auto" chooses for each reservation (from a run's own estimate)."""
    from edit_retention import memory
    return {mb: memory.pick_batch_size(memory.budget_bytes(a.device, mb), row["state_bytes"],
                                       row["per_item_bytes"], a.batch_size) for mb in a.mem_mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="prepared model folder")
    p.add_argument("--micro", type=int, nargs="*", default=[1, 2, 4, 8])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--mem-mb", type=int, nargs="*", default=[2000, 3000, 4000, 8000])
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a)))
        return
    rows = run_rows(__file__, {f"micro {m}": ["--model", a.model, "--one", str(m), "--batch-size", str(a.batch_size),
                                              "--seq-len", str(a.seq_len), "--steps", str(a.steps),
                                              "--threads", str(a.threads), "--device", a.device,
                                              "--precision", a.precision] for m in a.micro},
                    ["micro", "estimate_mb", "measured_mb", "ratio", "s_per_step"])
    chosen = picks(a, rows[0])
    print("auto micro-batch per --mem-mb: " + ", ".join(f"{k} MB -> {v}" for k, v in chosen.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "auto": chosen}, f, indent=2)


if __name__ == "__main__":
    main()
