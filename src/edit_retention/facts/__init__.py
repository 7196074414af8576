"""Fact sources, each loaded into the one record schema of ``edit_retention.records``.

Usage::

    from edit_retention.facts import load_facts
    recs = load_facts({"type": "builtin", "per_relation": 80, "seed": 0})
    recs = load_facts({"type": "counterfact", "path": "counterfact.json", "limit": 200})
    recs = load_facts({"type": "zsre", "path": "${data_root}/zsre/zsre_mend_eval.json"},
                      data_root="../shared/datasets")
    recs = load_facts({"type": "counterfact", "hf": "owner/counterfact", "revision": "<sha>"})

    stats = {}
    recs = load_facts(source, stats=stats)   # stats: counts of what was loaded and dropped

Source types (``SOURCES``; the module of each documents its field mapping):

``builtin``               real facts built offline (``facts.builtin``); keys per_relation,
                          seed, relations
``counterfact``           CounterFact, original ROME schema (``facts.counterfact``); path | hf
``counterfact_easyedit``  CounterFact, EasyEdit/MEND simplified schema
                          (``facts.counterfact``); path | hf
``zsre``                  zsRE, MEND schema (``facts.zsre``); path | hf
``pararel``               ParaRel patterns + T-REx facts, counterfactuals built as for the
                          built-in set (``facts.pararel``); keys path (a folder), relations,
                          per_relation, seed
``jsonl``                 a file already in the record schema; path | hf

``path | hf``: a local file (a JSON list; JSONL when its name ends in ".jsonl", and always
for ``jsonl``) or a Hugging Face hub
dataset (``hf`` with optional ``split``, default "train", and ``revision``); see
``facts.common``. A ``path`` may start with ``${data_root}/``, replaced by the study's
top-level ``data_root`` (``data_root.resolve_data_root``; pass ``data_root=`` here).

Keys every source takes:

``limit: N``            keep the first N records (after everything else);
``min_paraphrases: N``  drop records with fewer than N distinct paraphrase templates other
                        than the main prompt (the paraphrase stage needs ``n_eval + 1``);
                        counted in ``stats["n_dropped_min_paraphrases"]``.

Every result goes through ``records.validate_records``, so a bad file fails with an
InputError naming the file, the record and the field; rows the source cannot turn into
an edit case (documented per source) are dropped and counted in ``stats``, and logged.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from ..io import InputError
from ..records import validate_records
from .builtin import build_builtin
from .common import FILE_KEYS, source_rows, to_template
from .counterfact import counterfact_record, load_counterfact, load_counterfact_easyedit
from .pararel import load_pararel
from .zsre import load_zsre

__all__ = ["SOURCES", "load_facts", "to_template", "counterfact_record"]

log = logging.getLogger(__name__)
COMMON_KEYS = ("limit", "min_paraphrases")


def load_jsonl(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from a file (or hub dataset) already in the record schema."""
    rows, where, _ = source_rows(source, "records", jsonl=True)
    return rows, where


def load_builtin(source: dict, stats: dict) -> tuple[list[dict], str]:
    """The built-in fact set."""
    kw = {k: source[k] for k in ("per_relation", "seed", "relations") if k in source}
    return build_builtin(**kw), "builtin"


# type -> (loader, keys it accepts besides "type" and COMMON_KEYS)
SOURCES: dict[str, tuple[Callable[[dict, dict], tuple[list[dict], str]], tuple[str, ...]]] = {
    "builtin": (load_builtin, ("per_relation", "seed", "relations")),
    "counterfact": (load_counterfact, FILE_KEYS),
    "counterfact_easyedit": (load_counterfact_easyedit, FILE_KEYS),
    "zsre": (load_zsre, FILE_KEYS),
    "pararel": (load_pararel, ("path", "relations", "per_relation", "seed")),
    "jsonl": (load_jsonl, FILE_KEYS),
}


def _positive(kind: str, source: dict, key: str) -> int | None:
    value = source.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InputError(f"fact source {kind!r}: field {key!r} must be a positive integer, got {value!r}")
    return value


def _check_source(source: Any) -> tuple[Callable, int | None, int | None]:
    """The loader for a source dict, its limit and min_paraphrases; InputError on unknown
    types or keys."""
    if not isinstance(source, dict):
        raise InputError(f"fact source must be a mapping with a 'type', got {type(source).__name__}")
    kind = source.get("type")
    if kind not in SOURCES:
        raise InputError(f"fact source: unknown type {kind!r} (known: {', '.join(sorted(SOURCES))})")
    loader, keys = SOURCES[kind]
    unknown = sorted(set(source) - {"type", *COMMON_KEYS, *keys})
    if unknown:
        raise InputError(f"fact source {kind!r}: unknown field(s) {', '.join(map(repr, unknown))} "
                         f"(allowed: type, {', '.join(COMMON_KEYS)}, {', '.join(keys)})")
    return loader, _positive(kind, source, "limit"), _positive(kind, source, "min_paraphrases")


def load_facts(source: dict, stats: dict | None = None, data_root: str | None = None) -> list[dict]:
    """Load, validate and cut a fact source; fill ``stats`` if given. A ``path`` starting
    with ``${data_root}/`` is resolved against ``data_root``."""
    from ..data_root import resolve_source
    from ..paraphrase import distinct_paraphrases

    loader, limit, min_paraphrases = _check_source(source)
    source = resolve_source(source, data_root, where=f"fact source {source['type']!r}")
    stats = {} if stats is None else stats
    records, where = loader(source, stats)
    records = validate_records(records, where)
    if min_paraphrases is not None:
        kept = [r for r in records if len(distinct_paraphrases(r)) >= min_paraphrases]
        stats["n_dropped_min_paraphrases"] = len(records) - len(kept)
        if len(kept) < len(records):
            log.warning("%s: dropped %d records with fewer than %d distinct paraphrases",
                        where, len(records) - len(kept), min_paraphrases)
        records = validate_records(kept, f"{where} (min_paraphrases {min_paraphrases})")
    if limit is not None:
        records = records[:limit]
    stats["n_records"] = len(records)
    return records
