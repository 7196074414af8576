"""Source paths under the study's data root.

Data root: a source ``path`` may start with ``${data_root}/`` (or be ``${data_root}``);
that prefix stands for the top-level ``data_root`` key (absolute, or relative to the
directory the pipeline runs in, the repository root), so a study can name files in a
shared data folder without hard-coding where it lives::

    data_root: ../shared/datasets          # or: snakemake --config data_root=/data/er
    facts:
      cf: {source: {type: counterfact, path: "${data_root}/counterfact/counterfact_500.json"}}

``resolve_source`` / ``source_files`` do the substitution; the Snakefile's input
functions and the fact loaders (``facts.load_facts(..., data_root=)``) both use them, so
the file Snakemake watches is the file the loader reads.
"""
from __future__ import annotations

from pathlib import Path

from .io import InputError

DATA_ROOT = "${data_root}"


def resolve_data_root(path: str, data_root: str | None, where: str = "path") -> str:
    """``path`` with a leading ``${data_root}`` replaced by ``data_root`` (unchanged when it
    has none); InputError when ``data_root`` is unset or the placeholder is not a prefix."""
    if DATA_ROOT not in path:
        return path
    if not (path == DATA_ROOT or path.startswith(DATA_ROOT + "/")) or path.count(DATA_ROOT) > 1:
        raise InputError(f"{where}: {DATA_ROOT} may only start a path ('{DATA_ROOT}/...'), got {path!r}")
    if not isinstance(data_root, str) or not data_root:
        raise InputError(f"{where}: {path!r} uses {DATA_ROOT}, but no data root is set (top-level "
                         f"key data_root in the study config, or --config data_root=DIR)")
    if path == DATA_ROOT:
        return data_root
    return data_root.rstrip("/") + path[len(DATA_ROOT):]


def resolve_source(source, data_root: str | None, where: str = "source"):
    """A copy of a source mapping with its ``path`` resolved (anything else is returned as is)."""
    if isinstance(source, dict) and isinstance(source.get("path"), str):
        return {**source, "path": resolve_data_root(source["path"], data_root, f"{where}: path")}
    return source


def source_files(source, data_root: str | None = None) -> list[str]:
    """Local files a source reads (its resolved ``path``; every file under it when it is a
    directory, hidden ones aside), so that editing one reruns its dependants. Sources
    without a path (builtin, hub datasets) read none."""
    source = resolve_source(source, data_root)
    path = source.get("path") if isinstance(source, dict) else None
    if not isinstance(path, str) or not path:
        return []
    p = Path(path)
    if p.is_dir():
        return sorted(str(f) for f in p.rglob("*")
                      if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
    return [path]


def check_files(source, data_root: str | None, where: str) -> None:
    """Every local file a source reads exists, is UTF-8 and, for JSON and JSONL, parses (the
    readers name the file and line); formats read by other libraries (Parquet, Arrow) are
    left to the loader. The records' fields are the loader's (its job names the record)."""
    from .io import read_json, read_jsonl, read_utf8

    parsers = {".jsonl": read_jsonl, ".json": read_json, ".csv": read_utf8, ".tsv": read_utf8, ".txt": read_utf8}
    resolved = resolve_source(source, data_root, where)
    path = resolved.get("path") if isinstance(resolved, dict) else None
    if not isinstance(path, str) or not path:
        return
    if not Path(path).exists():
        raise InputError(f"{where}: path: no such file or folder {path!r}")
    for f in source_files(source, data_root):
        parse = parsers.get(Path(f).suffix.lower())
        if parse is not None:
            try:
                parse(f, verify=False)
            except InputError as e:
                raise InputError(f"{where}: {e}") from e
