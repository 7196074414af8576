"""Split each record's paraphrase templates into augmentation and held-out evaluation sets.

Usage::

    from edit_retention.paraphrase import split_paraphrases
    rows = split_paraphrases(records, n_eval=2, seed=0)
    # [{"case_id": "P36-France", "augment": [...], "evaluate": [...]}, ...]

Per record: the paraphrase templates are de-duplicated (ignoring case and runs of
whitespace; the first spelling is kept), those equal to the main prompt are removed, and
the rest are shuffled with a generator seeded by ``(seed, case_id)`` (so a record's split
does not depend on which other records are in the file). The first ``n_eval`` become the
held-out evaluation templates, the rest the augmentation templates, in the order an editor
takes them: augmenting with k paraphrases means ``augment[:k]``, so the sets for k < k'
are nested. The two lists never overlap and neither contains the main prompt. A record
needs at least ``n_eval`` paraphrases; its augmentation list may be shorter than a remedy's
k (or empty, as in zsRE's one rephrasing per case), which the edit stage reports by case id.
"""
from __future__ import annotations

import random

from .io import InputError


def template_key(template: str) -> str:
    """Comparison key: lower case, whitespace runs collapsed."""
    return " ".join(template.split()).lower()


def distinct_paraphrases(record: dict) -> list[str]:
    """The record's paraphrase templates without duplicates and without the main prompt."""
    seen = {template_key(record["prompt"])}
    out = []
    for t in record["paraphrase_prompts"]:
        if template_key(t) not in seen:
            seen.add(template_key(t))
            out.append(t)
    return out


def split_record(record: dict, n_eval: int, seed: int = 0) -> dict:
    """One record's split: {"case_id", "augment", "evaluate"}."""
    templates = distinct_paraphrases(record)
    if len(templates) < n_eval:
        raise InputError(
            f"case_id {record['case_id']!r}: field 'paraphrase_prompts' has {len(templates)} distinct "
            f"paraphrases other than the prompt; {n_eval} are needed (held out for evaluation); "
            f"set 'min_paraphrases: {n_eval}' on the fact source to drop such records when loading"
        )
    random.Random(f"{seed}:{record['case_id']}").shuffle(templates)
    return {"case_id": record["case_id"], "augment": templates[n_eval:], "evaluate": templates[:n_eval]}


def split_paraphrases(records: list[dict], n_eval: int, seed: int = 0) -> list[dict]:
    """One row per record: a seeded split into augmentation and held-out evaluation templates."""
    if not isinstance(n_eval, int) or isinstance(n_eval, bool) or n_eval < 0:
        raise InputError(f"paraphrases: field 'n_eval' must be an integer >= 0, got {n_eval!r}")
    return [split_record(r, n_eval, seed) for r in records]
