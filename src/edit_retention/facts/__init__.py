"""Fact sources, each loaded into the one record schema of ``edit_retention.records``.

Usage::

    from edit_retention.facts import load_facts
    recs = load_facts({"type": "builtin", "per_relation": 80, "seed": 0})
    recs = load_facts({"type": "counterfact", "path": "counterfact.json", "limit": 200})
    recs = load_facts({"type": "jsonl", "path": "data/facts/x/records.jsonl"})

    stats = {}
    recs = load_facts(source, stats=stats)   # stats: counts of what was loaded and dropped

Source types (``SOURCES``; every source may also carry ``"limit": N``, the first N
records, and nothing else):

``builtin``      real facts built offline (``facts.builtin``); keys per_relation, seed,
                 relations
``counterfact``  the original ROME CounterFact JSON list; key path. Paraphrase prompts
                 are full sentences: the last occurrence of the subject becomes "{}";
                 those without the subject are dropped and counted
                 (``stats["n_paraphrases_dropped"]``). Neighbourhood prompts keep the
                 case's target_true as their target, as in CounterFact.
``jsonl``        a file already in the record schema; key path

Every result goes through ``records.validate_records``, so a bad file fails with an
InputError naming the file, the record and the field.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from ..io import InputError, read_json, read_jsonl
from ..records import validate_records
from .builtin import build_builtin

log = logging.getLogger(__name__)


def _path(source: dict) -> Path:
    """The source's existing ``path``."""
    if not isinstance(source.get("path"), str) or not source["path"]:
        raise InputError(f"fact source {source.get('type')!r}: field 'path' is required (a file path)")
    path = Path(source["path"])
    if not path.is_file():
        raise InputError(f"fact source {source['type']!r}: {path}: no such file")
    return path


def _field(case: Any, dotted: str, where: str, typ: type | tuple[type, ...] = str) -> Any:
    """``case[a][b]...`` for ``dotted`` = "a.b...", with an InputError naming the field."""
    obj = case
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise InputError(f"{where}: missing field {dotted!r}")
        obj = obj[part]
    if not isinstance(obj, typ):
        names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise InputError(f"{where}: field {dotted!r} must be {names}, got {type(obj).__name__}")
    return obj


def to_template(text: str, subject: str) -> str | None:
    """A full prompt as a template: the subject's last occurrence becomes "{}" (None if absent)."""
    i = text.rfind(subject)
    if i < 0:
        return None
    template = (text[:i] + "{}" + text[i + len(subject):]).strip()
    return template if template.count("{}") == 1 else None


def counterfact_record(case: Any, path, index: int, stats: dict) -> dict:
    """One CounterFact case in the record schema."""
    where = f"{path}: record {index}"
    if not isinstance(case, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(case).__name__}")
    case_id = _field(case, "case_id", where, (int, str))
    where += f" (case_id {case_id!r})"
    subject = _field(case, "requested_rewrite.subject", where)
    paraphrases = _field(case, "paraphrase_prompts", where, list)
    neighbours = _field(case, "neighborhood_prompts", where, list)
    target_true = _field(case, "requested_rewrite.target_true.str", where).strip()
    templates = []
    for j, text in enumerate(paraphrases):
        if not isinstance(text, str):
            raise InputError(f"{where}: field 'paraphrase_prompts[{j}]' must be a string")
        t = to_template(text, subject)
        if t is None:
            stats["n_paraphrases_dropped"] = stats.get("n_paraphrases_dropped", 0) + 1
        else:
            templates.append(t)
    for j, text in enumerate(neighbours):
        if not isinstance(text, str):
            raise InputError(f"{where}: field 'neighborhood_prompts[{j}]' must be a string")
    return {
        "case_id": str(case_id),
        "relation": _field(case, "requested_rewrite.relation_id", where),
        "subject": subject,
        "prompt": _field(case, "requested_rewrite.prompt", where),
        "target_true": target_true,
        "target_new": _field(case, "requested_rewrite.target_new.str", where).strip(),
        "paraphrase_prompts": templates,
        "neighborhood_prompts": [{"prompt": p, "target": target_true} for p in neighbours],
        "source": f"counterfact:{Path(path).name}",
    }


def load_counterfact(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from an original CounterFact JSON list."""
    path = _path(source)
    cases = read_json(path)
    if not isinstance(cases, list):
        raise InputError(f"{path}: expected a JSON list of CounterFact cases, got {type(cases).__name__}")
    stats.setdefault("n_paraphrases_dropped", 0)
    records = [counterfact_record(c, path, i, stats) for i, c in enumerate(cases)]
    if stats["n_paraphrases_dropped"]:
        log.warning("%s: dropped %d paraphrase prompts that do not contain their subject",
                    path, stats["n_paraphrases_dropped"])
    return records, str(path)


def load_jsonl(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from a JSONL file already in the record schema."""
    path = _path(source)
    return read_jsonl(path), str(path)


def load_builtin(source: dict, stats: dict) -> tuple[list[dict], str]:
    """The built-in fact set."""
    kw = {k: source[k] for k in ("per_relation", "seed", "relations") if k in source}
    return build_builtin(**kw), "builtin"


# type -> (loader, keys it accepts besides "type" and "limit")
SOURCES: dict[str, tuple[Callable[[dict, dict], tuple[list[dict], str]], tuple[str, ...]]] = {
    "builtin": (load_builtin, ("per_relation", "seed", "relations")),
    "counterfact": (load_counterfact, ("path",)),
    "jsonl": (load_jsonl, ("path",)),
}


def _check_source(source: Any) -> tuple[Callable, int | None]:
    """The loader for a source dict and its limit; InputError on unknown types or keys."""
    if not isinstance(source, dict):
        raise InputError(f"fact source must be a mapping with a 'type', got {type(source).__name__}")
    kind = source.get("type")
    if kind not in SOURCES:
        raise InputError(f"fact source: unknown type {kind!r} (known: {', '.join(sorted(SOURCES))})")
    loader, keys = SOURCES[kind]
    unknown = sorted(set(source) - {"type", "limit", *keys})
    if unknown:
        raise InputError(f"fact source {kind!r}: unknown field(s) {', '.join(map(repr, unknown))} "
                         f"(allowed: type, limit, {', '.join(keys)})")
    limit = source.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InputError(f"fact source {kind!r}: field 'limit' must be a positive integer, got {limit!r}")
    return loader, limit


def load_facts(source: dict, stats: dict | None = None) -> list[dict]:
    """Load, validate and (with ``limit``) cut a fact source; fill ``stats`` if given."""
    loader, limit = _check_source(source)
    stats = {} if stats is None else stats
    records, where = loader(source, stats)
    records = validate_records(records, where)
    if limit is not None:
        records = records[:limit]
    stats["n_records"] = len(records)
    return records
