"""Benchmark the select stage: seconds to find n_edit + n_control known facts in a fact file.

Two modes:
  early  the select stage as it runs (``select.select_facts``): score the seeded order
         chunk by chunk, stop once the choice is made
  all    score every record first (the stage before early stopping; ``select.known_mask``);
         with ``--subset N`` only the first N records of the seeded order are scored and
         the time for the whole file is extrapolated linearly (printed as all_s_est)

Usage::

    python benchmarks/bench_select.py --model data/models/smollm2-135m/base \
        --records data/facts/trex/records.jsonl --n-edit 32 --n-control 32 --mode early
    python benchmarks/bench_select.py --model data/models/smollm2-135m/base \
        --records data/facts/trex/records.jsonl --mode all --subset 512

Prints one JSON row per run (seconds, records scored, known facts met, s per record).
"""
from __future__ import annotations

import argparse
import logging
import json
import time

import torch
from _runner import load, rss_mb

from edit_retention.io import read_jsonl
from edit_retention.select import known_mask, select_facts, selection_order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--records", required=True)
    ap.add_argument("--n-edit", type=int, default=32)
    ap.add_argument("--n-control", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mode", choices=["early", "all"], default="early")
    ap.add_argument("--subset", type=int, default=0, help="all mode: score only this many, extrapolate")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    records = read_jsonl(a.records)
    model, tok = load(a.model)
    row = {"mode": a.mode, "records": a.records, "n_records": len(records), "n_edit": a.n_edit,
           "n_control": a.n_control, "threads": a.threads}
    t0 = time.perf_counter()
    if a.mode == "early":
        edit, control, _, info = select_facts(model, tok, records, a.n_edit, a.n_control, a.seed, a.batch_size)
        secs = time.perf_counter() - t0
        row.update(info, seconds=round(secs, 1), s_per_scored=round(secs / max(info["n_scored"], 1), 4),
                   strata=len({r["relation"] for r in edit}))
    else:
        order = selection_order(records, a.seed)
        subset = [records[i] for i in order[:a.subset or len(records)]]
        mask, _ = known_mask(model, tok, subset, a.batch_size)
        secs = time.perf_counter() - t0
        row.update(n_scored=len(subset), n_known=sum(mask), seconds=round(secs, 1),
                   s_per_scored=round(secs / len(subset), 4),
                   all_s_est=round(secs / len(subset) * len(records), 0))
    row["peak_mb"] = round(rss_mb())
    print(json.dumps(row))


if __name__ == "__main__":
    main()
