"""What every fact loader shares: rows from a local file or the Hugging Face hub, fields
read with errors that name them, full prompts turned into templates.

A file-based source names its data in exactly one of two ways::

    {"type": ..., "path": "sources/counterfact.json"}                 # a local file
    {"type": ..., "path": "${data_root}/counterfact/counterfact.json"}  # under the study's data root
    {"type": ..., "hf": "owner/dataset", "split": "train", "revision": "<commit>"}  # the hub

Local files are JSON lists, or JSONL when the name ends in ``.jsonl``. Hub datasets are
read with ``datasets.load_dataset(hf, split=split, revision=revision)`` (split defaults
to "train"); that needs the ``datasets`` package and network access, so nothing in the
default study or the tests ever takes this branch. Pin ``revision`` to a commit: a hub
dataset can change under the same id and no pipeline stage would notice.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..io import InputError, read_json, read_jsonl

log = logging.getLogger(__name__)

# Keys of every file-based source (besides "type" and the dispatch keys).
FILE_KEYS = ("path", "hf", "split", "revision")
DEFAULT_SPLIT = "train"


def bump(stats: dict, key: str, n: int = 1) -> None:
    stats[key] = stats.get(key, 0) + n


# The one policy for rows a loader cannot use (``facts/__init__`` documents it). A row that
# breaks the file's format (a missing field, a wrong type) stops the load: the file is not
# what its type says. A well-formed case that cannot be an edit case is dropped, and its
# case id is recorded under the reason; ``bad_records: error`` turns the first drop into an
# InputError instead. Parts of a case that cannot be used (a rephrasing without the
# subject, a neighbour whose answer is the edit's target) are removed and recorded the
# same way but never stop the load.
DROP_REASONS = {
    "target_new_is_true": "the counterfactual target equals the true object (nothing to edit)",
    "subject_not_in_prompt": "the prompt does not contain the subject (no subject slot to edit)",
    "no_target_true": "no true object is given",
    "ambiguous_subject": "the subject is listed with two or more different objects",
    "subject_has_object": "the subject contains its object as a word",
    "min_paraphrases": "fewer distinct paraphrase templates than min_paraphrases",
}
REMOVE_REASONS = {
    "paraphrase_without_subject": "a rephrasing that does not contain the subject",
    "paraphrase_not_relation_template": "a rephrasing that does not end in a prompt template of the file "
                                        "(a generation prompt, not a paraphrase; rephrase_filter)",
    "neighbour_answers_target_new": "a neighbourhood prompt whose answer is the edit's target_new",
}
BAD_RECORDS = ("drop", "error")


def drop(stats: dict, reason: str, case_id, where: str = "") -> None:
    """Record that the case ``case_id`` is dropped for ``reason`` (a key of DROP_REASONS);
    under ``stats["bad_records"] == "error"`` raise an InputError naming it instead."""
    if stats.get("bad_records") == "error":
        raise InputError(f"{where or f'case {case_id!r}'}: {DROP_REASONS[reason]} ({reason}); "
                         f"the source's 'bad_records: error' makes this fatal (set 'drop' to drop and count such cases)")
    stats.setdefault("dropped", {}).setdefault(reason, []).append(str(case_id))


def remove(stats: dict, reason: str, case_id) -> None:
    """Record that one part (a paraphrase, a neighbour) of case ``case_id`` is removed."""
    stats.setdefault("removed", {}).setdefault(reason, []).append(str(case_id))


def n_dropped(stats: dict, reason: str) -> int:
    return len(stats.get("dropped", {}).get(reason, []))


def n_removed(stats: dict, reason: str) -> int:
    return len(stats.get("removed", {}).get(reason, []))


def source_path(source: dict, kind: str = "file") -> Path:
    """The source's existing ``path`` (a file, or a directory when ``kind="dir"``)."""
    name = source.get("type")
    if not isinstance(source.get("path"), str) or not source["path"]:
        raise InputError(f"fact source {name!r}: field 'path' is required (a {kind} path)")
    path = Path(source["path"])
    if not (path.is_dir() if kind == "dir" else path.is_file()):
        raise InputError(f"fact source {name!r}: {path}: no such {'directory' if kind == 'dir' else 'file'}")
    return path


def hub_rows(source: dict) -> tuple[list[dict], str]:
    """The rows of a hub dataset (``hf``, ``split``, ``revision``) and a name for messages."""
    name, hub_id = source.get("type"), source["hf"]
    split, revision = source.get("split", DEFAULT_SPLIT), source.get("revision")
    for key, value in (("hf", hub_id), ("split", split), ("revision", revision)):
        if value is not None and (not isinstance(value, str) or not value):
            raise InputError(f"fact source {name!r}: field {key!r} must be a non-empty string, got {value!r}")
    try:
        import datasets
    except ImportError as e:
        raise InputError(f"fact source {name!r}: 'hf: {hub_id}' needs the `datasets` package "
                         f"(pip install datasets), or download the file and give 'path'") from e
    if revision is None:
        log.warning("fact source %r: hub dataset %s is not pinned to a revision; set 'revision' to a "
                    "commit so that a change on the hub cannot pass unnoticed", name, hub_id)
    ds = datasets.load_dataset(hub_id, split=split, revision=revision)
    where = f"hf:{hub_id}[{split}]" + (f"@{revision}" if revision else "")
    return [dict(row) for row in ds], where


def source_rows(source: dict, what: str, jsonl: bool | None = None) -> tuple[list, str, str]:
    """(rows, where, tag) of a file-based source: ``where`` names the file (or hub dataset)
    in messages, ``tag`` goes into each record's ``source`` field. ``what`` says what a row
    is, for the message when the file is not a list. A local file is read as JSONL when
    ``jsonl`` is true, or is None and its name ends in ".jsonl"; else as one JSON list."""
    name = source.get("type")
    has_path, has_hf = "path" in source, "hf" in source
    if has_path == has_hf:
        raise InputError(f"fact source {name!r}: give exactly one of 'path' (a local file) "
                         f"and 'hf' (a Hugging Face hub dataset id)")
    if has_path:
        extra = [k for k in ("split", "revision") if k in source]
        if extra:
            raise InputError(f"fact source {name!r}: field {extra[0]!r} only goes with 'hf', not 'path'")
        path = source_path(source)
        if jsonl is None:
            jsonl = path.name.endswith(".jsonl")
        rows = read_jsonl(path, verify=False) if jsonl else read_json(path, verify=False)
        where, tag = str(path), path.name
    else:
        rows, where = hub_rows(source)
        tag = f"hf:{source['hf']}"
    if not isinstance(rows, list):
        raise InputError(f"{where}: expected a JSON list of {what}, got {type(rows).__name__}")
    return rows, where, tag


def field(case: Any, dotted: str, where: str, typ: type | tuple[type, ...] = str) -> Any:
    """``case[a][b]...`` for ``dotted`` = "a.b...", with an InputError naming the field."""
    obj = case
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise InputError(f"{where}: missing field {dotted!r}")
        obj = obj[part]
    if not isinstance(obj, typ) or isinstance(obj, bool):
        names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
        raise InputError(f"{where}: field {dotted!r} must be {names}, got {type(obj).__name__}")
    return obj


def text(case: Any, dotted: str, where: str) -> str:
    """A non-empty string field, stripped."""
    value = field(case, dotted, where).strip()
    if not value:
        raise InputError(f"{where}: field {dotted!r} is empty")
    return value


def texts(case: Any, key: str, where: str) -> list[str]:
    """A field that holds one string or a list of strings (EasyEdit writes both)."""
    value = field(case, key, where, (str, list))
    values = [value] if isinstance(value, str) else value
    for j, v in enumerate(values):
        if not isinstance(v, str):
            raise InputError(f"{where}: field '{key}[{j}]' must be a string, got {type(v).__name__}")
    return values


def case_where(case: Any, where_file: str, index: int, id_key: str | None = "case_id") -> tuple[str, Any]:
    """The message prefix of one row ("FILE: record I (case_id X)") and its case id (or None)."""
    where = f"{where_file}: record {index}"
    if not isinstance(case, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(case).__name__}")
    case_id = None
    if id_key and id_key in case:
        case_id = field(case, id_key, where, (int, str))
        where += f" (case_id {case_id!r})"
    return where, case_id


RELATION_RULES = {
    "template": "a file without relation ids: the relation is the case's prompt template with the "
                "subject blanked, \"template:<template>\" (CounterFact and zsRE word each relation "
                "with a few fixed templates, so facts sharing a template share a relation)",
}


def template_relation(template: str) -> str:
    """The relation of a case whose file has none: its prompt template, whitespace collapsed."""
    return "template:" + " ".join(template.split())


def to_template(text: str, subject: str) -> str | None:
    """A full prompt as a template: the subject's last occurrence becomes "{}" (None if absent)."""
    i = text.rfind(subject)
    if i < 0:
        return None
    template = (text[:i] + "{}" + text[i + len(subject):]).strip()
    return template if template.count("{}") == 1 else None
