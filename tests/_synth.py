"""Synthetic score files for the statistics / figure / report tests (no model needed).

Every alternative has probability 0.1, so a prompt "holds" iff its p_target is 0.5 (0.05
fails). ``make_grid`` writes base/edited/step-N/finetuned scores per cell in which each
fact's fate is drawn with a fixed generator from a per-remedy retention probability.
"""
from __future__ import annotations

import math

import numpy as np

from edit_retention.io import write_json, write_jsonl

ALT = 0.1


def row(cid, knowledge, kind, index, p):
    return {"case_id": cid, "knowledge": knowledge, "kind": kind, "index": index, "prompt": "x", "target": "t",
            "alt": "a", "lp_target": math.log(p), "n_target": 1, "lp_alt": math.log(ALT), "n_alt": 1,
            "p_target": p, "p_alt": ALT, "top1": p > 0.3}


def phase_rows(held_e: dict, held_i: dict) -> list[dict]:
    rows = []
    for cid, h in held_e.items():
        p = 0.5 if h else 0.05
        rows += [row(cid, "edited", "rewrite", 0, p), row(cid, "edited", "paraphrase", 0, p),
                 row(cid, "edited", "paraphrase", 1, 0.05), row(cid, "edited", "neighborhood", 0, 0.5)]
    for cid, h in held_i.items():
        p = 0.5 if h else 0.05
        rows += [row(cid, "intrinsic", "rewrite", 0, p), row(cid, "intrinsic", "paraphrase", 0, p)]
    return rows


def make_grid(tmp, remedies, edited_keep, seeds=(0, 1), n=12, steps=(2,), total=4, intr_keep=0.9,
              editors=("rome",)):
    """Cells (summarize's format) and the records file; edited_keep: {remedy: P(kept)}."""
    rng = np.random.default_rng(0)
    E = [f"e{j}" for j in range(n)]
    Iq = [f"i{j}" for j in range(n)]
    recs = [{"case_id": c, "relation": f"P{j % 3}"} for j, c in enumerate(E)]
    recs += [{"case_id": c, "relation": f"P{j % 3}"} for j, c in enumerate(Iq)]
    write_jsonl(tmp / "records.jsonl", recs)
    base = tmp / "base.jsonl"
    write_jsonl(base, phase_rows({c: False for c in E}, {c: True for c in Iq}))
    cells = []
    for ed in editors:
        for r in remedies:
            edited = tmp / f"edited_{ed}_{r}.jsonl"
            write_jsonl(edited, phase_rows({c: True for c in E}, {c: True for c in Iq}))
            for s in seeds:
                phases = {"base": str(base), "edited": str(edited)}
                ke, ki = {c: True for c in E}, {c: True for c in Iq}
                for t in list(steps) + [total]:
                    frac = t / total
                    ke = {c: v and bool(rng.random() < edited_keep[r] ** frac) for c, v in ke.items()}
                    ki = {c: v and bool(rng.random() < intr_keep ** frac) for c, v in ki.items()}
                    f = tmp / f"{ed}_{r}_s{s}_{t}.jsonl"
                    write_jsonl(f, phase_rows(ke, ki))
                    phases["finetuned" if t == total else f"step-{t}"] = str(f)
                tm = tmp / f"{ed}_{r}_s{s}_task.json"
                write_json(tm, {"eval_loss": 2.0 + 0.1 * s, "eval_perplexity": 7.0 + s})
                cells.append({"model": "tiny", "editor": ed, "task": "text", "remedy": r, "seed": s,
                              "phases": phases, "task_metrics": str(tm)})
    return cells, tmp / "records.jsonl"


REMEDIES = {"none": {"paraphrase_k": 0, "freeze": "none"},
            "p1": {"paraphrase_k": 1, "freeze": "none"},
            "p3": {"paraphrase_k": 3, "freeze": "none"},
            "freeze": {"paraphrase_k": 0, "freeze": "edited"},
            "lora": {"paraphrase_k": 0, "freeze": "none", "method": {"type": "lora", "r": 4}}}
KEEP = {"none": 0.3, "p1": 0.5, "p3": 0.8, "freeze": 0.7, "lora": 0.9}
TASKS = {"text": {"type": "causal_lm", "params": {"steps": 4, "batch_size": 2, "seq_len": 8}}}
