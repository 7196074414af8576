"""Metrics of one phase's scores, and retention against the edited phase: as summary values
``(metric, value, n)`` and as per-fact units ``(metric, case_id, num, den)`` whose pooled
sum(num)/sum(den) is the value (see ``bootstrap``).

Usage::

    from edit_retention.phase_metrics import phase_metrics, retention_metrics
    table = load_scores("edited.jsonl")                 # summarize.load_scores
    phase_metrics(table, "edited")                      # [("rewrite_success", 0.9, 10), ...]
    retention_metrics(edited, finetuned, "intrinsic", where="cell 0")

A table is {(knowledge, kind): {(case_id, index): row}} of one phase's scores.

Metrics per (knowledge, phase), on every phase of a cell. "Success" of a prompt is
``metrics.row_success``: the tracked target's mean token log-prob beats the
alternative's (edited: target_new over target_true; intrinsic, i.e. "the fact holds":
target_true over target_new; neighbourhood: the neighbour's true object over target_new).

    rewrite_success       share of facts whose main prompt succeeds (ES for edited)   n = facts
    paraphrase_success    mean over facts of the share of its held-out evaluation
                          paraphrases that succeed (ROME's PS: a macro average)       n = facts
    neighborhood_success  same macro average over neighbourhood prompts (NS; edited
                          knowledge only)                                             n = facts
    top1_accuracy         share of main prompts whose greedy next token is the
                          target's first token                                        n = facts
    target_prob           mean over facts of p_target (exp of mean token log-prob)
                          on the main prompt                                          n = facts

Extra metrics on every phase after editing (anything but "base" and "edited", i.e.
"finetuned" and checkpoints "step-N"), with *before* = the "edited" phase (after the
edit, before fine-tuning; for intrinsic knowledge too, so both kinds are measured over
the same fine-tuning):

    retention_rewrite     share of facts whose main prompt succeeded before and still
                          succeeds                                      n = facts succeeding before
    retention_paraphrase  the same PER PROMPT over evaluation paraphrases: share of
                          (fact, paraphrase) prompts succeeding before that still
                          succeed. Per prompt, not a per-fact majority vote, because a
                          vote over 2-4 paraphrases has tie/threshold artefacts.
                          (Prompts of one fact are correlated: binomial intervals on
                          this n are optimistic.)                       n = prompts succeeding before
    efr                   1 - retention_rewrite (edit forgetting rate)  n = as retention_rewrite
    target_prob_ratio     geometric mean over facts of p_target after / before on the
                          main prompt                                   n = facts

Protocols (``protocols``): the metrics above use the teacher-forced probability test. The
same success/retention metrics under the other protocols carry the protocol as a suffix,
so every existing column and metric name keeps its meaning:

    rewrite_success@P, paraphrase_success@P                        every phase
    retention_rewrite@P, retention_paraphrase@P, efr@P             phases after "edited"

for P = first_token (the row's ``top1``: greedy next token is the object's first token)
and P = generation_contains (the object, as whole words, in the row's greedy
``generation``; only when every rewrite/paraphrase row of every phase of the cell has
one, i.e. ``evaluate.generation_tokens`` > 0). Same n conventions as above; facts.csv
carries their units, so cells.csv intervals and the claims' tests read them unchanged.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import metrics as M
from . import protocols as P
from .io import InputError


def _by_fact(rows: dict) -> dict[str, list[dict]]:
    """Group {(case_id, index): row} by case_id."""
    out: dict[str, list[dict]] = defaultdict(list)
    for (cid, _), row in rows.items():
        out[cid].append(row)
    return out


def _macro_success(rows: dict, ok=M.row_success) -> tuple[float, int]:
    """Mean over facts of the share of their prompts that succeed (ROME's PS/NS)."""
    return M.mean(M.rate(ok(r) for r in fact_rows)[0] for fact_rows in _by_fact(rows).values())


def _judge(protocol: str):
    """(row -> success under ``protocol``, metric base name -> its name under it)."""
    return (lambda r: P.success(r, protocol)), (lambda m: P.metric_name(m, protocol))


def cell_protocols(tables: dict) -> list[str]:
    """The protocols every phase of a cell can be scored under: probability and first_token
    always, generation_contains when every rewrite/paraphrase row has a ``generation``."""
    rows = [r for t in tables.values() for (_, kind), b in t.items() if kind in ("rewrite", "paraphrase")
            for r in b.values()]
    return [p for p in P.PROTOCOLS if p != "generation_contains" or all("generation" in r for r in rows)]


def phase_metrics(table: dict, knowledge: str, protocol: str = P.PROBABILITY) -> list[tuple[str, float, int]]:
    """(metric, value, n) for one knowledge kind on one phase's scores (``protocol`` other
    than probability: only its rewrite/paraphrase success, suffixed)."""
    ok, name = _judge(protocol)
    rewrite = table.get((knowledge, "rewrite"), {})
    out = [
        (name("rewrite_success"), *M.rate(ok(r) for r in rewrite.values())),
        (name("paraphrase_success"), *_macro_success(table.get((knowledge, "paraphrase"), {}), ok)),
    ]
    if protocol != P.PROBABILITY:
        return out
    if knowledge == "edited":
        out.append(("neighborhood_success", *_macro_success(table.get((knowledge, "neighborhood"), {}))))
    out += [
        ("top1_accuracy", *M.rate(bool(r["top1"]) for r in rewrite.values())),
        ("target_prob", *M.mean(r["p_target"] for r in rewrite.values())),
    ]
    return out


def retention_metrics(before: dict, after: dict, knowledge: str, where: str,
                      protocol: str = P.PROBABILITY) -> list[tuple[str, float, int]]:
    """(metric, value, n) comparing a later phase's scores with the edited phase's
    (``protocol`` other than probability: retention and EFR only, suffixed)."""
    ok, name = _judge(protocol)

    def success(table, kind):
        return {k: ok(r) for k, r in table.get((knowledge, kind), {}).items()}

    def probs(table):
        return {k: r["p_target"] for k, r in table.get((knowledge, "rewrite"), {}).items()}

    try:
        ret_rw = M.retention(success(before, "rewrite"), success(after, "rewrite"))
        ret_pp = M.retention(success(before, "paraphrase"), success(after, "paraphrase"))
        ratio = M.prob_ratio(probs(before), probs(after))
    except InputError as e:
        raise InputError(f"{where}: {knowledge} facts: {e}") from e
    out = [(name("retention_rewrite"), *ret_rw), (name("retention_paraphrase"), *ret_pp),
           (name("efr"), 1.0 - ret_rw[0], ret_rw[1])]
    return out + ([("target_prob_ratio", *ratio)] if protocol == P.PROBABILITY else [])


def phase_units(table: dict, knowledge: str, protocol: str = P.PROBABILITY) -> list[tuple[str, str, float, float]]:
    """(metric, case_id, num, den) per fact for one phase: sum(num)/sum(den) over facts
    gives ``phase_metrics``' value (see ``bootstrap`` for how units are pooled)."""
    ok, name = _judge(protocol)
    plain = protocol == P.PROBABILITY
    out = []
    for (cid, _), r in table.get((knowledge, "rewrite"), {}).items():
        out.append((name("rewrite_success"), cid, float(ok(r)), 1.0))
        if plain:
            out += [("top1_accuracy", cid, float(bool(r["top1"])), 1.0),
                    ("target_prob", cid, float(r["p_target"]), 1.0)]
    kinds = [("paraphrase", "paraphrase_success")] + ([("neighborhood", "neighborhood_success")]
                                                       if knowledge == "edited" and plain else [])
    for kind, metric in kinds:
        for cid, rows in _by_fact(table.get((knowledge, kind), {})).items():
            out.append((name(metric), cid, M.rate(ok(r) for r in rows)[0], 1.0))
    return out


def retention_units(before: dict, after: dict, knowledge: str,
                    protocol: str = P.PROBABILITY) -> list[tuple[str, str, float, float]]:
    """(metric, case_id, num, den) per fact for the retention metrics of a later phase.

    Call after ``retention_metrics`` (which checks that every fact held before has an
    'after' score). Facts that did not hold before have no retention unit.
    """
    ok, name = _judge(protocol)
    out = []
    b_rw = before.get((knowledge, "rewrite"), {})
    a_rw = after.get((knowledge, "rewrite"), {})
    for key, row in b_rw.items():
        if ok(row):
            kept = float(ok(a_rw[key]))
            out += [(name("retention_rewrite"), key[0], kept, 1.0), (name("efr"), key[0], 1.0 - kept, 1.0)]
    a_pp = after.get((knowledge, "paraphrase"), {})
    held: dict = defaultdict(lambda: [0.0, 0.0])
    for key, row in before.get((knowledge, "paraphrase"), {}).items():
        if ok(row):
            held[key[0]][1] += 1
            held[key[0]][0] += float(ok(a_pp[key]))
    out += [(name("retention_paraphrase"), cid, k, n) for cid, (k, n) in held.items()]
    if protocol != P.PROBABILITY:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        for key, row in b_rw.items():
            out.append(("target_prob_ratio", key[0],
                        float(np.log(a_rw[key]["p_target"]) - np.log(row["p_target"])), 1.0))
    return out
