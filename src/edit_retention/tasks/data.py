"""Task data: sources -> train / held-out examples, filtered against the facts.

A task's data are *examples* (dicts in the task's own normalised fields, e.g. GSM8K's
``question``/``answer``). ``build_task_data`` turns a source into train and held-out
examples:

    {"type": "builtin", ...}                         the task's offline default generator
    {"type": "file", "path": P, "eval_path": Q}      a local file in the data set's original
                                                     format (.json list, .jsonl, .tsv/.csv with
                                                     a header); eval_path (optional) is the
                                                     held-out split, else n_eval rows of P
    {"type": "hf", "id": ID, "config": C, "split": "train", "eval_split": "test",
     "revision": R}                                  the Hugging Face hub via ``datasets`` (not a
                                                     dependency of the default study; never
                                                     called by the tests)

``fields`` (optional, every source type) renames columns: {"sentence": "text"} reads the
task's ``sentence`` field from a column called ``text``.

Every example whose text mentions (whole words, any case) a fact's subject, true object
or new object is dropped (``corpus.mention_filter``: the task must not teach or unteach
the facts under study), then duplicates; the rest is shuffled with ``seed``; the first
``n_eval`` are held out (unless an eval split is given) and the next ``n_train`` train.
A missing field, a bad value or zero usable rows is an ``InputError`` naming the file,
the record and the field.
"""
from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from ..fields import check_source_keys
from ..io import InputError, read_json, read_jsonl, read_utf8

# type -> the keys it accepts besides "type" and "fields" (Task.source_keys adds those of a
# task's own builtin generator)
SOURCE_KEYS = {
    "builtin": (),
    "file": ("path", "eval_path"),
    "hf": ("id", "config", "split", "eval_split", "revision"),
}


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a local file in its original format: JSON list, JSONL, TSV or CSV with header."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"task data: file {str(path)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(p, verify=False)
    elif suffix == ".json":
        rows = read_json(p, verify=False)
        if isinstance(rows, dict) and isinstance(rows.get("data"), list):
            rows = rows["data"]
        if not isinstance(rows, list):
            raise InputError(f"{p}: expected a JSON list of records")
    elif suffix in (".tsv", ".csv"):
        rows = list(csv.DictReader(io.StringIO(read_utf8(p, verify=False), newline=""), delimiter="\t" if suffix == ".tsv" else ",",
                                   quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL))
    else:
        raise InputError(f"{p}: unknown file format {suffix!r} (known: .json, .jsonl, .tsv, .csv)")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise InputError(f"{p}: record {i}: expected an object, got {type(r).__name__}")
    return rows


def load_hf_rows(source: dict, split: str) -> list[dict]:
    """Rows of a Hugging Face hub data set split (needs the ``datasets`` package)."""
    try:
        import datasets
    except ImportError as e:
        raise InputError("task source 'hf' needs the `datasets` package (pip install datasets); "
                         "it is not a dependency of the default study") from e
    kw = {"revision": source["revision"]} if source.get("revision") else {}
    ds = datasets.load_dataset(source["id"], source.get("config"), split=split, **kw)
    return [dict(r) for r in ds]


def check_source(task, source: dict, where: str) -> None:
    """A task's source: its type and keys (``task.source_keys()``), the keys it needs."""
    kind = check_source_keys(source, task.source_keys(), where, "task source")
    if kind == "file" and not isinstance(source.get("path"), str):
        raise InputError(f"{where}: task source 'file' needs 'path'")
    if kind == "hf" and not isinstance(source.get("id"), str):
        raise InputError(f"{where}: task source 'hf' needs 'id'")
    if "fields" in source and not (isinstance(source["fields"], dict)
                                   and all(isinstance(v, str) for v in source["fields"].values())):
        raise InputError(f"{where}: task source field 'fields' must map task fields to column names")


def _normalise_rows(task, rows: list[dict], fields: dict, name: str) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        if fields:
            row = {**row, **{k: row.get(col) for k, col in fields.items()}}
        out.append(task.normalise(row, f"{name}: record {i}"))
    return out


def source_examples(task, source: dict, n_hint: int, seed: int) -> tuple[list[dict], list[dict] | None, str]:
    """(examples, held-out examples or None, a name for messages)."""
    kind, fields = source["type"], source.get("fields") or {}
    if kind == "builtin":
        return task.builtin(source, n_hint, seed), None, f"builtin {task.type} generator"
    if kind == "file":
        main = _normalise_rows(task, read_rows(source["path"]), fields, source["path"])
        held = (_normalise_rows(task, read_rows(source["eval_path"]), fields, source["eval_path"])
                if source.get("eval_path") else None)
        return main, held, source["path"]
    name = f"hf:{source['id']}"
    main = _normalise_rows(task, load_hf_rows(source, source.get("split", "train")), fields, name)
    held = (_normalise_rows(task, load_hf_rows(source, source["eval_split"]), fields, f"{name}[{source['eval_split']}]")
            if source.get("eval_split") else None)
    return main, held, name


def build_task_data(task, source: dict, records: list[dict], n_train: int, n_eval: int,
                    seed: int = 0) -> dict:
    """{"train": [...], "eval": [...], "meta": {...}} for a task (see the module docstring)."""
    from ..corpus import filter_terms, mention_filter

    check_source(task, source, f"task {task.type}")
    for key, n in (("n_train", n_train), ("n_eval", n_eval)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InputError(f"task {task.type}: {key} must be an integer >= 1, got {n!r}")
    examples, held, name = source_examples(task, source, n_train + n_eval, seed)
    mentions = mention_filter(filter_terms(records))
    stats = {}

    def clean(rows, label):
        seen, kept, dropped, unusable = set(), [], 0, 0
        for ex in rows:
            if not task.usable(ex):
                unusable += 1
                continue
            text = task.text_of(ex)
            if mentions(text):
                dropped += 1
                continue
            if text not in seen:
                seen.add(text)
                kept.append(ex)
        stats[label] = {"n_rows": len(rows), "n_unusable": unusable, "n_dropped_by_filter": dropped,
                        "n_usable": len(kept)}
        if not kept:
            raise InputError(f"task {task.type}: {name}{'' if label == 'main' else ' (eval split)'}: zero usable "
                             f"rows ({len(rows)} read, {unusable} empty, {dropped} mention a fact)")
        return kept

    kept = clean(examples, "main")
    random.Random(seed).shuffle(kept)
    if held is not None:
        held_kept = clean(held, "eval")
        random.Random(seed).shuffle(held_kept)
        evals = held_kept[:n_eval]
        # an example in both splits stays only in the held-out one
        held_texts = {task.text_of(e) for e in evals}
        train = [e for e in kept if task.text_of(e) not in held_texts][:n_train]
    else:
        evals, train = kept[:n_eval], kept[n_eval:n_eval + n_train]
    if len(train) < n_train or len(evals) < n_eval:
        raise InputError(f"task {task.type}: {name}: {len(train)} training and {len(evals)} held-out usable "
                         f"examples, but n_train={n_train}, n_eval={n_eval} were asked for ({stats})")
    meta = {"task_type": task.type, "source": source, "seed": seed, "n_train": n_train, "n_eval": n_eval,
            **{f"{k}_{label}": v for label, s in stats.items() for k, v in s.items()}}
    return {"train": train, "eval": evals, "meta": meta}


def check_examples(task, rows: list[dict], path: str) -> list[dict]:
    """Examples read back from a task-data JSONL (checked, in order)."""
    out = [task.normalise(r, f"{path}: record {i}") for i, r in enumerate(rows)]
    if not out:
        raise InputError(f"{path}: zero examples")
    return out
