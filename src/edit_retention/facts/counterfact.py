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
                                            is removed (stats["removed"]["paraphrase_without_subject"])
    neighborhood_prompts (full prompts)  -> neighborhood_prompts, each with the case's
                                            target_true as its target (CounterFact's design:
                                            neighbours share the true object)
    attribute_prompts, generation_prompts   not used

``counterfact_easyedit`` (EasyEdit/MEND, e.g. ``counterfact-val.json``)::

    case_id (optional; else the row index) -> case_id
    subject                                -> subject
    prompt (full prompt with the subject)  -> prompt: the subject's last occurrence becomes
                                              "{}"; a case whose prompt lacks the subject is
                                              dropped ("subject_not_in_prompt")
    ground_truth                           -> target_true
    target_new                             -> target_new
    rephrase_prompt (string or list)       -> paraphrase_prompts (same templating; without
                                              the subject: removed and counted); see
                                              ``rephrase_filter`` below
    locality_prompt, locality_ground_truth -> neighborhood_prompts [{prompt, target}]; one
                                              whose target equals target_new is removed
                                              ("neighbour_answers_target_new")
    relation                                  not in the schema: derived from the prompt,
                                              "template:<prompt template>" (``facts.common.
                                              template_relation``; CounterFact words each of
                                              its 34 relations with a few fixed templates,
                                              and in the original file a template is shared
                                              by two relations in 17 of 172 cases, always
                                              close ones such as P17/P131 "is located in")

``rephrase_filter`` (``counterfact_easyedit`` only; default ``template``). EasyEdit's
release fills ``rephrase_prompt`` from two different lists of the original file: ROME's
paraphrase prompts (an unrelated sentence, then the case's relation worded with one of
the relation's prompt templates: "... in April 1917. {} holds a citizenship from") and
its *generation* prompts, which ask for free text about the subject ("The best
restaurants around {} include", "{} is known for"). Only the first kind is a paraphrase of
the edit's question. ``template`` keeps a rephrasing only when it is some text followed by
one of the prompt templates that occur in the file (the original file builds every
paraphrase prompt that way and almost no generation prompt), and removes the rest,
counted under "paraphrase_not_relation_template"; ``none`` keeps every rephrasing (then PS
on this data mostly measures generation prompts; the count is still recorded, under
``stats["rephrase_filter"]``). In the shared copy of the validation split (1,919 cases)
the filter keeps 337 rephrasings.

Both accept ``path`` or ``hf`` (``facts.common``). A case whose target_new equals its
target_true is dropped by ``load_facts`` ("target_new_is_true").
"""
from __future__ import annotations

import logging
from typing import Any

from ..io import InputError
from .common import case_where, field, remove, drop, source_rows, template_relation, text, texts, to_template

log = logging.getLogger(__name__)

REPHRASE_FILTERS = ("template", "none")


def _templates(prompts: list, subject: str, key: str, where: str, stats: dict, case_id) -> list[str]:
    """Full prompts as templates; those without the subject are removed and recorded."""
    out = []
    for j, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InputError(f"{where}: field '{key}[{j}]' must be a string, got {type(p).__name__}")
        t = to_template(p, subject)
        if t is None:
            remove(stats, "paraphrase_without_subject", case_id)
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
                           "paraphrase_prompts", where, stats, case_id)
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
    stats["n_rows"] = len(cases)
    return [counterfact_record(c, where, i, stats, tag) for i, c in enumerate(cases)], where


def easyedit_record(case: Any, where_file: str, index: int, stats: dict, tag: str = "") -> dict | None:
    """One case of EasyEdit's simplified CounterFact schema in the record schema (rephrasings
    not yet filtered), or None when it is dropped."""
    where, case_id = case_where(case, where_file, index)
    case_id = str(index if case_id is None else case_id)
    subject = text(case, "subject", where)
    prompt_text = field(case, "prompt", where)
    target_true = text(case, "ground_truth", where)
    target_new = text(case, "target_new", where)
    loc_prompts = texts(case, "locality_prompt", where)
    loc_targets = texts(case, "locality_ground_truth", where)
    rephrasings = texts(case, "rephrase_prompt", where)
    if len(loc_prompts) != len(loc_targets):
        raise InputError(f"{where}: field 'locality_ground_truth' has {len(loc_targets)} entries "
                         f"for {len(loc_prompts)} locality prompts")
    prompt = to_template(prompt_text, subject)
    if prompt is None:
        drop(stats, "subject_not_in_prompt", case_id, f"{where}: field 'prompt' {prompt_text!r}")
        return None
    neighbours = []
    for p, t in zip(loc_prompts, loc_targets):
        if t.strip() == target_new:
            remove(stats, "neighbour_answers_target_new", case_id)
        else:
            neighbours.append({"prompt": p, "target": t.strip()})
    return {
        "case_id": case_id,
        "relation": template_relation(prompt),
        "subject": subject,
        "prompt": prompt,
        "target_true": target_true,
        "target_new": target_new,
        "paraphrase_prompts": _templates(rephrasings, subject, "rephrase_prompt", where, stats, case_id),
        "neighborhood_prompts": neighbours,
        "source": f"counterfact_easyedit:{tag}",
    }


def is_relation_paraphrase(template: str, prompt_templates: set[str]) -> bool:
    """True when ``template`` is some text, white space, then one of ``prompt_templates``
    (ROME's construction of CounterFact's paraphrase prompts)."""
    for t in prompt_templates:
        if len(template) > len(t) and template.endswith(t) and template[-len(t) - 1].isspace() \
                and template[:-len(t)].strip():
            return True
    return False


def load_counterfact_easyedit(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from CounterFact in EasyEdit's simplified schema."""
    mode = source.get("rephrase_filter", "template")
    if mode not in REPHRASE_FILTERS:
        raise InputError(f"fact source 'counterfact_easyedit': field 'rephrase_filter' must be one of "
                         f"{', '.join(REPHRASE_FILTERS)}, got {mode!r}")
    cases, where, tag = source_rows(source, "EasyEdit CounterFact cases")
    stats["n_rows"] = len(cases)
    stats["relation_rule"] = "template"
    records = [r for i, c in enumerate(cases) if (r := easyedit_record(c, where, i, stats, tag)) is not None]
    prompts = {r["prompt"] for r in records}
    n_all = n_kept = 0
    for r in records:
        keep = [t for t in r["paraphrase_prompts"] if is_relation_paraphrase(t, prompts)]
        n_all, n_kept = n_all + len(r["paraphrase_prompts"]), n_kept + len(keep)
        if mode == "template":
            for _ in range(len(r["paraphrase_prompts"]) - len(keep)):
                remove(stats, "paraphrase_not_relation_template", r["case_id"])
            r["paraphrase_prompts"] = keep
    stats["rephrase_filter"] = {
        "mode": mode, "n_rephrasings": n_all, "n_relation_paraphrases": n_kept,
        "note": (f"{n_all - n_kept} of {n_all} rephrase prompts are not paraphrases of the prompt (generation "
                 f"prompts: free text about the subject); "
                 + ("they were removed (rephrase_filter: template), so PS uses only the "
                    f"{n_kept} ROME-style paraphrases" if mode == "template" else
                    "they were kept (rephrase_filter: none), so PS on this data mostly measures "
                    "generation prompts, not paraphrases")),
    }
    return records, where
