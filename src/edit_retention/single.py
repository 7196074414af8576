"""The ``single`` editing regime downstream of editing: a fresh model per fact.

An edit made in the single regime holds one delta set per edited fact
(``editors.regimes.single_deltas``). Each fact's model is the base model plus only its own
delta; it is scored on its own fact and, so that intrinsic knowledge is measured under the
same kind of model, on the control facts paired with it (control j goes with edited fact
j mod n_edit; the control set is drawn alternating with the edit set within each relation,
so pairs share a relation). Scores have the same rows as the batch regime's, so the summary
treats both alike.

Fine-tuning in this regime is one run per fact (same data order and seed for each), which
is N times the cost of batch mode (``stages.finetune.finetune_single``): the default study
uses batch mode.

Usage::

    rows = evaluate_single(model, tok, edited, control, paraphrases, per_case, batch_size, generation_tokens)
"""
from __future__ import annotations

from .editors import deltas_applied
from .evaluate import build_items, score_items
from .io import InputError

# A single-regime fine-tune's "model" folder holds its facts' scores instead of weights.
SINGLE_SCORES = "single_scores.jsonl"


def pair_controls(edited: list[dict], control: list[dict]) -> list[list[dict]]:
    """Control facts paired with each edited fact (control j -> edited j mod n_edit)."""
    if not edited:
        raise InputError("single regime: no edited facts")
    groups: list[list[dict]] = [[] for _ in edited]
    for j, c in enumerate(control):
        groups[j % len(edited)].append(c)
    return groups


def check_cases(edited: list[dict], per_case: list[tuple[str, dict]]) -> None:
    got = [cid for cid, _ in per_case]
    want = [r["case_id"] for r in edited]
    if got != want:
        raise InputError(f"single regime: the edit's cases {got[:5]}... do not match the edited facts "
                         f"{want[:5]}... (rerun apply_edits)")


def evaluate_single(model, tok, edited, control, paraphrases, per_case, batch_size: int = 32,
                    generation_tokens: int = 0) -> list[dict]:
    """Score each fact (and its paired controls) under the base model plus its own delta."""
    check_cases(edited, per_case)
    rows = []
    for rec, ctrl, (_, deltas) in zip(edited, pair_controls(edited, control), per_case):
        with deltas_applied(model, deltas):
            rows += score_items(model, tok, build_items([rec], ctrl, paraphrases), batch_size, progress=False,
                                generation_tokens=generation_tokens)
    return rows
