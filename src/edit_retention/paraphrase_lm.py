"""Language-model paraphrase generator: a causal LM rewrites each fact's prompt.

Usage::

    from edit_retention.paraphrase_lm import LMArgs, lm_paraphrases
    rows, report = lm_paraphrases(model, tok, records, n_eval=2, split_seed=0,
                                  args=LMArgs(n_candidates=8))
    # rows: [{"case_id", "augment", "evaluate", "generated", "filter"}, ...]
    # report: totals (sequences, candidates, kept, counts per rejection reason)

The generator runs in three steps: ``paraphrase_lm_generate`` samples continuations of a
few-shot prompt, ``paraphrase_lm_filter`` keeps the lines that make templates, and
``merge_split`` (here) merges them into the record's split. Settings: ``LMArgs``
(``paraphrase_lm_args``).

Split (``merge_split``). ``mode: add`` pools the generated templates with the record's
hand-written ones, ``mode: replace`` uses the generated ones instead. With
``evaluate_from: templates`` (the default) the held-out evaluation templates are the
ones the template generator holds out (same seed, same choice), and generated
templates only ever augment: evaluation stays comparable across generators. A
generated template equal to a held-out one, or in ``add`` mode to any hand-written
one, is dropped (``in_templates``). With
``evaluate_from: all`` the pool (hand-written + generated, or generated only) is split
as the template generator splits a record. Either way the augmentation and evaluation
lists never overlap and neither contains the main prompt; in ``add`` mode the pooled
augmentation list is shuffled with a seeded generator, so that ``augment[:k]`` mixes
hand-written and generated templates.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict
from typing import Callable, Sequence

from .io import InputError
from .paraphrase import distinct_paraphrases, split_record, template_key
from .paraphrase_lm_args import EVALUATE_FROM, MODES, LMArgs
from .paraphrase_lm_filter import REASONS, continuation_lines, filter_candidates
from .paraphrase_lm_generate import build_prompt, row_seed, sample_continuations
from .records import fill


def _dedupe(templates: Sequence[str], exclude: set[str]) -> list[str]:
    """Templates whose key is not in ``exclude`` and does not repeat an earlier one."""
    seen, out = set(exclude), []
    for t in templates:
        if template_key(t) not in seen:
            seen.add(template_key(t))
            out.append(t)
    return out


def merge_split(record: dict, generated: Sequence[str], n_eval: int, seed: int = 0, mode: str = "add",
                evaluate_from: str = "templates") -> tuple[dict, list[str]]:
    """One record's split with its generated templates (module docstring), and the generated
    templates it uses (those equal to the prompt or to a hand-written template it keeps
    are left out)."""
    cid = record["case_id"]
    if mode not in MODES or evaluate_from not in EVALUATE_FROM:
        raise InputError(f"paraphrases: mode {mode!r} / evaluate_from {evaluate_from!r} unknown "
                         f"(modes: {', '.join(MODES)}; evaluate_from: {', '.join(EVALUATE_FROM)})")
    exclude = {template_key(record["prompt"])}
    if evaluate_from == "templates":
        split = split_record(record, n_eval, seed)
        exclude |= {template_key(t) for t in split["evaluate"] + (split["augment"] if mode == "add" else [])}
        gen = _dedupe(generated, exclude)
        if mode == "add":
            split["augment"] = split["augment"] + gen
            random.Random(f"{seed}:{cid}:lm").shuffle(split["augment"])
        else:
            split["augment"] = gen
        return split, gen
    hand = distinct_paraphrases(record) if mode == "add" else []
    gen = _dedupe(generated, exclude | {template_key(t) for t in hand})
    if len(hand) + len(gen) < n_eval:
        what = "hand-written and generated" if mode == "add" else "generated (mode replace)"
        raise InputError(f"paraphrases: case_id {cid!r}: {len(hand) + len(gen)} distinct {what} paraphrases, "
                         f"{n_eval} are needed (held out for evaluation, evaluate_from: all)")
    pooled = {"case_id": cid, "prompt": record["prompt"], "paraphrase_prompts": hand + gen}
    return split_record(pooled, n_eval, seed), gen


SampleFn = Callable[[Sequence[str], Sequence[Sequence[int]], bool], list[list[tuple[str, bool]]]]


def lm_paraphrases(model, tok, records: Sequence[dict], n_eval: int, split_seed: int, args: LMArgs,
                   progress: bool = True, sample: SampleFn | None = None) -> tuple[list[dict], dict]:
    """Generated paraphrases for every record, merged into its split (module docstring).

    ``sample(prompts, seeds, plain)`` draws the continuations (default: ``model.generate``
    through ``sample_continuations``); tests pass their own. Returns the rows, each with
    ``generated`` (the kept templates) and ``filter`` (outcome counts), and a report of
    the totals."""
    from tqdm import tqdm

    args.check("paraphrases")
    if not isinstance(n_eval, int) or isinstance(n_eval, bool) or n_eval < 0:
        raise InputError(f"paraphrases: field 'n_eval' must be an integer >= 0, got {n_eval!r}")
    if sample is None:
        def sample(prompts, seeds, plain):
            return sample_continuations(model, tok, prompts, seeds, plain, args)
    was = model.training if model is not None else False
    if model is not None:
        model.eval()
    rows, totals, n_seq, n_cand = [], Counter(), 0, 0
    batches = [records[i:i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    try:
        for batch in tqdm(batches, desc="paraphrases", unit="batch", disable=not progress, mininterval=5):
            built = [build_prompt(tok, r["subject"], fill(r["prompt"], r["subject"])) for r in batch]
            plain = not built[0][1]
            seeds = [[row_seed(args.seed, r["case_id"], j) for j in range(args.n_candidates)] for r in batch]
            outs = sample([p for p, _ in built], seeds, plain)
            for rec, conts in zip(batch, outs):
                cands = [c for text, finished in conts for c in continuation_lines(text, finished)]
                kept, counts = filter_candidates(cands, rec)
                row, used = merge_split(rec, kept, n_eval, split_seed, args.mode, args.evaluate_from)
                if len(used) < len(kept):
                    counts["kept"] -= len(kept) - len(used)
                    counts["in_templates"] += len(kept) - len(used)
                row["generated"] = used
                row["filter"] = {k: counts[k] for k in ("kept",) + REASONS if counts[k]}
                rows.append(row)
                totals.update(counts)
                n_seq += len(conts)
                n_cand += len(cands)
    finally:
        if model is not None:
            model.train(was)
    report = {"generator": "lm", "n_records": len(records), "n_sequences": n_seq, "n_candidates": n_cand,
              "kept": totals["kept"], "keep_rate": totals["kept"] / n_cand if n_cand else 0.0,
              "rejected": {k: totals[k] for k in REASONS if totals[k]},
              "records_without_generated": sum(1 for r in rows if not r["generated"]),
              "args": asdict(args)}
    return rows, report
