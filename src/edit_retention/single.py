"""The ``single`` editing regime downstream of editing: a fresh model per fact.

An edit made in the single regime holds one delta set per edited fact
(``editors.regimes.single_deltas``). Each fact's model is the base model plus only its own
delta; it is scored on its own fact and, so that intrinsic knowledge is measured under the
same kind of model, on the control facts paired with it (control j goes with edited fact
j mod n_edit; the control set is drawn alternating with the edit set within each relation,
so pairs share a relation). Scores have the same rows as the batch regime's, so the summary
treats both alike.

Fine-tuning in this regime is one run per fact (same data order and seed for each), which
is N times the cost of batch mode: the default study uses batch mode.

Usage::

    rows = evaluate_single(model, tok, edited, control, paraphrases, per_case, batch_size)
    rows, logs = finetune_single(model, tok, edited, control, paraphrases, per_case,
                                 train_texts, eval_texts, args, seed, frozen_of)
"""
from __future__ import annotations

import torch

from .editors import deltas_applied
from .evaluate import build_items, score_items
from .io import InputError


def pair_controls(edited: list[dict], control: list[dict]) -> list[list[dict]]:
    """Control facts paired with each edited fact (control j -> edited j mod n_edit)."""
    if not edited:
        raise InputError("single regime: no edited facts")
    groups: list[list[dict]] = [[] for _ in edited]
    for j, c in enumerate(control):
        groups[j % len(edited)].append(c)
    return groups


def _check_cases(edited: list[dict], per_case: list[tuple[str, dict]]) -> None:
    got = [cid for cid, _ in per_case]
    want = [r["case_id"] for r in edited]
    if got != want:
        raise InputError(f"single regime: the edit's cases {got[:5]}... do not match the edited facts "
                         f"{want[:5]}... (rerun apply_edits)")


def evaluate_single(model, tok, edited, control, paraphrases, per_case, batch_size: int = 32) -> list[dict]:
    """Score each fact (and its paired controls) under the base model plus its own delta."""
    _check_cases(edited, per_case)
    rows = []
    for rec, ctrl, (_, deltas) in zip(edited, pair_controls(edited, control), per_case):
        with deltas_applied(model, deltas):
            rows += score_items(model, tok, build_items([rec], ctrl, paraphrases), batch_size, progress=False)
    return rows


def finetune_single(model, tok, edited, control, paraphrases, per_case, train_texts, eval_texts,
                    args, seed: int, frozen_layers: list[int], batch_size: int = 32,
                    checkpoint_rows: dict | None = None, **finetune_kw):
    """Fine-tune base + delta_i for each fact i; score fact i and its controls after each run.

    ``train_texts``/``eval_texts`` are the task's examples (passages for causal_lm);
    ``finetune_kw`` (task, method, freeze_non_layer) go to ``finetune.finetune``. With
    ``checkpoint_rows`` (a dict) and ``args.checkpoint_every``, fact i is also scored at
    each checkpoint of its own run: ``checkpoint_rows[step]`` collects those rows.
    Returns (score rows, one training log per fact). The model is restored to its exact
    starting weights before returning.
    """
    from tqdm import tqdm

    from .editors import apply_deltas
    from .finetune import finetune

    _check_cases(edited, per_case)
    start = {n: p.detach().clone() for n, p in model.state_dict().items()}
    rows, logs = [], []
    try:
        for rec, ctrl, (cid, deltas) in tqdm(list(zip(edited, pair_controls(edited, control), per_case)),
                                             desc="single-regime fine-tunes"):
            model.load_state_dict(start)
            apply_deltas(model, deltas)
            items = build_items([rec], ctrl, paraphrases)
            on_ckpt = None
            if checkpoint_rows is not None:
                def on_ckpt(step, net, items=items):
                    checkpoint_rows.setdefault(step, []).extend(score_items(net, tok, items, batch_size, progress=False))
            out = finetune(model, tok, train_texts, eval_texts, args, seed, frozen_layers, progress=False,
                           on_checkpoint=on_ckpt, **finetune_kw)
            out.pop("train_loss", None)
            logs.append({"case_id": cid, **out})
            rows += score_items(model, tok, items, batch_size, progress=False)
    finally:
        with torch.no_grad():
            model.load_state_dict(start)
    return rows, logs
