"""A failed run leaves what was built before it (issue 14, item 4).

Snakemake deletes a job's old outputs when the job starts, and the outputs of a job that
fails after that. A typo found only inside a job (a corpus that filters to too few
passages, a fact file with a bad record) would then cost the built artifact it was meant to
replace. These hooks keep that artifact:

* ``snapshot`` (workflow ``onstart``, after the DAG is built, before any job): hard-links
  every existing output of every job that will run into ``.snakemake/kept_outputs/`` and
  remembers its Snakemake metadata record. Hard links cost no copy and no space; our stages
  never write into an existing file (they write a new one and rename it), so the link keeps
  the old bytes.
* ``restore`` (``onerror``, also after Ctrl-C): every kept output that is missing at the end
  of the failed run (its job failed) or marked incomplete (its job was interrupted) is moved
  back, with its file and folder times and its
  metadata record as they were before the run, so the next run decides about it exactly as
  it would have before this one. Outputs that jobs rebuilt are left as built.
* ``discard`` (``onsuccess``): drops the links.

Not kept: temporary outputs (Snakemake removes them on purpose), outputs marked incomplete
(an interrupted job's leftovers are not "built") and outputs on another file system than
``.snakemake`` (no hard link possible; named in one warning line).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

KEPT_DIR = "kept_outputs"


def _relative(path: str) -> Path:
    p = Path(path)
    return Path(*p.parts[1:]) if p.is_absolute() else p


def _link_tree(src: Path, dst: Path) -> dict[str, tuple[int, int]]:
    """Hard-link ``src`` (a file or a folder) to ``dst``; returns the folders' times."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not src.is_dir() or src.is_symlink():
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            os.link(src, dst)
        return {}
    times = {}
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        st = os.stat(folder)
        times[str(rel)] = (st.st_atime_ns, st.st_mtime_ns)
        for name in files + [d for d in dirs if (Path(folder) / d).is_symlink()]:
            s = Path(folder) / name
            if s.is_symlink():
                os.symlink(os.readlink(s), dst / rel / name)
            else:
                os.link(s, dst / rel / name)
    return times


def snapshot(workflow, log=print) -> dict:
    """Keep every existing output of the jobs about to run; returns what restore needs."""
    from snakemake.io import is_flagged

    persistence = workflow.persistence
    root = Path(persistence.path) / KEPT_DIR
    shutil.rmtree(root, ignore_errors=True)
    kept, elsewhere = {}, []
    for job in workflow.dag.needrun_jobs():
        for f in job.output:
            path = str(f)
            if path in kept or is_flagged(f, "temp") or not os.path.lexists(path):
                continue
            key = persistence._get_key(f)
            if persistence._filter_incomplete_keys([key]):
                continue
            dst = root / _relative(path)
            try:
                times = _link_tree(Path(path), dst)
            except OSError:
                shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else None
                elsewhere.append(path)
                continue
            kept[path] = {"key": key, "record": persistence.metadata(f), "dirs": times,
                          "kept": dst}
    if elsewhere:
        log(f"Not kept in case a job fails (not on the file system of {persistence.path}): "
            + ", ".join(elsewhere[:5]) + (f" and {len(elsewhere) - 5} more" if len(elsewhere) > 5 else ""))
    return kept


def restore(workflow, kept: dict, log=print) -> list[str]:
    """Put back each kept output that the run left missing; returns their paths."""
    persistence = workflow.persistence
    restored = []
    for path, k in kept.items():
        if not os.path.lexists(k["kept"]):
            continue
        if os.path.lexists(path):
            # Present: rebuilt by a job that finished (kept as built), or left by a job that
            # was interrupted (Snakemake marks it incomplete and keeps it): that one goes.
            if not persistence._filter_incomplete_keys([k["key"]]):
                continue
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        os.rename(k["kept"], path)
        for rel, (atime, mtime) in sorted(k["dirs"].items(), key=lambda kv: -len(Path(kv[0]).parts)):
            os.utime(Path(path) / rel, ns=(atime, mtime))
        if k["record"] is None:
            persistence._delete_record(k["key"])
        else:
            persistence._write_record(k["key"], k["record"])
        persistence._unmark_incomplete(k["key"])
        restored.append(path)
    persistence._clear_cache()
    discard(workflow)
    if restored:
        log(f"Kept what was built before this run: restored {len(restored)} output(s) of failed or "
            "interrupted jobs as they were (files, times, Snakemake metadata): "
            + ", ".join(restored[:10]) + (f" and {len(restored) - 10} more" if len(restored) > 10 else ""))
    return restored


def discard(workflow) -> None:
    shutil.rmtree(Path(workflow.persistence.path) / KEPT_DIR, ignore_errors=True)
