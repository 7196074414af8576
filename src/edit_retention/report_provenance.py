"""results.md's provenance: the grid that produced the numbers, the code's git commit, the
models (source, weight hashes) and the fact files (hash, load report).

Usage::

    from edit_retention.report_provenance import fact_versions, git_commit, model_versions
    versions_section(model_versions(["data/models/m/base"]), fact_versions(["records.jsonl"]),
                     git_commit("."))
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from .report_format import md_table


def git_commit(cwd: str | os.PathLike = ".") -> str:
    """HEAD's commit (with "+dirty" when tracked files differ), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_versions(dirs) -> list[dict]:
    """Per prepared model folder: its source.json (what was loaded, from where) and the
    sha256 of its weight files."""
    out = []
    for d in dirs or []:
        d = Path(d)
        src = d / "source.json"
        entry = {"path": str(d), "source": json.loads(src.read_text()) if src.exists() else "unknown (no source.json)"}
        weights = sorted(d.glob("*.safetensors"))
        entry["weights_sha256"] = {w.name: _sha256(w)[:16] for w in weights}
        out.append(entry)
    return out


def fact_versions(paths) -> list[dict]:
    """Per fact file: number of records, sha256, and the load report written beside it
    (``load_report.json`` of prepare-facts: drops by reason, relation strata), if any."""
    out = []
    for p in paths or []:
        p = Path(p)
        if p.exists():
            n = sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
            rep = p.parent / "load_report.json"
            out.append({"path": str(p), "records": n, "sha256": _sha256(p)[:16],
                        "load": json.loads(rep.read_text()) if rep.exists() else None})
        else:
            out.append({"path": str(p), "records": None, "sha256": "missing"})
    return out


def grid_section(config: dict) -> str:
    g = config.get("grid", {})
    rows = [[k, ", ".join(map(str, v)) if isinstance(v, list) else str(v)] for k, v in g.items()]
    text = md_table(["axis", "values"], rows)
    rem = config.get("remedies", {})
    used = g.get("remedies", list(rem))
    if rem:
        text += "\n\nRemedies (definitions used to find each claim's cells):\n\n" + md_table(
            ["remedy", "definition"], [[r, json.dumps(rem.get(r), sort_keys=True)] for r in used])
    tasks = config.get("tasks", {})
    if tasks:
        text += "\n\nTasks:\n\n" + md_table(["task", "definition"],
                                            [[t, json.dumps(tasks.get(t), sort_keys=True)] for t in g.get("tasks", tasks)])
    other = {k: config[k] for k in ("edit", "select", "paraphrase", "device") if k in config}
    if other:
        text += "\n\nOther settings: `" + json.dumps(other, sort_keys=True) + "`"
    return text


def versions_section(models: list[dict], facts: list[dict], commit: str) -> str:
    out = [f"- code: git commit `{commit}`"]
    for m in models:
        out.append(f"- model `{m['path']}`: source `{json.dumps(m['source'], sort_keys=True)}`; weights sha256 "
                   + (", ".join(f"{k} {v}" for k, v in m["weights_sha256"].items()) or "n/a"))
    for f in facts:
        out.append(f"- facts `{f['path']}`: {f['records']} records, sha256 {f['sha256']}")
        out += load_lines(f.get("load"))
    return "\n".join(out)


def _ids(ids: list, most: int = 20) -> str:
    return ", ".join(ids[:most]) + (f", ... (+{len(ids) - most} more in load_report.json)" if len(ids) > most else "")


def load_lines(load: dict | None) -> list[str]:
    """The fact load report (``facts.load_report``) as bullet lines: drops and removals by
    reason with case ids, the relation rule and strata, notes."""
    if not load:
        return []
    out = [f"  - loaded {load.get('n_rows')} rows -> {load.get('n_records')} records (bad_records: "
           f"{load.get('bad_records')})"]
    for key, what in (("dropped", "cases dropped"), ("removed", "parts removed")):
        for reason, d in load.get(key, {}).items():
            out.append(f"  - {what}, {reason} ({d['meaning']}): {d['n']}; case ids {_ids(d['case_ids'])}")
        if not load.get(key):
            out.append(f"  - {what}: none")
    rel = load.get("relations", {})
    out.append(f"  - relation strata: {rel.get('n_strata')} ({rel.get('n_singleton_strata')} with one fact), "
               f"rule `{rel.get('rule')}`: {rel.get('meaning')}")
    out += [f"  - note: {n}" for n in load.get("notes", [])]
    return out
