"""Scoring with each prompt run once (KV cache shared by both objects) against scoring the
two full sequences, on one phase's items of the default study (issue 16 item 3).

Times ``evaluate.score_items`` with ``share_prompt`` True and False alternately (A B A B,
``--repeats`` each) in one process, one thread as the pipeline's jobs run, and reports the
median of each, their ratio, the tokens each runs through the model, and the largest
difference between the two modes' log-probs.

    python benchmarks/bench_scoring.py --model data/models/smollm2-135m/base \
        --select data/select/smollm2-135m/builtin --paraphrases data/facts/builtin/paraphrases.jsonl
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from _runner import add_phase_args, load, phase_items, rss_mb
from edit_retention.evaluate import score_items


def tokens(tok, items) -> dict:
    """Tokens through the model: full sequences (prompt + object, twice per item) against
    the shared prefix (prompt once, then every object but its last token)."""
    full = shared = 0
    for it in items:
        p = len(tok(it["prompt"])["input_ids"])
        objs = [len(tok(" " + it[k], add_special_tokens=False)["input_ids"]) for k in ("target", "alt")]
        full += 2 * p + sum(objs)
        shared += p + sum(n - 1 for n in objs)
    return {"tokens_full": full, "tokens_shared": shared}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_phase_args(ap)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, tok = load(a.model)
    _, items = phase_items(a)
    score_items(model, tok, items[: a.batch_size], a.batch_size, progress=False)   # warm-up
    times = {"full": [], "shared": []}
    rows = {}
    for _ in range(a.repeats):
        for mode in ("full", "shared"):
            t0 = time.perf_counter()
            rows[mode] = score_items(model, tok, items, a.batch_size, progress=False, share_prompt=mode == "shared")
            times[mode].append(time.perf_counter() - t0)
    diff = max(abs(f[k] - s[k]) for f, s in zip(rows["full"], rows["shared"]) for k in ("lp_target", "lp_alt"))
    same_top1 = all(f["top1"] == s["top1"] for f, s in zip(rows["full"], rows["shared"]))
    full, shared = statistics.median(times["full"]), statistics.median(times["shared"])
    print(json.dumps({"items": len(items), **tokens(tok, items), "full_s": round(full, 2),
                      "shared_s": round(shared, 2), "speedup": round(full / shared, 2),
                      "max_abs_lp_diff": diff, "top1_identical": same_top1, "threads": a.threads,
                      "batch_size": a.batch_size, "peak_rss_mb": round(rss_mb())}))


if __name__ == "__main__":
    main()
