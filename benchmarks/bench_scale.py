"""How the cost of one edit grows with the number of facts edited together (issue 16 item 5).

A batch edit of N facts by ROME, MEMIT or AlphaEdit is three pieces of work, timed here
apart on the editors' own functions, with the model's real keys:

* keys: one forward pass, up to the edited layer, over the N facts' rows
  (``rome.compute_keys``; MEMIT and AlphaEdit take them at each of their 5 layers);
* target values v* (z for MEMIT/AlphaEdit): a gradient optimisation per fact, run in
  passes of ``v_batch`` facts with an early stop per fact (``rome.compute_values``). Its
  cost per fact does not depend on N by construction (fixed-size passes, facts do not
  interact), so it is measured at the ``--value-sizes`` only (minutes per 16 facts here);
* the closed-form update from keys and values: ROME's ``joint_delta`` (solves an N x N
  system) and ``sequential_delta`` (N rank-one updates, each solving with C), MEMIT's
  ``memit_delta`` per layer (a d x d solve with K^T K added) and AlphaEdit's
  ``nullspace_projector`` (one eigendecomposition of C per layer) + ``alphaedit_delta``.
  Values do not change the cost of these, so V is drawn at random with the real keys.

    python benchmarks/bench_scale.py --model data/models/smollm2-135m/base \\
        --facts data/facts/trex/records.jsonl --stats data/stats/smollm2-135m/pydocs/trex/layer5.safetensors

The statistics file's C (layer 5) stands for every layer's: the solves cost the same
whatever its values. Seconds are wall time of one process at the thread count given.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner import load, rss_mb  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--facts", required=True, help="records.jsonl with at least max(--sizes) records")
    ap.add_argument("--stats", required=True, help="a layer_stats file (its C stands for every layer's)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--value-sizes", type=int, nargs="*", default=[16], help="N at which v* is optimised")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON rows here as well")
    a = ap.parse_args(argv)

    import torch

    from edit_retention.editors import make_hparams
    from edit_retention.editors.base import request_from_record
    from edit_retention.editors.memit_math import alphaedit_delta, memit_delta, nullspace_projector
    from edit_retention.editors.rome import compute_keys, compute_values
    from edit_retention.editors.rome_math import joint_delta, sequential_delta
    from edit_retention.io import read_jsonl
    from edit_retention.models import arch_of, get_module
    from edit_retention.stats import load_stats

    torch.set_num_threads(a.threads)
    model, tok = load(a.model)
    recs = read_jsonl(a.facts)
    if len(recs) < max(a.sizes):
        raise SystemExit(f"{a.facts}: {len(recs)} records, fewer than --sizes' {max(a.sizes)}")
    requests = [request_from_record(r) for r in recs[:max(a.sizes)]]
    stats, _ = load_stats(a.stats)
    C = next(iter(stats.values())).to(torch.float64)
    rome_hp = make_hparams("rome", {}, "smollm2-135m")
    memit_hp = make_hparams("memit", {}, "smollm2-135m")
    alpha_hp = make_hparams("alphaedit", {}, "smollm2-135m")
    W = get_module(model, arch_of(model).mlp_out.format(rome_hp.layer)).weight.detach()
    n_layers = len(memit_hp.layers)
    gen = torch.Generator().manual_seed(0)

    def closed_forms(K, V, R):
        out = {}
        _, out["rome_joint_s"] = timed(lambda: joint_delta(W, K, V, C))
        _, out["rome_sequential_s"] = timed(lambda: sequential_delta(W, K, V, C))
        _, t = timed(lambda: memit_delta(K, R, C, memit_hp.mom2_update_weight))
        out["memit_s"] = t * n_layers           # one layer's solve, times the editor's layers
        (P, _), t_proj = timed(lambda: nullspace_projector(C, alpha_hp.nullspace_threshold))
        _, t = timed(lambda: alphaedit_delta(K, R, P, None, alpha_hp.l2))
        out["alphaedit_s"] = (t_proj + t) * n_layers
        return out

    rows = []
    for i, n in enumerate([min(a.sizes)] + list(a.sizes)):   # round 0 warms up (library loads, caches): not kept
        req = requests[:n]
        K, t_keys = timed(lambda: compute_keys(model, tok, req, rome_hp))
        V = W.to(torch.float64) @ K.T
        V = (V + 0.1 * V.norm(dim=0, keepdim=True) * torch.randn(V.shape, generator=gen, dtype=torch.float64)
             / V.shape[0] ** 0.5).T
        R = V - K @ W.to(torch.float64).T
        row = {"n": n, "keys_s": t_keys, **closed_forms(K, V, R)}
        if i == 0:
            continue
        if n in a.value_sizes:
            _, row["values_s"] = timed(lambda: compute_values(model, tok, req, rome_hp, K))
        row["peak_rss_mb"] = rss_mb()
        rows.append(row)
        print(json.dumps(row), flush=True)

    per = lambda r, k: r[k] / r["n"]  # noqa: E731
    print("\n| N | keys, s per fact (ROME; MEMIT/AlphaEdit x5) | v*, s per fact | closed form, s per fact: ROME joint | ROME sequential | MEMIT (5 layers) | AlphaEdit (5 layers) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = f"{per(r, 'values_s'):.2f}" if "values_s" in r else "-"
        print(f"| {r['n']} | {per(r, 'keys_s'):.4f} | {v} | {per(r, 'rome_joint_s'):.4f} | {per(r, 'rome_sequential_s'):.4f} "
              f"| {per(r, 'memit_s'):.4f} | {per(r, 'alphaedit_s'):.4f} | {r['peak_rss_mb']:.0f} |")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
