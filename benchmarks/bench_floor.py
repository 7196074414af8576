"""How far each stage is from what this machine's matrix multiply allows (issue 16 item 1).

One run, one process, ``--threads`` threads (the pipeline's jobs run with one):

* attainable: ``torch.mm`` throughput in fp32 and bf16 on the shapes the stages multiply
  (tokens x hidden @ hidden x MLP, and MLP x hidden, of the model) and one square 1024
  product; the best of each dtype is the floor's denominator.
* achieved, per stage: the FLOPs of the stage's own work counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (every matmul, attention and convolution it
  dispatches, forward and backward), divided by the seconds of a second, uncounted run of
  the same work. Stages: layer statistics (``stats.compute_mom2``), scoring
  (``evaluate.score_items``, prompt run once), greedy generation (``tasks.scoring.greedy_ids``),
  a ROME edit (single regime: one fact per edit; the default study's hparams set, whose v*
  optimisation runs under bf16 autocast) and fine-tuning steps (``finetune.finetune``,
  full, the default study's bf16 autocast). Each stage's ratio is given against the fp32
  floor and against the floor of the precision its matmuls run in (autocast: most of them).

The ratio achieved / attainable (fp32) is what the README reports: absolute seconds on
these shared machines move from run to run, the ratio much less.

    OMP_NUM_THREADS=1 python benchmarks/bench_floor.py --model data/models/smollm2-135m/base \
        --select data/select/smollm2-135m/builtin --paraphrases data/facts/builtin/paraphrases.jsonl \
        --corpus data/corpus/pydocs/builtin/train.jsonl \
        --stats data/stats/smollm2-135m/pydocs/builtin/layer5.safetensors
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from _runner import add_phase_args, load, phase_items, rss_mb


def gemm_rate(m: int, k: int, n: int, dtype, seconds: float = 1.0) -> float:
    """FLOP/s of ``torch.mm`` (m x k @ k x n) in ``dtype``, best of repeated timed blocks."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.1:
            torch.mm(a, b)
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t0))
    return best


def attainable(hidden: int, mlp: int, tokens: int, seconds: float = 1.0) -> dict:
    shapes = {"tokens x hidden @ hidden x mlp": (tokens, hidden, mlp),
              "tokens x mlp @ mlp x hidden": (tokens, mlp, hidden), "square 1024": (1024, 1024, 1024)}
    out = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        rates = {s: gemm_rate(*shape, dtype, seconds) for s, shape in shapes.items()}
        out[name] = {"best_gflops": round(max(rates.values()) / 1e9, 1),
                     **{s: round(r / 1e9, 1) for s, r in rates.items()}}
    return out


def measure(name: str, work) -> dict:
    """FLOPs of ``work()`` (counted run), then its seconds (uncounted run)."""
    counter = FlopCounterMode(display=False)
    with counter:
        work()
    t0 = time.perf_counter()
    work()
    secs = time.perf_counter() - t0
    flops = counter.get_total_flops()
    return {"stage": name, "gflop": _sig(flops / 1e9), "seconds": _sig(secs), "gflops": _sig(flops / secs / 1e9)}


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_phase_args(ap)
    ap.add_argument("--corpus", required=True, help="JSONL of passages ({'text': ...})")
    ap.add_argument("--stats", required=True, help="statistics file of the ROME layer (layer_stats output)")
    ap.add_argument("--layer", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stats-texts", type=int, default=32)
    ap.add_argument("--gen-prompts", type=int, default=32)
    ap.add_argument("--gen-tokens", type=int, default=20)
    ap.add_argument("--edits", type=int, default=2)
    ap.add_argument("--ft-steps", type=int, default=3)
    ap.add_argument("--hparams-set", default="smollm2-135m",
                    help="ROME's hparams set (the default study's); 'none': the editor's defaults")
    ap.add_argument("--gemm-seconds", type=float, default=1.0, help="timing of each torch.mm shape")
    ap.add_argument("--json", default=None, help="also write the rows and the floor here")
    ap.add_argument("--ft-precision", default="bf16", help="fine-tuning precision (the default study's)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from edit_retention.editors import get_editor, make_hparams
    from edit_retention.evaluate import _pad_id, score_items
    from edit_retention.finetune import FinetuneArgs, finetune
    from edit_retention.io import read_jsonl
    from edit_retention.stats import compute_mom2, load_stats
    from edit_retention.tasks.scoring import greedy_ids

    model, tok = load(a.model)
    cfg = model.config
    floor = attainable(cfg.hidden_size, cfg.intermediate_size, 512, a.gemm_seconds)
    edited, items = phase_items(a)
    texts = [r["text"] for r in read_jsonl(a.corpus)]
    stats, _ = load_stats(a.stats)
    prompts = [tok(it["prompt"])["input_ids"] for it in items[: a.gen_prompts]]
    hp = make_hparams("rome", {"layer": a.layer}, hparams_set=None if a.hparams_set == "none" else a.hparams_set)
    reqs = [{"case_id": r["case_id"], "subject": r["subject"], "prompt": r["prompt"],
             "target_true": r["target_true"], "target_new": r["target_new"], "aug_prompts": [], "held_out": []}
            for r in edited[: a.edits]]
    ft = FinetuneArgs(steps=a.ft_steps, lr=5e-5, batch_size=8, seq_len=64, warmup_steps=1, eval_blocks=1,
                      precision=a.ft_precision)

    def fine_tune():
        m, _ = load(a.model)
        finetune(m, tok, texts[:200], texts[-10:], ft, seed=0, progress=False)

    stages = [   # (name, the precision its matmuls run in, work)
        ("layer statistics", "fp32", lambda: compute_mom2(model, tok, texts[: a.stats_texts], [a.layer], max_len=128,
                                                  batch_size=8, progress=False)),
        ("scoring", "fp32", lambda: score_items(model, tok, items, 32, progress=False)),
        ("scoring, full sequences", "fp32",
         lambda: score_items(model, tok, items, 32, progress=False, share_prompt=False)),
        ("generation", "fp32", lambda: greedy_ids(model, prompts, a.gen_tokens, 32, _pad_id(tok), tok.eos_token_id)),
        ("ROME edit", hp.precision, lambda: [get_editor("rome").edit(model, tok, [r], hp, stats) for r in reqs]),
        ("fine-tuning", a.ft_precision, fine_tune),
    ]
    rows = []
    for name, precision, work in stages:
        row = {**measure(name, work), "precision": precision}
        row["of_fp32_floor"] = _sig(row["gflops"] / floor["fp32"]["best_gflops"])
        row["of_own_floor"] = _sig(row["gflops"] / floor[precision]["best_gflops"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"threads": a.threads, "attainable": floor, "peak_rss_mb": round(rss_mb())}))
    if a.json:
        Path(a.json).write_text(json.dumps({"stages": rows, "attainable": floor}, indent=2))
    print("\nstage | matmuls in | GFLOP | s | GFLOP/s | of the fp32 floor | of its precision's floor")
    for r in rows:
        print(f"{r['stage']} | {r['precision']} | {r['gflop']} | {r['seconds']} | {r['gflops']} | "
              f"{r['of_fp32_floor']:.0%} | {r['of_own_floor']:.0%}")
    print(f"attainable (torch.mm, {a.threads} thread(s)): fp32 {floor['fp32']['best_gflops']} GFLOP/s, "
          f"bf16 {floor['bf16']['best_gflops']} GFLOP/s")


if __name__ == "__main__":
    main()
