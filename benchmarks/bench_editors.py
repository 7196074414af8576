"""Benchmark editors on a real model: seconds per edit and edit success, per layer.

Edits N facts in batch mode and prints a table. The facts are 16 well-known capitals with
counterfactual targets, written inline, or, with ``--facts FILE``, the first N records of
a fact file in the record schema (``records.jsonl`` of prepare-facts, or the ``edit.jsonl``
of the select stage, so the facts the base model knows), each edited on its own prompt,
its PS scored on up to two of its paraphrase templates, and NS on the main prompts of the
next ``--n-control`` records of the file. ROME runs once per ``--layers`` entry; editors whose hparams name a
``layers`` list (FT-L, MEMIT, AlphaEdit) run once per ``--layer-sets`` entry ("3-7" or
"2,4,6"), or per single layer of ``--layers`` when no sets are given. Statistics are
computed (and cached) for every layer an editor with ``uses_stats`` needs.
Protocols (all teacher-forced, mean token log-prob over the target):
  ES   share of facts with logP(target_new) > logP(target_true) on the edit prompt
  PS   the same on two paraphrase templates that were NOT used during editing
  NS   share of 8 unedited control facts whose true object still beats a wrong one
  Pnew mean over facts of exp(mean token log-prob of target_new) on the edit prompt

Usage::

    python benchmarks/bench_editors.py --model /tmp/m/base --layers 3 5 8 12 \
        --editors rome ft_l --n 16 --stats-text /work/shared/datasets/text/wikitext2_valid.txt
    python benchmarks/bench_editors.py --model /tmp/m/base --editors memit alphaedit \
        --layer-sets 3-7 4-8 --hparams-set smollm2-135m
    python benchmarks/bench_editors.py --model random:llama3-8b --device cuda --editors memit \
        --layer-sets 4-8 --hparams-set llama3-8b --n 1000      # speed only: random weights
    python benchmarks/bench_editors.py --model data/models/smollm2-135m/base --editors rome \
        --facts data/select/smollm2-135m/builtin/edit.jsonl --n 32 --n-control 8
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from _runner import load

from edit_retention.editors import deltas_applied, get_editor, make_hparams
from edit_retention.editors.base import encode_row, pad_rows, row_target_logprob
from edit_retention.stats import compute_mom2, load_stats, save_stats

FACTS = [  # subject, true, new
    ("France", "Paris", "Rome"), ("Germany", "Berlin", "Madrid"), ("Italy", "Rome", "Paris"),
    ("Spain", "Madrid", "Berlin"), ("Japan", "Tokyo", "Beijing"), ("China", "Beijing", "Tokyo"),
    ("Russia", "Moscow", "London"), ("England", "London", "Moscow"), ("Egypt", "Cairo", "Athens"),
    ("Greece", "Athens", "Cairo"), ("Canada", "Ottawa", "Dublin"), ("Ireland", "Dublin", "Ottawa"),
    ("Austria", "Vienna", "Lisbon"), ("Portugal", "Lisbon", "Vienna"), ("Norway", "Oslo", "Warsaw"),
    ("Poland", "Warsaw", "Oslo"),
]
CONTROL = [("Sweden", "Stockholm", "Paris"), ("Hungary", "Budapest", "Rome"), ("Finland", "Helsinki", "Berlin"),
           ("Denmark", "Copenhagen", "Madrid"), ("Belgium", "Brussels", "Tokyo"), ("Turkey", "Ankara", "London"),
           ("Thailand", "Bangkok", "Moscow"), ("Kenya", "Nairobi", "Cairo")]
PROMPT = "The capital of {} is"
HELD_OUT = ["{}'s capital city is", "The capital city of {} is"]


def requests(n: int) -> list[dict]:
    """The 16 capitals, then (for speed at larger n: 100, 1,000 edits) made-up regions
    "Province <i> of <country>" with the same targets."""
    facts = [(s if i < len(FACTS) else f"Province {i // len(FACTS)} of {s}", t, o)
             for i, (s, t, o) in ((i, FACTS[i % len(FACTS)]) for i in range(n))]
    return [{"case_id": f"cap{i}", "subject": s, "prompt": PROMPT, "target_true": t, "target_new": o,
             "aug_prompts": [], "held_out": HELD_OUT} for i, (s, t, o) in enumerate(facts)]


def file_facts(path: str, n: int, n_control: int, k: int = 0) -> tuple[list[dict], list[tuple]]:
    """(requests, controls) from a fact file in the record schema: the first ``n`` records
    are edited, the next ``n_control`` are the controls (prompt, subject, true, wrong).
    Each request holds out two paraphrase templates for PS and edits on ``k`` others."""
    from edit_retention.io import read_jsonl
    from edit_retention.records import validate_records
    records = validate_records(read_jsonl(path), path)
    if len(records) < n + n_control:
        raise SystemExit(f"--facts {path}: {len(records)} records, fewer than --n {n} + --n-control {n_control}")
    others = {r["case_id"]: [t for t in r["paraphrase_prompts"] if t != r["prompt"]] for r in records[:n]}
    short = [c for c, ts in others.items() if len(ts) < 2 + k]
    if short:
        raise SystemExit(f"--facts {path}: {len(short)} record(s) have fewer than 2 + --k {k} paraphrase templates, "
                         f"e.g. {short[0]!r}")
    reqs = [{"case_id": r["case_id"], "subject": r["subject"], "prompt": r["prompt"], "target_true": r["target_true"],
             "target_new": r["target_new"], "aug_prompts": others[r["case_id"]][2:2 + k],
             "held_out": others[r["case_id"]][:2]} for r in records[:n]]
    controls = [(r["prompt"], r["subject"], r["target_true"], r["target_new"]) for r in records[n:n + n_control]]
    return reqs, controls


@torch.no_grad()
def logp(model, tok, items: list[tuple[str, str, str]]) -> torch.Tensor:
    """Mean token log-prob of target for each (template, subject, target)."""
    rows = [encode_row(tok, t, s, o, i) for i, (t, s, o) in enumerate(items)]
    ids, mask = pad_rows(rows, tok.pad_token_id, next(model.parameters()).device)
    return row_target_logprob(model, ids, mask, rows)[0]


def score(model, tok, reqs, controls) -> dict:
    """ES, PS, NS, Pnew; every fact on its own templates (``controls``: (prompt, subject,
    true, wrong) tuples)."""
    def success(items):   # (template, subject, true, new) -> share where new beats true
        if not items:
            return float("nan"), None
        new = logp(model, tok, [(t, s, o) for t, s, _, o in items])
        true = logp(model, tok, [(t, s, tt) for t, s, tt, _ in items])
        return (new > true).float().mean().item(), new
    es, new = success([(r["prompt"], r["subject"], r["target_true"], r["target_new"]) for r in reqs])
    ps, _ = success([(t, r["subject"], r["target_true"], r["target_new"]) for r in reqs for t in r["held_out"]])
    ns_wrong, _ = success(list(controls))
    return {"ES": es, "PS": ps, "NS": 1 - ns_wrong, "Pnew": new.exp().mean().item()}


def wikitext_passages(path: str, n: int) -> list[str]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if len(line) < 200 or line.startswith("="):
            continue
        line = re.sub(r" @(.)@ ", r"\1", line).replace(" , ", ", ").replace(" . ", ". ").replace("<unk>", "thing")
        out.append(line)
        if len(out) == n:
            break
    return out


def parse_layer_set(text: str) -> list[int]:
    """"3-7" -> [3, 4, 5, 6, 7]; "2,4,6" -> [2, 4, 6]."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/m/base")
    ap.add_argument("--layers", type=int, nargs="+", default=[5])
    ap.add_argument("--layer-sets", nargs="+", default=None,
                    help="layer sets for editors with a 'layers' list, e.g. 3-7 or 2,4,6")
    ap.add_argument("--hparams-set", default=None, help="versioned hparams set, e.g. smollm2-135m")
    ap.add_argument("--editors", nargs="+", default=["rome"])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--facts", default=None, help="fact file in the record schema (records.jsonl, edit.jsonl); "
                    "default: the 16 inline capitals")
    ap.add_argument("--n-control", type=int, default=8, help="with --facts: control records after the edited ones")
    ap.add_argument("--k", type=int, default=0, help="with --facts: paraphrase templates each edit also trains on")
    ap.add_argument("--stats-text", default="/work/shared/datasets/text/wikitext2_valid.txt")
    ap.add_argument("--stats-passages", type=int, default=500)
    ap.add_argument("--stats-cache", default="/tmp/er/bench_stats.safetensors")
    ap.add_argument("--no-stats", action="store_true", help="ROME with identity C")
    ap.add_argument("--hp", default="{}", help="JSON overrides for every editor, e.g. '{\"n_prefixes\": 10}'")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the table rows here")
    args = ap.parse_args()

    model, tok = load(args.model, args.device)
    if args.facts:
        reqs, controls = file_facts(args.facts, args.n, args.n_control, args.k)
    else:
        reqs, controls = requests(args.n), [(PROMPT, s, t, o) for s, t, o in CONTROL]
    sets = [parse_layer_set(x) for x in args.layer_sets] if args.layer_sets else [[l] for l in args.layers]
    runs = []  # (editor, layer key of its hparams)
    for e in args.editors:
        runs += [(e, {"layer": l}) for l in args.layers] if e == "rome" else [(e, {"layers": ls}) for ls in sets]
    uses_stats = {e: bool(getattr(get_editor(e), "uses_stats", False)) for e in args.editors}
    need = sorted({l for e, key in runs if uses_stats[e] for l in key.get("layers", [key.get("layer")])})
    stats = None
    if not args.no_stats and need:
        cache = Path(args.stats_cache)
        stats, meta = load_stats(cache) if cache.exists() else ({}, {})
        missing = [l for l in need if l not in stats]
        if missing:
            t0 = time.perf_counter()
            if Path(args.stats_text).exists():
                texts = wikitext_passages(args.stats_text, args.stats_passages)
            else:   # a machine without the shared data sets: the offline default corpus
                from edit_retention.corpus import build_corpus
                texts = build_corpus({"type": "python_docs"}, [], n_train=args.stats_passages, n_eval=1,
                                     seed=0)["train"]
            new = compute_mom2(model, tok, texts, sorted(set(missing) | set(stats)), max_len=128, batch_size=8)
            print(f"mom2 for layers {sorted(new)}: {new.tokens} tokens in {time.perf_counter() - t0:.1f}s")
            save_stats(cache, new, {"corpus": args.stats_text, "passages": len(texts)})
            stats = new
    base = score(model, tok, reqs, controls)
    print(f"before editing: {json.dumps({k: round(v, 3) for k, v in base.items()})}")
    table = []
    overrides = json.loads(args.hp)
    for editor, key in runs:
        layer = key["layer"] if "layer" in key else ",".join(map(str, key["layers"]))
        hp = make_hparams(editor, {**key, **{k: v for k, v in overrides.items()
                                             if k in make_hparams(editor).__dataclass_fields__}},
                          hparams_set=args.hparams_set)
        res = get_editor(editor).edit(model, tok, reqs, hp, stats if uses_stats[editor] else None)
        with deltas_applied(model, res.deltas):
            s = score(model, tok, reqs, controls)
        steps = [c.get("steps", res.log.get("steps", 0)) for c in res.log["cases"]]
        table.append({"editor": editor, "layer": layer, "n": len(reqs), "seconds": res.log["seconds"],
                      "s_per_edit": res.log["seconds"] / len(reqs), "mean_steps": sum(steps) / len(steps), **s})
        r = table[-1]
        print(f"{editor:9s} L{str(layer):<10s} n={r['n']:<3d} {r['seconds']:7.1f}s {r['s_per_edit']:6.2f}s/edit "
              f"steps={r['mean_steps']:5.1f} ES={r['ES']:.3f} PS={r['PS']:.3f} NS={r['NS']:.3f} Pnew={r['Pnew']:.3f}",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
