"""Edit health of editor x regime x batch size on a study's own artifacts (README "Edit health").

For each run: edit the study's edit set (or its first --n facts) with one editor in one
regime, then measure what the issue of a broken edit needs to see (edit_retention.health):
control agreement, neighbourhood agreement, first-token ES, held-out perplexity ratio, the
delta's norm relative to the weight; beside them the probability-test ES (P(new) > P(true))
on the main prompts, the gate's verdict with the default thresholds, and the cost (seconds,
forward/backward passes).

Usage (after `snakemake --cores all data/select/... data/stats/...` built the inputs)::

    python benchmarks/bench_health.py --study data --model-name smollm2-135m --facts builtin \
        --runs rome:batch rome:single rome:sequential:8 memit:batch alphaedit:batch ft_l:batch \
        --n 48 --json /tmp/health48.json --show 10

A run is EDITOR:REGIME[:BATCH_SIZE][:key=value,...] (hparam overrides, e.g. rome:batch::update=sequential;
memit:groups:6 edits groups of 6 facts, one fresh model each, dealt round-robin over relations).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edit_retention.editors import get_editor, make_hparams
from edit_retention.editors.base import deltas_applied
from edit_retention.editors.passes import count_passes
from edit_retention.editors.regimes import edit_groups, is_single, run_regime, single_deltas
from edit_retention.editors.verify import verify_cases
from edit_retention.health import gate
from edit_retention.health_measure import greedy_next, measure_health
from edit_retention.io import read_jsonl
from edit_retention.models import load_model
from edit_retention.records import fill
from edit_retention.single import group_facts
from edit_retention.stats import load_stats


def parse_run(text: str) -> tuple[str, str, int, dict]:
    parts = text.split(":")
    editor, regime = parts[0], parts[1] if len(parts) > 1 else "batch"
    size = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    over = {}
    if len(parts) > 3:
        for kv in parts[3].split(","):
            k, v = kv.split("=")
            over[k] = json.loads(v) if v[:1] in "0123456789-[{tf" else v
    return editor, regime, size, over


def requests(records: list[dict]) -> list[dict]:
    return [dict(r, aug_prompts=[]) for r in records]   # keeps relation: groups spread over it


def show_changes(model, tok, models: list[tuple[dict, list[dict]]], limit: int) -> None:
    """Print the controls whose greedy next token the edit changed: base -> edited, each
    control under the model it is measured on (``models``: (deltas, controls) pairs)."""
    changed, total = [], 0
    for deltas, control in models:
        prompts = [fill(r["prompt"], r["subject"]) for r in control]
        before = greedy_next(model, tok, prompts)
        with deltas_applied(model, deltas):
            after = greedy_next(model, tok, prompts)
        changed += [(p, b, x) for p, b, x in zip(prompts, before, after) if b != x]
        total += len(prompts)
    print(f"  {len(changed)} of {total} controls changed their greedy next token:")
    for p, b, x in changed[:limit]:
        print(f"    {p!r}: {tok.decode([b])!r} -> {tok.decode([x])!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="data", help="the study's data folder")
    ap.add_argument("--model-name", default="smollm2-135m")
    ap.add_argument("--facts", default="builtin")
    ap.add_argument("--corpus", default="pydocs")
    ap.add_argument("--hparams-set", default=None, help="default: --model-name")
    ap.add_argument("--runs", nargs="+", default=["rome:batch"])
    ap.add_argument("--n", type=int, default=0, help="first N edit facts (0: all)")
    ap.add_argument("--texts", type=int, default=32, help="held-out passages for the perplexity ratio")
    ap.add_argument("--json", default=None)
    ap.add_argument("--show", type=int, default=0,
                    help="print up to N control prompts whose greedy next token the edit changed")
    a = ap.parse_args()
    d = Path(a.study)
    sel = d / "select" / a.model_name / a.facts
    edited, control = read_jsonl(sel / "edit.jsonl"), read_jsonl(sel / "control.jsonl")
    if a.n:
        edited, control = edited[: a.n], control[: a.n]
    texts = [r["text"] for r in read_jsonl(d / "corpus" / a.corpus / a.facts / "eval.jsonl")][: a.texts]
    model, tok = load_model(d / "models" / a.model_name / "base")
    torch.set_grad_enabled(True)
    stats_dir = d / "stats" / a.model_name / a.corpus / a.facts
    stats = {}
    for p in sorted(stats_dir.glob("layer*.safetensors")):
        stats.update(load_stats(p)[0])
    print(f"{len(edited)} edited, {len(control)} controls, {len(texts)} texts, stats layers {sorted(stats)}")
    table = []
    for run in a.runs:
        editor, regime, size, over = parse_run(run)
        hp = make_hparams(editor, over, a.hparams_set or a.model_name)
        t0 = time.perf_counter()
        with count_passes(model) as passes:
            res = run_regime(get_editor(editor), model, tok, requests(edited), hp, stats, regime, size)
        secs = time.perf_counter() - t0
        per_model = is_single(res)
        per_case = single_deltas(res) if per_model else None
        h = measure_health(model, tok, None if per_model else res.deltas, edited, control, texts,
                           groups=edit_groups(res) if per_model else None)
        # probability-test ES on the main prompts: the edit log's own scored success
        verify_cases(model, tok, requests(edited), res, per_case)
        es_prob = res.log["n_converged"] / len(edited)
        row = {"run": run, "n": len(edited), "es_prob": es_prob, **{k: v for k, v in h.items() if k not in ("delta_rel_norms", "per_fact")},
               "problems": gate(h), "seconds": secs, "passes": passes}
        table.append(row)
        if a.show:
            show_changes(model, tok, [(d, ctrl) for _, ctrl, d in group_facts(edited, control, edit_groups(res))]
                         if per_model else [(res.deltas, control)], a.show)
        print(f"{run:32s} n={len(edited)} ES(prob)={es_prob:.2f} ES(1st)={h['first_token_es']:.2f} "
              f"ctrl={h['control_agreement']:.3f} neigh={h['neighborhood_agreement']:.3f} "
              f"ppl×{h['ppl_ratio']:.3f} |d|/|W|={h['delta_rel_norm']:.3f} {secs:.0f}s "
              f"{'OK' if not row['problems'] else 'UNHEALTHY: ' + '; '.join(row['problems'])}", flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
