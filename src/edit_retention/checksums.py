"""Content checksums of folder artifacts, written when their job finishes and checked on load.

Snakemake tracks a folder output (a model, an edit, layer statistics) by its time stamp, so
a truncated or hand-edited file inside it is invisible to the plan. Every folder a job
writes through ``io.atomic_dir`` (and the layer statistics folder) therefore holds
``MANIFEST.sha256``, in ``sha256sum`` format (``sha256sum -c MANIFEST.sha256`` checks it by
hand), and the loaders call ``verify`` before they read: a file whose bytes differ, or
that is missing, is named with the command that rebuilds it. A folder without a manifest
(a model folder of the user's, artifacts from before manifests) is read as it is.

Single data files a job writes (JSONL, CSV, JSON: scores, records, summaries) get a hidden
sidecar ``.<name>.sha256`` next to them (``write_sidecar``, called by ``io.atomic_path``),
checked by the readers (``verify_file``): a truncated scores file is named the same way. A
file without a sidecar (an input of the user's) is read as it is.

Standard library only (io imports it; the error comes from ``errors``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import InputError

MANIFEST = "MANIFEST.sha256"
_seen: dict[tuple[str, int, int], str] = {}     # (path, size, mtime_ns) -> digest, within one process


def digest(path: str | os.PathLike) -> str:
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _seen:
        with open(p, "rb") as f:
            _seen[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _seen[key]


def write_manifest(folder: str | os.PathLike) -> Path:
    """Write ``folder/MANIFEST.sha256`` over every file below ``folder`` (sorted paths)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{digest(p)}  {p.relative_to(folder).as_posix()}\n" for p in files]
    out = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text("".join(lines))
    os.replace(tmp, out)
    return out


def read_manifest(folder: Path) -> dict[str, str] | None:
    m = folder / MANIFEST
    if not m.is_file():
        return None
    out = {}
    for line in m.read_text().splitlines():
        h, _, rel = line.partition("  ")
        if rel:
            out[rel] = h
    return out


def verify(path: str | os.PathLike) -> None:
    """Check a folder artifact (every file its manifest lists) or one file of it against the
    manifest; InputError naming the file and the rebuild command on a mismatch."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    entries = read_manifest(folder)
    if entries is None:
        return
    if not path.is_dir():
        rel = path.name
        entries = {rel: entries[rel]} if rel in entries else {}
    for rel, h in entries.items():
        f = folder / rel
        what = "is missing" if not f.is_file() else ("differs from" if digest(f) != h else None)
        if what:
            raise InputError(f"{f}: damaged or changed since its job wrote it ({what} the SHA-256 in "
                             f"{folder / MANIFEST}); rebuild it: snakemake --cores all --forcerun {folder}")


SIDECAR_SUFFIXES = frozenset({".jsonl", ".csv", ".json"})


def sidecar(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.parent / f".{p.name}.sha256"


def wants_sidecar(path: str | os.PathLike) -> bool:
    """A data file written on its own (not inside a folder artifact, which has a manifest)."""
    p = Path(path)
    parent = p.parent.name
    in_folder_artifact = parent.startswith(".") and parent.endswith(".tmp")
    return p.suffix in SIDECAR_SUFFIXES and not in_folder_artifact


def drop_sidecar(path: str | os.PathLike) -> None:
    """Before a file is replaced: a crash between the two writes leaves a file without a
    sidecar (read as it is), never a new file with the old checksum."""
    sidecar(path).unlink(missing_ok=True)


def write_sidecar(path: str | os.PathLike) -> None:
    p = Path(path)
    tmp = p.parent / f".{p.name}.sha256.tmp"
    tmp.write_text(f"{digest(p)}  {p.name}\n")
    os.replace(tmp, sidecar(p))


def verify_file(path: str | os.PathLike, data: bytes | None = None) -> None:
    """Check a single data file against its sidecar, when it has one (``data``: its bytes,
    already read, to hash without reading again)."""
    side = sidecar(path)
    if not side.is_file():
        return
    want = side.read_text().partition("  ")[0]
    got = hashlib.sha256(data).hexdigest() if data is not None else digest(path)
    if got != want:
        raise InputError(f"{path}: damaged or changed since its job wrote it (differs from the SHA-256 in "
                         f"{side}); rebuild it: snakemake --cores all --forcerun {path}")
