"""Benchmark the layer-statistics stage: tokens per second and peak memory.

Runs ``stats.compute_mom2`` (C = E[k k^T] of one or more layers' MLP keys, float64
accumulation) on the study corpus's training passages, in a fresh subprocess per
configuration so that each peak resident memory (``ru_maxrss``) is its own. The forward
is cut short after the deepest requested layer (as in the stage), so a shallow layer is
cheaper than a deep one, and extra layers below it add only their float64 outer products.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_stats.py --model data/models/smollm2-135m/base \
        --corpus data/corpus/pydocs/builtin/train.jsonl --n-samples 200 --layers 5 --layers 3,4,5,6,7
"""
from __future__ import annotations

import argparse
import json
import time

from _runner import load, rss_mb, run_rows


def run_one(a) -> dict:
    import torch

    from edit_retention.io import read_jsonl
    from edit_retention.stats import compute_mom2

    torch.set_num_threads(a.threads)
    texts = [r["text"] for r in read_jsonl(a.corpus)][: a.n_samples]
    model, tok = load(a.model, a.device)
    loaded = rss_mb()
    layers = [int(x) for x in a.one.split(",")]
    t0 = time.time()
    stats = compute_mom2(model, tok, texts, layers, max_len=a.max_len, batch_size=a.batch_size)
    secs = time.time() - t0
    return {"layers": a.one, "texts": stats.texts, "tokens": stats.tokens, "seconds": round(secs, 1),
            "tokens_per_s": round(stats.tokens / secs, 1), "threads": a.threads, "device": a.device,
            "rss_loaded_mb": round(loaded), "peak_rss_mb": round(rss_mb())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="prepared model folder")
    p.add_argument("--corpus", required=True, help="JSONL of passages ({'text': ...}), e.g. the study corpus")
    p.add_argument("--layers", action="append", help="comma-separated layers, one configuration each (repeatable)")
    p.add_argument("--n-samples", type=int, default=200)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(a)))
        return
    run_rows(__file__, {layers: ["--model", a.model, "--corpus", a.corpus, "--one", layers,
                                 "--n-samples", str(a.n_samples), "--max-len", str(a.max_len),
                                 "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--device", a.device]
                        for layers in a.layers or ["5"]},
             ["layers", "texts", "tokens", "seconds", "tokens_per_s", "rss_loaded_mb", "peak_rss_mb"])

if __name__ == "__main__":
    main()
