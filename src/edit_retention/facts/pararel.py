"""ParaRel patterns with T-REx (LAMA) facts: true facts, counterfactuals built as CounterFact does.

Usage::

    load_facts({"type": "pararel", "path": "${data_root}/pararel", "relations": ["P36", "P17"],
                "per_relation": 100, "seed": 0})

``path`` is a folder holding ``patterns/P*.jsonl`` (ParaRel: one ``{"pattern": "The
capital of [X] is [Y] ."}`` per line) and ``trex/P*.jsonl`` (T-REx: one ``{"sub_label",
"obj_label"}`` fact per line). ``relations`` (default: every relation with both files, in
the order of their numeric ids) picks relations; ``per_relation`` (default 100) facts are
kept per relation after a shuffle seeded by ``seed`` (default 0).

Per relation:

1. templates: the patterns that end in ``[Y]`` (an optional full stop after it) with one
   ``[X]``, the part before ``[Y]`` with ``[X]`` -> "{}". The first in file order is the
   prompt, the others (de-duplicated) the paraphrase prompts. Relations with no such
   pattern are skipped (stats["relations_skipped"]); relations with a single one give
   records without paraphrases, which the paraphrase stage rejects: drop them with
   ``relations`` or ``min_paraphrases``.
2. facts: a subject listed with two or more different objects has no single true answer
   and is dropped ("ambiguous_subject", case id "<relation>-<subject>"), as is one that
   contains its object as a word ("Kuwait City" -> Kuwait; "subject_has_object");
   repeated facts count once.
3. the rest is shuffled (``random.Random(f"{seed}:{relation}")``), the first
   ``per_relation`` are kept (stats["n_usable_facts"] counts them all), and
   ``facts.builtin.records_from_pairs`` builds the records:
   ``target_new`` another object of the kept facts of the relation (seeded per case),
   neighbourhood prompts the main prompt of up to 3 other subjects sharing the true object
   (then others), case ids ``"<relation>-<subject>"``, source ``"pararel:<relation>"``.

Hub loading is not offered: ParaRel/T-REx are folders of per-relation files, not one
table; ``dvc import-url`` the folder instead.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from ..io import InputError, read_jsonl
from .builtin import contains_word, records_from_pairs
from .common import case_where, drop, source_path, text

_Y_END = re.compile(r"\s*\[Y\]\s*\.?\s*$")
_REL_ID = re.compile(r"P[0-9]+")
DEFAULT_PER_RELATION = 100


def pattern_template(pattern: str) -> str | None:
    """A ParaRel pattern as a prompt template ("The capital of [X] is [Y] ." ->
    "The capital of {} is"), or None when [Y] does not end it."""
    m = _Y_END.search(pattern)
    if not m or pattern.count("[X]") != 1 or pattern.count("[Y]") != 1 or "{" in pattern or "}" in pattern:
        return None
    head = pattern[:m.start()].strip()
    return head.replace("[X]", "{}") if head and head != "[X]" else None


def relation_templates(path: Path) -> list[str]:
    """The relation's distinct [Y]-final templates, in file order."""
    out = []
    for i, row in enumerate(read_jsonl(path, verify=False)):
        where, _ = case_where(row, str(path), i, id_key=None)
        t = pattern_template(text(row, "pattern", where))
        if t is not None and t not in out:
            out.append(t)
    return out


def relation_pairs(path: Path, stats: dict, rel: str = "") -> list[tuple[str, str]]:
    """The relation's unambiguous (subject, object) facts, in file order."""
    objects: dict[str, set[str]] = {}
    order: list[tuple[str, str]] = []
    rows = read_jsonl(path, verify=False)
    stats["n_rows"] = stats.get("n_rows", 0) + len(rows)
    for i, row in enumerate(rows):
        where, _ = case_where(row, str(path), i, id_key=None)
        subj, obj = text(row, "sub_label", where), text(row, "obj_label", where)
        if subj not in objects:
            order.append((subj, obj))
        objects.setdefault(subj, set()).add(obj)
    out = []
    for subj, obj in order:
        if len(objects[subj]) > 1:
            drop(stats, "ambiguous_subject", f"{rel}-{subj}", f"{path}: subject {subj!r}")
        elif contains_word(subj, obj) or "{}" in subj:
            drop(stats, "subject_has_object", f"{rel}-{subj}", f"{path}: subject {subj!r} (object {obj!r})")
        else:
            out.append((subj, obj))
    return out


def _relations(root: Path, relations) -> list[str]:
    if relations is None:
        have = {p.stem for p in (root / "patterns").glob("P*.jsonl")} & {p.stem for p in (root / "trex").glob("P*.jsonl")}
        return sorted((r for r in have if _REL_ID.fullmatch(r)), key=lambda r: int(r[1:]))
    if not isinstance(relations, list) or not relations or not all(isinstance(r, str) for r in relations):
        raise InputError(f"fact source 'pararel': field 'relations' must be a non-empty list of relation "
                         f"ids, got {relations!r}")
    for r in relations:
        for sub in ("patterns", "trex"):
            if not _REL_ID.fullmatch(r) or not (root / sub / f"{r}.jsonl").is_file():
                raise InputError(f"fact source 'pararel': field 'relations': {r!r} has no file "
                                 f"{root / sub / (r + '.jsonl')}")
    return list(dict.fromkeys(relations))


def load_pararel(source: dict, stats: dict) -> tuple[list[dict], str]:
    """Records from ParaRel patterns and T-REx facts (see the module docstring)."""
    root = source_path(source, kind="dir")
    per_relation = source.get("per_relation", DEFAULT_PER_RELATION)
    seed = source.get("seed", 0)
    for key, value, least in (("per_relation", per_relation, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise InputError(f"fact source 'pararel': field {key!r} must be an integer >= {least}, got {value!r}")
    stats.setdefault("relations_skipped", [])
    records = []
    for rel in _relations(root, source.get("relations")):
        templates = relation_templates(root / "patterns" / f"{rel}.jsonl")
        if not templates:
            stats["relations_skipped"].append(rel)
            continue
        pairs = relation_pairs(root / "trex" / f"{rel}.jsonl", stats, rel)
        random.Random(f"{seed}:{rel}").shuffle(pairs)
        stats["n_usable_facts"] = stats.get("n_usable_facts", 0) + len(pairs)
        records += records_from_pairs(rel, templates[0], templates[1:], pairs[:per_relation], seed, f"pararel:{rel}")
    return records, str(root)
