"""zsRE question answering in the MEND schema (``zsre_mend_eval.json``, also EasyEdit's).

One JSON object per question::

    subject                       -> subject
    src  (the question)           -> prompt: the subject's last occurrence becomes "{}"
                                     ("When was the inception of {}?"); the answer follows
                                     after one space, as in ROME's and EasyEdit's zsRE runs.
                                     A question without its subject cannot be edited: the
                                     case is dropped ("subject_not_in_prompt")
    answers[0]                    -> target_true (the gold answer; further answers unused)
    alt                           -> target_new (EasyEdit's convention; ROME instead inserts
                                     answers[0] into a model that does not know it). A case
                                     whose alt is one of its answers (case-insensitive) has
                                     no counterfactual and is dropped ("target_new_is_true")
    rephrase                      -> paraphrase_prompts: one template, the same templating
                                     (without the subject: removed, "paraphrase_without_subject")
    loc ("nq question: ...")      -> neighborhood_prompts: [{"prompt": loc + "?",
    loc_ans                           "target": loc_ans}] (ROME's prompt: the NQ question
                                     with its "nq question:" prefix and a question mark);
                                     removed when loc_ans equals alt
                                     ("neighbour_answers_target_new")
    pred, cond, portability          not used (pred is MEND's base model's answer)
    relation                         not in zsRE: the question's template,
                                     "template:<prompt>" (``facts.common.template_relation``;
                                     zsRE asks each relation with a few question templates)
    case_id                          the row's index in the file (as ROME numbers zsRE),
                                     so dropping a case does not renumber the others

Neighbourhood success on these prompts is this pipeline's probability comparison (the
NQ answer must stay more likely than the edit's target_new, teacher-forced over the whole
answer), not zsRE's usual token-level accuracy of the NQ answer under the edited model;
the numbers are not comparable with published zsRE locality scores.

Accepts ``path`` or ``hf`` (``facts.common``). Drops and removals are recorded by reason
with their case ids (``facts.common.drop``).
"""
from __future__ import annotations

import logging
from typing import Any

from ..io import InputError
from .common import case_where, drop, field, remove, source_rows, template_relation, text, to_template

log = logging.getLogger(__name__)

NQ_PREFIX = "nq question:"


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
        drop(stats, "subject_not_in_prompt", index, f"{where}: field 'src' {question!r}")
        return None
    if target_new.lower() in {a.strip().lower() for a in answers if isinstance(a, str)}:
        drop(stats, "target_new_is_true", index, f"{where}: field 'alt' {target_new!r}")
        return None
    paraphrase = to_template(rephrase, subject)
    if paraphrase is None:
        remove(stats, "paraphrase_without_subject", index)
    neighbours = []
    if loc_ans == target_new:
        remove(stats, "neighbour_answers_target_new", index)
    else:
        neighbours.append({"prompt": loc if loc.endswith("?") else loc + "?", "target": loc_ans})
    return {
        "case_id": str(index),
        "relation": template_relation(prompt),
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
    stats["n_rows"] = len(cases)
    stats["relation_rule"] = "template"
    return [r for i, c in enumerate(cases) if (r := zsre_record(c, where, i, stats, tag)) is not None], where
