"""Atomic file I/O: nothing half-written is ever left under a final name.

Every writer writes to a temporary sibling and renames it into place with os.replace,
so a crash mid-write leaves either the old file or no file, never a truncated one.
JSONL goes through the ``jsonlines`` library; a bad line is reported with its file and
line number. The module imports only the standard library at load time (corpus.py imports it
in an interpreter without site-packages), so jsonlines is imported where it is used.

Artifacts hold no wall-clock timings (``TIMING_KEYS``), so that two identical runs write
byte-identical artifacts: ``without_timings`` takes them out of a log before it is written
and puts them in the job's log (stderr, ``logs/<rule>/...``) as one "timings of ..." line.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .checksums import drop_sidecar, verify_file, wants_sidecar, write_manifest, write_sidecar
from .errors import InputError  # noqa: F401  (the error every module raises, defined without imports)




def _clear_stale(path: Path) -> None:
    """Remove temporaries a killed writer of ``path`` left behind (``.name.*.tmp``); one
    writer per output at a time (Snakemake's guarantee), so none of them is live."""
    for old in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o644)
    try:
        yield tmp
        checked = wants_sidecar(path)   # JSONL/CSV/JSON data files: checksums.verify_file on read
        if checked:
            drop_sidecar(path)
        os.replace(tmp, path)
        if checked:
            write_sidecar(path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success write its checksum manifest
    (``checksums.MANIFEST``) and swap it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        write_manifest(tmp)             # checksums.verify checks it on load
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


TIMING_KEYS = frozenset({"seconds", "train_seconds", "batch_seconds", "seconds_per_request", "s_per_step"})


def split_timings(obj: Any, path: str = "") -> tuple[Any, dict[str, Any]]:
    """(``obj`` without ``TIMING_KEYS`` at any depth, {dotted key path: value} of those)."""
    timings: dict[str, Any] = {}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in TIMING_KEYS:
                timings[f"{path}{k}"] = v
            else:
                out[k], inner = split_timings(v, f"{path}{k}.")
                timings.update(inner)
        return out, timings
    if isinstance(obj, list):
        pairs = [split_timings(v, f"{path}{i}.") for i, v in enumerate(obj)]
        for _, inner in pairs:
            timings.update(inner)
        return [v for v, _ in pairs], timings
    return obj, timings


def without_timings(obj: Any, what: str) -> Any:
    """``obj`` less its wall-clock timings, which go to the job's log instead."""
    out, timings = split_timings(obj)
    if timings:
        logging.getLogger("edit_retention.timings").info("timings of %s: %s", what, json.dumps(timings, sort_keys=True))
    return out


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_utf8(path: str | os.PathLike, verify: bool = True) -> str:
    """A text file's content; InputError naming the file, line and byte when it is not UTF-8.
    ``verify``: check the checksum sidecar of an artifact (off for a source: a file the user
    may edit by hand, even one the pipeline once wrote)."""
    data = Path(path).read_bytes()
    if verify:
        verify_file(path, data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}: line {line} (byte {e.start}) is not valid UTF-8 ({e.reason}: "
                         f"{data[e.start:e.end]!r}); save the file as UTF-8") from e


def read_json(path: str | os.PathLike, verify: bool = True) -> Any:
    try:
        return json.loads(read_utf8(path, verify))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from e


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """One JSON object per line, keys sorted, non-ASCII kept as UTF-8."""
    import jsonlines

    with atomic_path(path) as tmp:
        with jsonlines.open(tmp, mode="w", dumps=_JSONL_DUMPS) as writer:
            writer.write_all(rows)


_JSONL_DUMPS = functools.partial(json.dumps, ensure_ascii=False, sort_keys=True)


def read_jsonl(path: str | os.PathLike, verify: bool = True) -> list[dict]:
    """Every JSON object of a JSONL file, in order (blank lines are skipped)."""
    import jsonlines

    data = Path(path).read_bytes()     # read once: hashed against the sidecar, then parsed
    if verify:
        verify_file(path, data)
    try:
        with jsonlines.Reader(io.BytesIO(data), loads=json.loads) as reader:
            return list(reader.iter(type=dict, skip_empty=True))
    except jsonlines.InvalidLineError as e:
        cause = e.__cause__
        if isinstance(cause, json.JSONDecodeError):
            raise InputError(f"{path}: line {e.lineno} is not valid JSON: {cause.msg}") from e
        if isinstance(cause, UnicodeDecodeError):
            raise InputError(f"{path}: line {e.lineno} is not valid UTF-8: {cause.reason}") from e
        raise InputError(f"{path}: line {e.lineno} is not a JSON object: {_clip(e.line)}") from e


def _clip(line: str | bytes, n: int = 60) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def read_texts(path: str | os.PathLike) -> list[str]:
    """The ``text`` field of every row of a JSONL file (corpus passages)."""
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        if not isinstance(r.get("text"), str):
            raise InputError(f"{path}: record {i}: missing string field 'text'")
    return [r["text"] for r in rows]
