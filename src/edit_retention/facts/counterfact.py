"""CounterFact, in its original ROME schema and in EasyEdit's simplified one.

``counterfact`` (ROME, ``counterfact.json``; one object per case)::

    case_id                              -> case_id (as a string)
    requested_rewrite.relation_id        -> relation
    requested_rewrite.subject            -> subject
    requested_rewrite.prompt ("{} ...")  -> prompt
    requested_rewrite.target_true.str    -> target_true
    requested_rewrite.target_new.str     -> target_new
    paraphrase_prompts (full sentences)  -> paraphrase_prompts: the last occurrence of the
                                            subject becomes "{}"; a prompt without the subject
                                            is dropped (stats["n_paraphrases_dropped"])
    neighborhood_prompts (full prompts)  -> neighborhood_prompts, each with the case's
                                            target_true as its target (CounterFact's design:
                                            neighbours share the true object)
    attribute_prompts, generation_prompts   not used

``counterfact_easyedit`` (EasyEdit/MEND, e.g. ``counterfact-val.json``)::

    case_id (optional; else the row index) -> case_id
    subject                                -> subject
    prompt (full prompt with the subject)  -> prompt: the subject's last occurrence becomes
                                              "{}"; a prompt without it is an InputError
    ground_truth                           -> target_true
    target_new                             -> target_new
    rephrase_prompt (string or list)       -> paraphrase_prompts (same templating; without
                                              the subject: dropped and counted)
    locality_prompt, locality_ground_truth -> neighborhood_prompts [{prompt, target}]; one
                                              whose target equals target_new is dropped
                                              (stats["n_neighbours_dropped"])
    relation                                  not in the schema: the constant
                                              "counterfact_easyedit"

Both accept ``path`` or ``hf`` (``facts.common``).
"""
from __future__ import annotations

import logging
from typing import Any

from ..io import InputError
from .common import bump, case_where, field, source_rows, text, texts, to_template

log = logging.getLogger(__name__)

EASYEDIT_RELATION = "counterfact_easyedit"


def _templates(prompts: list, subject: str, key: str, where: str, stats: dict) -> list[str]:
    """Full prompts as templates; those without the subject are dropped and counted."""
    out = []
    for j, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InputError(f"{where}: field '{key}[{j}]' must be a string, got {type(p).__name__}")
        t = to_template(p, subject)
        if t is None:
            bump(stats, "n_paraphrases_dropped")
        else:
            out.append(t)
    return out


def counterfact_record(case: Any, where_file: str, index: int, stats: dict, tag: str = "") -> dict:
    """One original CounterFact case in the record schema."""
    where, _ = case_where(case, where_file, index, id_key=None)
    case_id = field(case, "case_id", where, (int, str))
    where += f" (case_id {case_id!r})"
    subject = field(case, "requested_rewrite.subject", where)
    target_true = field(case, "requested_rewrite.target_true.str", where).strip()
    neighbours = field(case, "neighborhood_prompts", where, list)
    templates = _templates(field(case, "paraphrase_prompts", where, list), subject,
                           "paraphrase_prompts", where, stats)
    for j, p in enumerate(neighbours):
        if not isinstance(p, str):
            raise InputError(f"{where}: field 'neighborhood_prompts[{j}]' must be a string")
    return {
        "case_id": str(case_id),
        "relation": field(case, "requested_rewrite.relation_id", where),
        "subject": subject,
        "prompt": field(case, "requested_rewrite.prompt", where),
        "target_true": target_true,
        "target_new": field(case, "requested_rewrite.target_new.str", where).strip(),
        "paraphrase_prompts": templates,
        "neighborhood_prompts": [{"prompt": p, "target": target_true} for p in neighbours],
        "source": f"counterfact:{tag}",
    }


def load_counterfact(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from an original CounterFact JSON list."""
    cases, where, tag = source_rows(source, "CounterFact cases")
    stats.setdefault("n_paraphrases_dropped", 0)
    records = [counterfact_record(c, where, i, stats, tag) for i, c in enumerate(cases)]
    if stats["n_paraphrases_dropped"]:
        log.warning("%s: dropped %d paraphrase prompts that do not contain their subject",
                    where, stats["n_paraphrases_dropped"])
    return records, where


def easyedit_record(case: Any, where_file: str, index: int, stats: dict, tag: str = "") -> dict:
    """One case of EasyEdit's simplified CounterFact schema in the record schema."""
    where, case_id = case_where(case, where_file, index)
    subject = text(case, "subject", where)
    prompt_text = field(case, "prompt", where)
    prompt = to_template(prompt_text, subject)
    if prompt is None:
        raise InputError(f"{where}: field 'prompt' must contain the subject {subject!r} "
                         f"(and no literal '{{}}'): {prompt_text!r}")
    target_new = text(case, "target_new", where)
    loc_prompts = texts(case, "locality_prompt", where)
    loc_targets = texts(case, "locality_ground_truth", where)
    if len(loc_prompts) != len(loc_targets):
        raise InputError(f"{where}: field 'locality_ground_truth' has {len(loc_targets)} entries "
                         f"for {len(loc_prompts)} locality prompts")
    neighbours = []
    for p, t in zip(loc_prompts, loc_targets):
        if t.strip() == target_new:
            bump(stats, "n_neighbours_dropped")
        else:
            neighbours.append({"prompt": p, "target": t.strip()})
    return {
        "case_id": str(index if case_id is None else case_id),
        "relation": EASYEDIT_RELATION,
        "subject": subject,
        "prompt": prompt,
        "target_true": text(case, "ground_truth", where),
        "target_new": target_new,
        "paraphrase_prompts": _templates(texts(case, "rephrase_prompt", where), subject,
                                         "rephrase_prompt", where, stats),
        "neighborhood_prompts": neighbours,
        "source": f"counterfact_easyedit:{tag}",
    }


def load_counterfact_easyedit(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from CounterFact in EasyEdit's simplified schema."""
    cases, where, tag = source_rows(source, "EasyEdit CounterFact cases")
    stats.setdefault("n_paraphrases_dropped", 0)
    stats.setdefault("n_neighbours_dropped", 0)
    records = [easyedit_record(c, where, i, stats, tag) for i, c in enumerate(cases)]
    for key, what in (("n_paraphrases_dropped", "rephrase prompts without their subject"),
                      ("n_neighbours_dropped", "locality prompts whose answer is the edit's target_new")):
        if stats[key]:
            log.warning("%s: dropped %d %s", where, stats[key], what)
    return records, where
