"""Cost of the greedy continuations the generation_contains protocol reads, per scored phase.

One phase of the default study scores 48 edited + 48 control facts: 96 main prompts and
192 held-out paraphrases get a continuation (neighbourhood prompts do not). This times
``evaluate.score_items`` on those items without and with ``generation_tokens`` new tokens,
in one process, one thread (as the pipeline's jobs run), so the difference is the cost
generation adds to each phase's scoring.

    python benchmarks/bench_generation.py --model data/models/smollm2-135m/base \
        --select data/select/smollm2-135m/builtin --paraphrases data/facts/builtin/paraphrases.jsonl
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from _runner import add_phase_args, load, phase_items, rss_mb
from edit_retention.evaluate import GENERATED_KINDS, score_items
from edit_retention.protocols import success


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_phase_args(ap)
    ap.add_argument("--tokens", type=int, nargs="+", default=[50], help="generation lengths to time")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, tok = load(a.model)
    _, items = phase_items(a)
    n_gen = sum(it["kind"] in GENERATED_KINDS for it in items)
    t0 = time.perf_counter()
    score_items(model, tok, items, a.batch_size, progress=False)
    base = time.perf_counter() - t0
    out = {"items": len(items), "generated_prompts": n_gen, "score_s": round(base, 1), "threads": a.threads,
           "batch_size": a.batch_size}
    for n in a.tokens:
        t0 = time.perf_counter()
        rows = score_items(model, tok, items, a.batch_size, progress=False, generation_tokens=n)
        total = time.perf_counter() - t0
        gen = [r for r in rows if "generation" in r]
        out[f"gen{n}_s"] = round(total - base, 1)
        out[f"gen{n}_tokens"] = sum(len(tok(r["generation"], add_special_tokens=False)["input_ids"]) for r in gen)
        for knowledge in ("edited", "intrinsic"):
            rw = [r for r in gen if r["knowledge"] == knowledge and r["kind"] == "rewrite"]
            for p in ("probability", "first_token", "generation_contains"):
                out[f"gen{n}_{knowledge}_rewrite_{p}"] = f"{sum(bool(success(r, p)) for r in rw)}/{len(rw)}"
    out["peak_rss_mb"] = round(rss_mb())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
