"""KnowEdit, the benchmark behind EasyEdit's tables (its ZsRE, WikiData_counterfact,
WikiBio-free sets share one schema).

One JSON object per case::

    case_id (optional; else the row index)  -> case_id
    subject                                 -> subject
    prompt (full prompt or question)        -> prompt: the subject's last occurrence becomes
                                               "{}"; a case whose prompt lacks the subject is
                                               dropped ("subject_not_in_prompt")
    ground_truth (string, or a list whose   -> target_true: the first answer (aliases after it
      items are strings or alias lists)        are not used); none given: the case is dropped
                                               ("no_target_true")
    target_new (string or list)             -> target_new (the first)
    rephrase_prompt (optional; string or    -> paraphrase_prompts (same templating; one without
      list)                                    the subject is removed and recorded)
    locality.Relation_Specificity           -> neighborhood_prompts [{prompt, target: first
      [{prompt, ground_truth}]                 answer}]; one whose answer is target_new is
                                               removed ("neighbour_answers_target_new")
    portability.<Kind> [{prompt,            -> portability_prompts [{kind, prompt, target}]:
      ground_truth}] (Reasoning,               an extra field of the record, kind the key in
      Subject_Aliasing,                        snake case ("reasoning", "subject_aliasing",
      Logical_Generalization)                  "logical_generalization"); carried through the
                                               fact files, not scored by the evaluate stage yet
    relation / relation_id (optional)       -> relation; absent (as in the released files):
                                               the prompt template, "template:<prompt>"
                                               (``facts.common.template_relation``)
    locality.Forgetfulness, cond, ...          not used

What NS means here: KnowEdit's Relation_Specificity prompts ask about the *same subject*
under another relation ("The taxon rank of Epaspidoceras is" -> genus), where
CounterFact's neighbourhood prompts ask about *other subjects* with the same relation. The
pipeline scores both the same way (the prompt's own answer must stay more likely than the
edit's target_new), so NS on KnowEdit is a same-subject locality test; it is not
EasyEdit's locality score either (token agreement of the model's outputs before and after
the edit). Portability prompts are full prompts (with or without the subject), kept as
given.

Accepts ``path`` or ``hf`` (``facts.common``).
"""
from __future__ import annotations

import re
from typing import Any

from ..io import InputError
from .common import case_where, drop, field, remove, source_rows, template_relation, text, texts, to_template


def first_answer(value: Any, where: str, key: str) -> str | None:
    """The first non-empty answer in a KnowEdit ground truth: a string, or a list whose
    items are strings or lists of aliases. None when it holds none."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        for item in value:
            got = first_answer(item, where, key)
            if got is not None:
                return got
        return None
    raise InputError(f"{where}: field {key!r} must be a string or a list, got {type(value).__name__}")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _prompt_answers(case: dict, key: str, where: str) -> list[tuple[str, str | None]]:
    """[(prompt, first answer)] of a KnowEdit list field such as locality.Relation_Specificity."""
    items = field(case, key, where, list)
    out = []
    for j, item in enumerate(items):
        at = f"{key}[{j}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: field {at!r} must be an object with 'prompt' and 'ground_truth'")
        prompt = text(item, "prompt", f"{where}: field {at!r}")
        if "ground_truth" not in item:
            raise InputError(f"{where}: missing field '{at}.ground_truth'")
        out.append((prompt, first_answer(item["ground_truth"], where, f"{at}.ground_truth")))
    return out


def knowedit_record(case: Any, where_file: str, index: int, stats: dict, tag: str = "") -> dict | None:
    """One KnowEdit case in the record schema, or None when it is dropped."""
    where, case_id = case_where(case, where_file, index)
    case_id = str(index if case_id is None else case_id)
    subject = text(case, "subject", where)
    prompt_text = text(case, "prompt", where)
    if "ground_truth" not in case:
        raise InputError(f"{where}: missing field 'ground_truth'")
    target_true = first_answer(case["ground_truth"], where, "ground_truth")
    if "target_new" not in case:
        raise InputError(f"{where}: missing field 'target_new'")
    target_new = first_answer(case["target_new"], where, "target_new")
    if target_new is None:
        raise InputError(f"{where}: field 'target_new' is empty")
    rephrasings = texts(case, "rephrase_prompt", where) if case.get("rephrase_prompt") is not None else []
    locality = field(case, "locality", where, dict) if case.get("locality") is not None else {}
    portability = field(case, "portability", where, dict) if case.get("portability") is not None else {}
    neighbours_raw = (_prompt_answers(case, "locality.Relation_Specificity", where)
                      if locality.get("Relation_Specificity") is not None else [])
    portable = []
    for kind in portability:
        if portability[kind] is None:
            continue
        for prompt, answer in _prompt_answers(case, f"portability.{kind}", where):
            if answer is not None:
                portable.append({"kind": _snake(kind), "prompt": prompt, "target": answer})
    relation = None
    for key in ("relation", "relation_id"):
        if case.get(key) is not None:
            relation = text(case, key, where)
            break
    prompt = to_template(prompt_text, subject)
    if prompt is None:
        drop(stats, "subject_not_in_prompt", case_id, f"{where}: field 'prompt' {prompt_text!r}")
        return None
    if target_true is None:
        drop(stats, "no_target_true", case_id, f"{where}: field 'ground_truth'")
        return None
    paraphrases = []
    for p in rephrasings:
        t = to_template(p, subject)
        if t is None:
            remove(stats, "paraphrase_without_subject", case_id)
        else:
            paraphrases.append(t)
    neighbours = []
    for p, answer in neighbours_raw:
        if answer is None:
            continue
        if answer == target_new:
            remove(stats, "neighbour_answers_target_new", case_id)
        else:
            neighbours.append({"prompt": p, "target": answer})
    return {
        "case_id": case_id,
        "relation": relation or template_relation(prompt),
        "subject": subject,
        "prompt": prompt,
        "target_true": target_true,
        "target_new": target_new,
        "paraphrase_prompts": paraphrases,
        "neighborhood_prompts": neighbours,
        "portability_prompts": portable,
        "source": f"knowedit:{tag}",
    }


def load_knowedit(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from a KnowEdit JSON list."""
    cases, where, tag = source_rows(source, "KnowEdit cases")
    stats["n_rows"] = len(cases)
    records = [r for i, c in enumerate(cases) if (r := knowedit_record(c, where, i, stats, tag)) is not None]
    if any(r["relation"].startswith("template:") for r in records):
        stats["relation_rule"] = "template"
    return records, where
