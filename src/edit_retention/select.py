"""Split a fact set into the facts to edit and the intrinsic control set.

A fact counts as *known* by the base model when, on its main prompt, (1) the greedy next
token equals the first token of target_true (top-1, the zsRE-style test) and (2) the
whole true object is more likely than the counterfactual one (mean token log-prob, the
CounterFact test). The second guards against a first token that is shared by many
objects ("United ..."). Both sets are drawn from known facts so that both start
"held" and retention is comparable; they are disjoint, and assigned alternately within
each relation after a seeded shuffle, so they share the same relation mix.
"""
from __future__ import annotations

import random
from collections import defaultdict

from .evaluate import score_items
from .io import InputError
from .metrics import prob_success
from .records import fill


def known_mask(model, tok, records: list[dict], batch_size: int = 32) -> tuple[list[bool], list[dict]]:
    items = [{"case_id": r["case_id"], "knowledge": "candidate", "kind": "rewrite", "index": 0,
              "prompt": fill(r["prompt"], r["subject"]), "target": r["target_true"], "alt": r["target_new"]}
             for r in records]
    scores = score_items(model, tok, items, batch_size=batch_size)
    mask = [bool(s["top1"]) and prob_success(s["lp_target"], s["n_target"], s["lp_alt"], s["n_alt"])
            for s in scores]
    return mask, scores


def split_known(records: list[dict], mask: list[bool], n_edit: int, n_control: int, seed: int,
                where: str = "select") -> tuple[list[dict], list[dict]]:
    """Alternate known facts of each relation between the edit and the control set."""
    by_rel: dict[str, list[dict]] = defaultdict(list)
    for r, ok in zip(records, mask):
        if ok:
            by_rel[r["relation"]].append(r)
    rng = random.Random(seed)
    queues = []
    for i, rel in enumerate(sorted(by_rel)):
        facts = sorted(by_rel[rel], key=lambda r: r["case_id"])
        rng.shuffle(facts)
        queues.append([i, facts])          # i: this relation's turn counter (offset by its index)
    edit, control = [], []
    # Round-robin over relations, one fact at a time; each relation alternates its own facts
    # between the two sets (a global turn counter would send every fact of a relation to the
    # same set whenever the number of relations is even).
    while queues and (len(edit) < n_edit or len(control) < n_control):
        nxt = []
        for q in queues:
            r = q[1].pop(0)
            dest = edit if (q[0] % 2 == 0 and len(edit) < n_edit) or len(control) >= n_control else control
            dest.append(r)
            q[0] += 1
            if q[1]:
                nxt.append(q)
        queues = nxt
    n_known = sum(mask)
    if len(edit) < n_edit or len(control) < n_control:
        raise InputError(
            f"{where}: the base model knows {n_known} of {len(records)} facts, fewer than "
            f"n_edit + n_control = {n_edit + n_control}; lower them or use a larger fact set")
    return edit, control
