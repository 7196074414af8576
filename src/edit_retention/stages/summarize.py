"""summarize: raw scores of every cell -> summary.csv, metrics.json, cells.csv (with
intervals), facts.csv (per-fact units), problems.csv and retention.csv."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from ..io import InputError, atomic_path
from ..phases import phase_order
from ..summarize import relations_of, summarize_all, write_results
from ..summary_table import retention_table

log = logging.getLogger(__name__)


def parse_cell(s: str) -> dict:
    """Parse ``--cell k=v,...``: labels, phase files (base, edited, step-<N>, finetuned)
    and task_metrics; phases keep the order base, edited, step-N by N, finetuned."""
    try:
        cell = dict(kv.split("=", 1) for kv in s.split(","))
    except ValueError:
        raise InputError(f"--cell {s!r}: expected comma-separated key=value pairs") from None
    keys = [k for k in cell if k in ("base", "edited", "finetuned") or re.fullmatch(r"step-\d+", k)]
    cell["phases"] = {p: cell.pop(p) for p in sorted(keys, key=phase_order)}
    try:
        cell["seed"] = int(cell.get("seed", 0))
    except ValueError:
        raise InputError(f"--cell {s!r}: seed {cell.get('seed')!r} is not an integer") from None
    return cell


def run(a) -> None:
    res = summarize_all([parse_cell(c) for c in a.cell], relations_of(a.records), a.remedies, a.tasks,
                        allow_missing=a.allow_missing, n_boot=a.n_boot, seed=a.seed, health_thresholds=a.health)
    out = Path(a.out_csv).parent
    write_results(res, a.out_csv, a.out_metrics, a.out_cells or out / "cells.csv",
                  a.out_facts or out / "facts.csv", a.out_problems or out / "problems.csv",
                  a.out_health or out / "health.csv")
    with atomic_path(Path(a.out_csv).with_name("retention.csv"), suffix=".csv") as tmp:
        retention_table(res.summary).to_csv(tmp, index=False)
    for _, p in res.problems.iterrows():
        log.warning("problem: %s", " ".join(str(v) for v in p.to_dict().values() if str(v) not in ("", "nan")))
