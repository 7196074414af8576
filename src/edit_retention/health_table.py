"""Edit health in the results: summary rows, per-fact units and the gate's table.

Each cell names the health file of its edit (``edit_health`` stage, ``health.py``). Its
measures become summary rows on phase "edited" (metric ``health_<measure>``; knowledge
"intrinsic" for control agreement, "edited" for the rest), and the per-fact ones units,
so cells.csv gives them intervals like every other metric. ``health_table`` is one row per
edit (model, editor, paraphrase_k) with the gate's verdict (``health.gate``) under the
study's thresholds: data/results/health.csv, read by the claims and results.md.
"""
from __future__ import annotations

import math

import pandas as pd

from .health import MEASURES, THRESHOLDS, gate
from .io import InputError, read_json

PER_FACT = {"control_agreement": "intrinsic", "first_token_es": "edited", "neighborhood_agreement": "edited"}
PER_EDIT = {"ppl_ratio": "n_texts", "delta_rel_norm": None}
COUNT_METRICS = {f"health_{m}" for m in PER_FACT}
HEALTH_COLUMNS = ["model", "editor", "paraphrase_k", "regime", "batch_size", "n_requests", *MEASURES,
                  "healthy", "problems", "cells"]
UNHEALTHY = "edit unhealthy"


def read_health(path, where: str) -> dict:
    h = read_json(path)
    missing = [k for k in (*MEASURES, "per_fact") if not isinstance(h, dict) or k not in h]
    if missing:
        raise InputError(f"{where}: health file {path} lacks {missing} (rerun the edit_health rule)")
    return h


def health_rows(h: dict, labels: dict) -> tuple[list[dict], list[dict]]:
    """(summary rows, units) of one cell's edit health, phase "edited"."""
    rows, units = [], []
    for m, knowledge in PER_FACT.items():
        rows.append(dict(labels, knowledge=knowledge, phase="edited", metric=f"health_{m}", value=float(h[m]),
                         n=int(h.get(f"n_{m}", 0))))
        units += [dict(labels, knowledge=knowledge, phase="edited", metric=f"health_{m}", case_id=cid,
                       num=float(hits), den=float(n)) for cid, (hits, n) in h["per_fact"][m].items()]
    for m, n_key in PER_EDIT.items():
        v = h[m]
        rows.append(dict(labels, knowledge="edited", phase="edited", metric=f"health_{m}",
                         value=math.nan if v is None else float(v), n=int(h.get(n_key, 1)) if n_key else 1))
    return rows, units


def health_table(cells: list[dict], thresholds: dict | None = None) -> pd.DataFrame:
    """One row per edit the cells use (those that name a health file), with the verdict."""
    t = {**THRESHOLDS, **{k: v for k, v in (thresholds or {}).items() if k in THRESHOLDS}}
    by_file: dict[str, dict] = {}
    for c in cells:
        if not c.get("health"):
            continue
        e = by_file.setdefault(c["health"], {"model": c["model"], "editor": c["editor"], "cells": []})
        e["cells"].append("/".join(str(c[k]) for k in ("model", "editor", "task", "remedy")) + f"/s{c['seed']}")
    rows = []
    for path, e in by_file.items():
        h = read_health(path, f"{e['model']}/{e['editor']}")
        problems = gate(h, t)
        rows.append({"model": e["model"], "editor": e["editor"], "paraphrase_k": h.get("k"),
                     "regime": h.get("regime"), "batch_size": h.get("batch_size"), "n_requests": h.get("n_requests"),
                     **{m: h[m] for m in MEASURES}, "healthy": not problems, "problems": "; ".join(problems),
                     "cells": " ".join(sorted(set(e["cells"])))})
    return pd.DataFrame(rows, columns=HEALTH_COLUMNS)


def health_problems(table: pd.DataFrame) -> list[dict]:
    """problems.csv rows: every edit that fails the gate, named with its reasons."""
    return [{"model": r.model, "editor": r.editor, "task": "", "remedy": "", "seed": "", "knowledge": "edited",
             "phase": "edited", "metric": "health",
             "problem": f"{UNHEALTHY} (k={r.paraphrase_k}, regime {r.regime}): {r.problems}; claims about its "
                        "cells are withheld"} for r in table.itertuples() if not r.healthy]


def unhealthy_scopes(table: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """{(model, editor): reasons} of every editor with an edit that fails the gate."""
    if table is None or table.empty:
        return {}
    out: dict[tuple[str, str], list[str]] = {}
    for r in table.itertuples():
        if not bool(r.healthy):
            out.setdefault((r.model, r.editor), []).append(f"k={r.paraphrase_k}: {r.problems}")
    return {k: "; ".join(v) for k, v in out.items()}
