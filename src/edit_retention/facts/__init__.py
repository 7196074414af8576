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
                          (``facts.counterfact``); path | hf, rephrase_filter
``zsre``                  zsRE, MEND schema (``facts.zsre``); path | hf
``knowedit``              KnowEdit (EasyEdit's benchmark: ZsRE, WikiData_counterfact, ...;
                          ``facts.knowedit``); path | hf
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
                        recorded as "min_paraphrases";
``bad_records``         ``drop`` (default) or ``error``: see below.

One policy for bad records, the same in every loader:

* a row that breaks the file's format (a missing field, a wrong type, an empty required
  text, a repeated case id) stops the load with an InputError naming the file, the record
  and the field: the file is not what its type says;
* a well-formed case that cannot be an edit case (its target_new equals its target_true,
  its prompt lacks its subject, ...; ``facts.common.DROP_REASONS``) is dropped, and its
  case id is recorded under the reason in ``stats["dropped"]``; with ``bad_records:
  error`` the first such case stops the load instead, naming it;
* a part of a case that cannot be used (a rephrasing without the subject, a neighbour
  whose answer is the edit's target_new; ``facts.common.REMOVE_REASONS``) is removed and
  recorded the same way in ``stats["removed"]``, and never stops the load.

``load_report(stats)`` turns ``stats`` into the facts artifact's report (``prepare-facts
--out-report``: counts and case ids by reason, the relation rule and strata, notes), which
``results.md`` shows. Every result goes through ``records.validate_records``.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable

from ..fields import check_source_keys
from ..io import InputError
from ..records import validate_records
from .builtin import build_builtin
from .common import BAD_RECORDS, DROP_REASONS, FILE_KEYS, RELATION_RULES, REMOVE_REASONS, drop, source_rows, to_template
from .counterfact import counterfact_record, load_counterfact, load_counterfact_easyedit
from .knowedit import load_knowedit
from .pararel import load_pararel
from .zsre import load_zsre

__all__ = ["SOURCES", "SOURCE_KEYS", "load_facts", "load_report", "to_template", "counterfact_record"]

log = logging.getLogger(__name__)
COMMON_KEYS = ("limit", "min_paraphrases", "bad_records")


def load_jsonl(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from a file (or hub dataset) already in the record schema."""
    rows, where, _ = source_rows(source, "records", jsonl=True)
    stats["n_rows"] = len(rows)
    return rows, where


def load_builtin(source: dict, stats: dict) -> tuple[list[dict], str]:
    """The built-in fact set."""
    kw = {k: source[k] for k in ("per_relation", "seed", "relations") if k in source}
    return build_builtin(**kw), "builtin"


# type -> (loader, keys it accepts besides "type" and COMMON_KEYS)
SOURCES: dict[str, tuple[Callable[[dict, dict], tuple[list[dict], str]], tuple[str, ...]]] = {
    "builtin": (load_builtin, ("per_relation", "seed", "relations")),
    "counterfact": (load_counterfact, FILE_KEYS),
    "counterfact_easyedit": (load_counterfact_easyedit, FILE_KEYS + ("rephrase_filter",)),
    "zsre": (load_zsre, FILE_KEYS),
    "knowedit": (load_knowedit, FILE_KEYS),
    "pararel": (load_pararel, ("path", "relations", "per_relation", "seed")),
    "jsonl": (load_jsonl, FILE_KEYS),
}
# type -> every key it accepts besides "type" (checked here and in the study config, config.py)
SOURCE_KEYS = {kind: (*keys, *COMMON_KEYS) for kind, (_, keys) in SOURCES.items()}


def _positive(kind: str, source: dict, key: str) -> int | None:
    value = source.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InputError(f"fact source {kind!r}: field {key!r} must be a positive integer, got {value!r}")
    return value


def _check_source(source: Any) -> tuple[Callable, int | None, int | None]:
    """The loader for a source dict, its limit and min_paraphrases; InputError on unknown
    types or keys."""
    kind = check_source_keys(source, SOURCE_KEYS, "fact source", "fact source")
    loader = SOURCES[kind][0]
    if source.get("bad_records", "drop") not in BAD_RECORDS:
        raise InputError(f"fact source {kind!r}: field 'bad_records' must be one of {', '.join(BAD_RECORDS)}, "
                         f"got {source['bad_records']!r}")
    return loader, _positive(kind, source, "limit"), _positive(kind, source, "min_paraphrases")


def _same_target(rec: dict) -> bool:
    t, n = rec.get("target_true"), rec.get("target_new")
    return isinstance(t, str) and isinstance(n, str) and t.strip().lower() == n.strip().lower()


def load_facts(source: dict, stats: dict | None = None, data_root: str | None = None) -> list[dict]:
    """Load, validate and cut a fact source; fill ``stats`` if given (see the module
    docstring). A ``path`` starting with ``${data_root}/`` is resolved against ``data_root``."""
    from ..data_root import resolve_source
    from ..paraphrase import distinct_paraphrases

    loader, limit, min_paraphrases = _check_source(source)
    source = resolve_source(source, data_root, where=f"fact source {source['type']!r}")
    stats = {} if stats is None else stats
    stats["bad_records"] = source.get("bad_records", "drop")
    records, where = loader(source, stats)
    kept = []
    for i, r in enumerate(records):
        if isinstance(r, dict) and _same_target(r):
            drop(stats, "target_new_is_true", r.get("case_id"),
                 f"{where}: record {i} (case_id {r.get('case_id')!r}): field 'target_new' {r['target_new']!r}")
        else:
            kept.append(r)
    records = validate_records(kept, where)
    if min_paraphrases is not None:
        kept = []
        for r in records:
            if len(distinct_paraphrases(r)) >= min_paraphrases:
                kept.append(r)
            else:
                drop(stats, "min_paraphrases", r["case_id"], f"{where}: case_id {r['case_id']!r} "
                     f"(min_paraphrases {min_paraphrases})")
        records = validate_records(kept, f"{where} (min_paraphrases {min_paraphrases})")
    if limit is not None:
        records = records[:limit]
    stats["n_records"] = len(records)
    stats["relations"] = dict(Counter(r["relation"] for r in records))
    kinds = Counter(p["kind"] for r in records for p in r.get("portability_prompts", []))
    if kinds:
        stats["n_portability_prompts"] = dict(sorted(kinds.items()))
    for key, reasons in (("dropped", DROP_REASONS), ("removed", REMOVE_REASONS)):
        for reason, ids in stats.get(key, {}).items():
            log.warning("%s: %s %d %s: %s (case ids %s%s)", where, key, len(ids),
                        "cases" if key == "dropped" else "parts", reason, ", ".join(ids[:5]),
                        ", ..." if len(ids) > 5 else "")
    return records


def load_report(stats: dict, source: dict | None = None) -> dict:
    """The facts artifact's report (JSON-ready): how many rows were read and records kept,
    every drop and removal by reason with its count, meaning and case ids, the relation
    rule and the strata it gave, and any notes a loader left (e.g. on rephrasings)."""
    def by_reason(key: str, meanings: dict) -> dict:
        return {reason: {"n": len(ids), "meaning": meanings.get(reason, reason), "case_ids": ids}
                for reason, ids in sorted(stats.get(key, {}).items())}
    strata = stats.get("relations", {})
    rule = stats.get("relation_rule", "file")
    out = {
        "source": source,
        "n_rows": stats.get("n_rows"),
        "n_records": stats.get("n_records"),
        "bad_records": stats.get("bad_records", "drop"),
        "dropped": by_reason("dropped", DROP_REASONS),
        "removed": by_reason("removed", REMOVE_REASONS),
        "relations": {"rule": rule, "meaning": RELATION_RULES.get(rule, "relation ids given by the source"),
                      "n_strata": len(strata), "n_singleton_strata": sum(n == 1 for n in strata.values()),
                      "largest": Counter(strata).most_common(5)},
        "notes": [v["note"] for v in stats.values() if isinstance(v, dict) and "note" in v],
    }
    extra = {k: v for k, v in stats.items() if k not in {"dropped", "removed", "relations", "relation_rule",
                                                         "bad_records", "n_rows", "n_records"}}
    return {**out, "loader": extra}
