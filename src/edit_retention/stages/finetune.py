"""finetune: an edited model + task data (+ method, freezing) -> task metrics, training log,
checkpoint scores and the fine-tuned weights (temporary; scored by the evaluate stage).

An edit in the single or groups regime (one delta set per fact or group) is fine-tuned once
per fact or group; those models are scored here (``SINGLE_SCORES`` in the model folder) and
not kept.

Under a multi-process launch (``launch.processes`` > 1: ``torchrun`` / ``accelerate launch``
run this stage N times, ``ranks.py``) every rank trains its share of each batch and only
rank 0 scores checkpoints and writes the outputs (under FSDP on the whole model gathered
from the shards).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from ..editors import apply_deltas
from ..editors.regimes import edit_groups, is_single, load_edited
from ..evaluate import build_items, score_items
from ..finetune import FinetuneArgs, MethodSpec, finetune, task_metrics
from ..freezing import resolve_freeze
from ..io import InputError, atomic_dir, read_jsonl, read_texts, without_timings, write_json, write_jsonl
from ..models import num_layers
from ..ranks import make_ranks
from ..records import read_records
from ..single import SINGLE_SCORES, group_facts
from ..tasks import check_examples, get_task

log = logging.getLogger(__name__)


def task_examples(task, path):
    """Training / held-out examples of a task from a JSONL (passages for causal_lm)."""
    if task.type == "causal_lm":
        return read_texts(path)
    return check_examples(task, read_jsonl(path), path)


def _facts(a, why: str):
    for opt in ("edited", "control", "paraphrases"):
        if not getattr(a, opt):
            raise InputError(f"finetune: {why} needs --{opt} (the facts are scored in this job)")
    return read_records(a.edited), read_records(a.control), {p["case_id"]: p for p in read_jsonl(a.paraphrases)}


def _write_steps(out_steps, files: dict) -> None:
    """The checkpoint folder: step-<N>.jsonl (moved from scratch, or rows) + index.json."""
    with atomic_dir(out_steps) as tmp:
        for step, f in sorted(files.items()):
            if isinstance(f, Path):
                shutil.move(str(f), tmp / f.name)
            else:
                write_jsonl(tmp / f"step-{step}.jsonl", f)
        write_json(tmp / "index.json", {"steps": sorted(files)})


def run(a) -> None:
    args = FinetuneArgs.from_dict(a.params, where="finetune params")
    method = MethodSpec.parse(a.method, where="finetune --method")
    task = get_task(a.task_type)
    train, held = task_examples(task, a.train), task_examples(task, a.eval)
    ranks = make_ranks(a.device)
    model, tok, edit = load_edited(a.model, a.edit, ranks.device(a.device))
    edited = edit.log["edited_layers"] if edit is not None else None
    frozen, non_layer = resolve_freeze(a.freeze, edited, num_layers(model), where="finetune --freeze")
    kw = {"task": task, "method": method, "freeze_non_layer": non_layer}
    if args.checkpoint_steps() and not a.out_steps:
        raise InputError("finetune: checkpoint_every > 0 needs --out-steps (a folder for the checkpoint scores)")
    if is_single(edit):
        if ranks.n > 1:
            raise InputError(f"finetune: the {edit.log.get('regime')} regime fine-tunes one model per fact or "
                             "group in one process; run it with launch.processes 1")
        _run_single(a, model, tok, edit, train, held, args, frozen, kw)
    else:
        _run(a, model, tok, train, held, args, frozen, {**kw, "ranks": ranks})


def _run_single(a, model, tok, edit, train, held, args, frozen, kw) -> None:
    """One fine-tune per fact or group; those models are scored here and not kept."""
    edited, control, para = _facts(a, f"an edit in the {edit.log.get('regime')} regime")
    step_rows: dict = {}
    rows, logs = finetune_single(model, tok, edited, control, para, edit_groups(edit), train, held, args,
                                 a.seed, frozen, a.batch_size, checkpoint_rows=step_rows,
                                 generation_tokens=a.generation_tokens, **kw)
    with atomic_dir(a.out_model) as tmp:
        write_jsonl(tmp / SINGLE_SCORES, rows)
    if a.out_steps:
        _write_steps(a.out_steps, step_rows)
    flat = [task_metrics(g) for g in logs]
    write_json(a.out_metrics, {k: sum(f[k] for f in flat) / len(flat) for k in flat[0]})
    write_json(a.out_log, without_timings({"regime": edit.log.get("regime"), "runs": logs}, a.out_log))


def finetune_single(model, tok, edited, control, paraphrases, groups, train_texts, eval_texts,
                    args, seed: int, frozen_layers: list[int], batch_size: int = 32,
                    checkpoint_rows: dict | None = None, generation_tokens: int = 0, **finetune_kw):
    """Fine-tune base + delta_g for each fresh model g (``groups``: (case_ids, deltas), one per
    fact in the single regime); score g's facts and their paired controls after each run.

    ``train_texts``/``eval_texts`` are the task's examples (passages for causal_lm);
    ``finetune_kw`` (task, method, freeze_non_layer) go to ``finetune.finetune``. With
    ``checkpoint_rows`` (a dict) and ``args.checkpoint_every``, model g's facts are also scored at
    each checkpoint of its own run: ``checkpoint_rows[step]`` collects those rows.
    ``generation_tokens`` > 0 adds greedy continuations to the rows (``evaluate.score_items``).
    Returns (score rows, one training log per model). The model is restored to its exact
    starting weights before returning.
    """
    per_model = group_facts(edited, control, groups)

    def score(net, items):
        return score_items(net, tok, items, batch_size, progress=False, generation_tokens=generation_tokens)

    start = {n: p.detach().clone() for n, p in model.state_dict().items()}
    rows, logs = [], []
    try:
        for recs, ctrl, deltas in tqdm(per_model, desc="fine-tunes, one per edited model"):
            model.load_state_dict(start)
            apply_deltas(model, deltas)
            items = build_items(recs, ctrl, paraphrases)
            on_ckpt = None
            if checkpoint_rows is not None:
                def on_ckpt(step, net, items=items):
                    checkpoint_rows.setdefault(step, []).extend(score(net, items))
            out = finetune(model, tok, train_texts, eval_texts, args, seed, frozen_layers, progress=False,
                           on_checkpoint=on_ckpt, **finetune_kw)
            out.pop("train_loss", None)
            ids = [r["case_id"] for r in recs]
            logs.append({"case_id": ids[0], **out} if len(ids) == 1 else {"case_ids": ids, **out})
            rows += score(model, items)
    finally:
        with torch.no_grad():
            model.load_state_dict(start)
    return rows, logs


def _run(a, model, tok, train, held, args, frozen, kw) -> None:
    on_checkpoint, step_files, scratch = None, {}, None
    main = kw["ranks"].main     # with N processes only rank 0 scores checkpoints and writes
    if args.checkpoint_steps():
        items = build_items(*_facts(a, "checkpoints"))
        if main:
            scratch = Path(tempfile.mkdtemp(prefix=".steps.", dir=Path(a.out_metrics).parent))

        def on_checkpoint(step, net):
            f = scratch / f"step-{step}.jsonl"
            write_jsonl(f, score_items(net, tok, items, a.batch_size, progress=False,
                                       generation_tokens=a.generation_tokens))
            step_files[step] = f
            log.info("checkpoint at step %d scored", step)
    try:
        out = finetune(model, tok, train, held, args, a.seed, frozen, on_checkpoint=on_checkpoint, **kw)
        final = kw["ranks"].full(model)     # under FSDP: gathered from the shards, by every rank
        if not main:
            return
        with atomic_dir(a.out_model) as tmp:
            final.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        if a.out_steps:
            _write_steps(a.out_steps, step_files)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    # Task scores (flat numbers) for the summary; the full training log beside them.
    write_json(a.out_metrics, task_metrics(out))
    write_json(a.out_log, without_timings(out, a.out_log))
