"""The ``single`` and ``groups`` editing regimes downstream of editing: a fresh model per
fact (single) or per group of facts (groups).

Such an edit holds one delta set per fresh model (``editors.regimes.edit_groups``). Each
model is the base model plus only its own delta; it is scored on its own facts and, so
that intrinsic knowledge is measured under the same kind of model, on the control facts
paired with them (control j goes with edited fact j mod n_edit; the control set is drawn
alternating with the edit set within each relation, so pairs share a relation). Scores
have the same rows as the batch regime's, so the summary treats all regimes alike.

Fine-tuning in these regimes is one run per model (same data order and seed for each),
which is (number of models) times the cost of batch mode
(``stages.finetune.finetune_single``).

Usage::

    rows = evaluate_single(model, tok, edited, control, paraphrases, groups, batch_size, generation_tokens)
"""
from __future__ import annotations

from .editors import deltas_applied
from .evaluate import build_items, score_items
from .io import InputError

# A single/groups-regime fine-tune's "model" folder holds its facts' scores instead of weights.
SINGLE_SCORES = "single_scores.jsonl"


def pair_controls(edited: list[dict], control: list[dict]) -> list[list[dict]]:
    """Control facts paired with each edited fact (control j -> edited j mod n_edit)."""
    if not edited:
        raise InputError("single regime: no edited facts")
    groups: list[list[dict]] = [[] for _ in edited]
    for j, c in enumerate(control):
        groups[j % len(edited)].append(c)
    return groups


def check_cases(edited: list[dict], groups: list[tuple[list[str], dict]]) -> None:
    got = sorted(cid for ids, _ in groups for cid in ids)
    want = sorted(r["case_id"] for r in edited)
    if got != want:
        raise InputError(f"single/groups regime: the edit's cases {got[:5]}... do not match the edited facts "
                         f"{want[:5]}... (rerun apply_edits)")


def group_facts(edited: list[dict], control: list[dict], groups: list[tuple[list[str], dict]]):
    """(edited facts, their paired controls, deltas) per fresh model, in the edit's order."""
    check_cases(edited, groups)
    index = {r["case_id"]: i for i, r in enumerate(edited)}
    pairs = pair_controls(edited, control)
    out = []
    for ids, deltas in groups:
        recs = [edited[index[c]] for c in ids]
        out.append((recs, [c for cid in ids for c in pairs[index[cid]]], deltas))
    return out


def evaluate_single(model, tok, edited, control, paraphrases, groups, batch_size: int = 32,
                    generation_tokens: int = 0) -> list[dict]:
    """Score each group's facts (and their paired controls) under the base model plus its own delta."""
    rows = []
    for recs, ctrl, deltas in group_facts(edited, control, groups):
        with deltas_applied(model, deltas):
            rows += score_items(model, tok, build_items(recs, ctrl, paraphrases), batch_size, progress=False,
                                generation_tokens=generation_tokens)
    return rows
