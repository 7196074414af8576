"""zsRE question answering in the MEND schema (``zsre_mend_eval.json``, also EasyEdit's).

One JSON object per question::

    subject                       -> subject
    src  (the question)           -> prompt: the subject's last occurrence becomes "{}"
                                     ("When was the inception of {}?"); the answer follows
                                     after one space, as in ROME's and EasyEdit's zsRE runs.
                                     A question without its subject cannot be edited: the
                                     case is dropped (stats["n_dropped_subject_not_in_prompt"])
    answers[0]                    -> target_true (the gold answer; further answers unused)
    alt                           -> target_new (EasyEdit's convention; ROME instead inserts
                                     answers[0] into a model that does not know it). A case
                                     whose alt is one of its answers has no counterfactual
                                     and is dropped (stats["n_dropped_target_new_is_true"])
    rephrase                      -> paraphrase_prompts: one template, the same templating
                                     (without the subject: dropped, stats["n_paraphrases_dropped"])
    loc ("nq question: ...")      -> neighborhood_prompts: [{"prompt": loc + "?",
    loc_ans                           "target": loc_ans}] (ROME's prompt: the NQ question
                                     with its "nq question:" prefix and a question mark);
                                     dropped when loc_ans equals alt
                                     (stats["n_neighbours_dropped"])
    pred, cond, portability          not used (pred is MEND's base model's answer)
    relation                         not in zsRE: the constant "zsre"
    case_id                          the row's index in the file (as ROME numbers zsRE),
                                     so dropping a case does not renumber the others

Neighbourhood success on these prompts is this pipeline's probability comparison (the
NQ answer must stay more likely than the edit's target_new, teacher-forced over the whole
answer), not zsRE's usual token-level accuracy of the NQ answer under the edited model;
the numbers are not comparable with published zsRE locality scores.

Accepts ``path`` or ``hf`` (``facts.common``).
"""
from __future__ import annotations

import logging
from typing import Any

from ..io import InputError
from .common import bump, case_where, field, source_rows, text, to_template

log = logging.getLogger(__name__)

RELATION = "zsre"
NQ_PREFIX = "nq question:"
DROPS = {
    "n_dropped_subject_not_in_prompt": "questions that do not contain their subject",
    "n_dropped_target_new_is_true": "cases whose alt is one of their answers",
    "n_paraphrases_dropped": "rephrasings without their subject",
    "n_neighbours_dropped": "NQ neighbours whose answer is the edit's alt",
}


def zsre_record(case: Any, where_file: str, index: int, stats: dict, tag: str = "") -> dict | None:
    """One zsRE question in the record schema, or None when it is dropped (counted in stats)."""
    where, _ = case_where(case, where_file, index, id_key=None)
    subject = text(case, "subject", where)
    question = text(case, "src", where)
    answers = field(case, "answers", where, list)
    if not answers:
        raise InputError(f"{where}: field 'answers' is empty")
    target_true = text({"answers[0]": answers[0]}, "answers[0]", where)
    target_new = text(case, "alt", where)
    rephrase = field(case, "rephrase", where)
    loc = text(case, "loc", where)
    loc_ans = text(case, "loc_ans", where)
    prompt = to_template(question, subject)
    if prompt is None:
        bump(stats, "n_dropped_subject_not_in_prompt")
        return None
    if target_new.lower() in {a.strip().lower() for a in answers if isinstance(a, str)}:
        bump(stats, "n_dropped_target_new_is_true")
        return None
    paraphrase = to_template(rephrase, subject)
    if paraphrase is None:
        bump(stats, "n_paraphrases_dropped")
    neighbours = []
    if loc_ans == target_new:
        bump(stats, "n_neighbours_dropped")
    else:
        neighbours.append({"prompt": loc if loc.endswith("?") else loc + "?", "target": loc_ans})
    return {
        "case_id": str(index),
        "relation": RELATION,
        "subject": subject,
        "prompt": prompt,
        "target_true": target_true,
        "target_new": target_new,
        "paraphrase_prompts": [] if paraphrase is None else [paraphrase],
        "neighborhood_prompts": neighbours,
        "source": f"zsre:{tag}",
    }


def load_zsre(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from a zsRE file in the MEND schema."""
    cases, where, tag = source_rows(source, "zsRE questions")
    for key in DROPS:
        stats.setdefault(key, 0)
    records = [r for i, c in enumerate(cases) if (r := zsre_record(c, where, i, stats, tag)) is not None]
    for key, what in DROPS.items():
        if stats[key]:
            log.warning("%s: dropped %d %s", where, stats[key], what)
    return records, where
