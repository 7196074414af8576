"""Raw per-prompt scores of every cell -> tidy long-format summary rows, and the tables
built from them (facts.csv, cells.csv, problems.csv, health.csv).

Usage::

    from edit_retention.summarize import summarize
    from edit_retention.summary_table import write_summary
    cells = [{"model": "smollm2", "editor": "rome", "task": "text", "remedy": "none",
              "seed": 0,
              "phases": {"base": "base.jsonl", "edited": "edited.jsonl",
                         "finetuned": "ft.jsonl"},          # scores from score_items
              "task_metrics": "ft/eval.json"}]               # optional
    df = summarize(cells)
    write_summary(df, "data/results/summary.csv", "data/results/metrics.json")

Rows have the columns of summary.csv (``summary_table``). Each (knowledge, phase) of a
cell gets the metrics of ``phase_metrics``; every phase after "edited" also gets the
retention metrics measured against the "edited" phase, under every protocol the cell's
scores allow (``phase_metrics.cell_protocols``).

Task metrics (optional JSON dict of numbers, e.g. {"eval_loss": .., "eval_perplexity":
..}) become rows with knowledge "task", phase "finetuned", metric = the JSON key.

The base phase is usually one scores file shared by every cell; its rows are repeated
under each cell's labels (same values), so filter on phase before pooling over cells.
NaN values (no fact to count) stay NaN with n = 0; they are never dropped.

Phases are ordered base, edited, step-<N> (fine-tuning checkpoints, by N), finetuned.

Beyond summary.csv (``summarize_all`` / ``write_results``; the CLI writes all of them):

    facts.csv     one *unit* per (cell, seed, knowledge, phase, metric, fact): case_id,
                  relation, num, den, with sum(num)/sum(den) = the summary value (exp of
                  it for target_prob_ratio). The input of every interval and test.
    cells.csv     one row per (model, editor, task, remedy, knowledge, phase, metric),
                  pooled over seeds: value, std, seed_std, 95% ci_low/ci_high (two-way
                  bootstrap over facts and seeds, see ``bootstrap``), n, n_facts,
                  n_seeds, seeds, and the remedy's traits (paraphrase_k, freeze, method
                  from the remedies config; n_edits; the phase's fine-tuning step).
    problems.csv  every n = 0 cell, NaN value, missing seed, failed cell (with
                  ``allow_missing``), fact without a relation: named, never averaged away.

CIs live in cells.csv, not in new summary.csv columns: summary.csv keeps its exact
columns (per seed, one value each) for every existing consumer, and an interval over
facts and seeds belongs to the seed-pooled cell, not to one seed's row.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from .bootstrap import N_BOOT
from .cells import LABELS, cell_table, remedy_traits, task_step_tokens, task_steps
from .phase_metrics import cell_protocols, phase_metrics, phase_units, retention_metrics, retention_units
from .phases import phase_order
from .problems import PROBLEM_COLUMNS, find_problems
from .health_table import health_problems, health_rows, health_table, read_health
from .io import InputError, atomic_path, read_json, read_jsonl
from .summary_table import summary_frame, write_summary

PRE_FINETUNE_PHASES = ("base", "edited")
SCORE_FIELDS = ("case_id", "knowledge", "kind", "index", "lp_target", "n_target", "lp_alt",
                "n_alt", "p_target", "top1")


def _cell_name(cell: dict, i: int) -> str:
    return f"cell {i} (" + "/".join(f"{k}={cell.get(k)}" for k in LABELS) + ")"


def load_scores(path: str | os.PathLike, where: str = "") -> dict:
    """Read a scores JSONL into {(knowledge, kind): {(case_id, index): row}}; check it."""
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{where}: scores file {path} is empty")
    table: dict = defaultdict(dict)
    for i, row in enumerate(rows):
        for field in SCORE_FIELDS:
            if field not in row:
                raise InputError(f"{where}: {path}: row {i} has no field {field!r}")
        key = (row["case_id"], int(row["index"]))
        bucket = table[(row["knowledge"], row["kind"])]
        if key in bucket:
            raise InputError(f"{where}: {path}: row {i} repeats {row['knowledge']} {row['kind']} {key}")
        bucket[key] = row
    return table


def task_metric_rows(path: str | os.PathLike, where: str) -> list[tuple[str, float, int | None]]:
    """(metric, value, n) from a task-metrics JSON; n = its "eval_samples" if given."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{where}: task metrics {path}: expected a JSON object")
    n = data.get("eval_samples")
    n = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) else None
    out = []
    for key, value in data.items():
        if value is None:
            value = math.nan
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: task metrics {path}: field {key!r} is not a number: {value!r}")
        out.append((key, float(value), n))
    return out


def _ordered_phases(phases: dict) -> list[str]:
    """base, edited, step-N (by N), finetuned, then any other phase by name."""
    return sorted(phases, key=phase_order)


def _cell_tables(cell: dict, i: int):
    for key in LABELS + ["phases"]:
        if key not in cell:
            raise InputError(f"cell {i}: missing field {key!r}")
    where = _cell_name(cell, i)
    phases = cell["phases"]
    if not isinstance(phases, dict) or not phases:
        raise InputError(f"{where}: field 'phases' must be a non-empty mapping phase -> scores file")
    for p in phases:
        if phase_order(p)[0] == 4:
            raise InputError(f"{where}: unknown phase {p!r} (base | edited | step-<N> | finetuned)")
    tables = {p: load_scores(phases[p], f"{where} phase {p!r}") for p in _ordered_phases(phases)}
    late = [p for p in tables if p not in PRE_FINETUNE_PHASES]
    if late and "edited" not in tables:
        raise InputError(f"{where}: phases {late} need an 'edited' phase to measure retention against")
    return where, tables, late


def cell_rows(cell: dict, i: int = 0, units: list | None = None) -> list[dict]:
    """All summary rows of one cell (see the module docstring); per-fact units appended to
    ``units`` (dicts with the cell's labels, knowledge, phase, metric, case_id, num, den)."""
    where, tables, late = _cell_tables(cell, i)
    labels = {k: cell[k] for k in LABELS}
    protocols = cell_protocols(tables)
    out = []
    for phase, table in tables.items():
        for knowledge in ("edited", "intrinsic"):
            stats = [s for p in protocols for s in phase_metrics(table, knowledge, p)]
            if phase in late:
                stats += [s for p in protocols for s in
                          retention_metrics(tables["edited"], table, knowledge, f"{where} phase {phase!r}", p)]
            out += [dict(labels, knowledge=knowledge, phase=phase, metric=m, value=v, n=n) for m, v, n in stats]
            if units is not None:
                got = [u for p in protocols for u in phase_units(table, knowledge, p)]
                if phase in late:
                    got += [u for p in protocols for u in retention_units(tables["edited"], table, knowledge, p)]
                units += [dict(labels, knowledge=knowledge, phase=phase, metric=m, case_id=c, num=a, den=b)
                          for m, c, a, b in got]
    if cell.get("task_metrics"):
        out += [dict(labels, knowledge="task", phase="finetuned", metric=m, value=v, n=n)
                for m, v, n in task_metric_rows(cell["task_metrics"], where)]
    if cell.get("health"):
        h_rows, h_units = health_rows(read_health(cell["health"], where), labels)
        out += h_rows
        if units is not None:
            units += h_units
    return out


def summarize(cells: list[dict]) -> pd.DataFrame:
    """Long-format summary of all cells, columns exactly ``COLUMNS``."""
    return summary_frame([row for i, cell in enumerate(cells) for row in cell_rows(cell, i)])


@dataclass
class Results:
    """Everything ``summarize_all`` produces (see ``write_results``)."""
    summary: pd.DataFrame
    units: pd.DataFrame
    cells: pd.DataFrame
    problems: pd.DataFrame
    health: pd.DataFrame | None = None


def relations_of(records_paths) -> dict[str, str]:
    """{case_id: relation} from fact-record JSONL files (e.g. data/facts/<f>/records.jsonl)."""
    out: dict[str, str] = {}
    for path in records_paths or []:
        for j, rec in enumerate(read_jsonl(path)):
            if "case_id" not in rec or "relation" not in rec:
                raise InputError(f"{path}: record {j} has no 'case_id' or 'relation'")
            out[str(rec["case_id"])] = str(rec["relation"])
    return out


def summarize_all(cells: list[dict], relations: dict | None = None, remedies: dict | None = None,
                  tasks: dict | None = None, allow_missing: bool = False, n_boot: int = N_BOOT,
                  seed: int = 0, health_thresholds: dict | None = None) -> Results:
    """Summary + per-fact units + cell table with CIs + problems, for the given cells.

    ``relations`` maps case_id -> relation (facts without one are in stratum "unknown",
    named under problems). ``remedies`` / ``tasks`` are the study config's sections; they
    give each cell its remedy's paraphrase_k / freeze / method and each phase its step.
    ``allow_missing``: a cell whose scores or task metrics cannot be read (a failed seed)
    is left out and named under problems instead of stopping the summary.
    ``health_thresholds``: the gate's thresholds (``health.THRESHOLDS`` where not given) for
    the edit-health table of the cells that name a health file.
    """
    rows, units, problems = [], [], []
    for i, cell in enumerate(cells):
        got: list = []
        try:
            rows += cell_rows(cell, i, got)
        except (InputError, OSError) as e:
            if not allow_missing:
                raise
            problems.append(dict({k: cell.get(k) for k in LABELS}, knowledge="", phase="", metric="",
                                 problem=f"cell failed, left out: {e}"))
            continue
        units += got
    summary = summary_frame(rows)
    u = pd.DataFrame(units, columns=LABELS + ["knowledge", "phase", "metric", "case_id", "num", "den"])
    relations = relations or {}
    u.insert(len(LABELS) + 4, "relation", [relations.get(str(c), "unknown") for c in u["case_id"]])
    cells_df = cell_table(u, summary, remedy_traits(remedies), task_steps(tasks), n_boot, seed,
                          step_tokens=task_step_tokens(tasks))
    problems += find_problems(summary, u, cells, remedies, relations)
    health = health_table(cells, health_thresholds)
    problems += health_problems(health)
    return Results(summary, u, cells_df, pd.DataFrame(problems, columns=PROBLEM_COLUMNS), health)


def write_results(res: Results, csv_path, metrics_path, cells_path=None, units_path=None,
                  problems_path=None, health_path=None) -> None:
    """summary.csv + metrics.json (as ``write_summary``), cells.csv, facts.csv, problems.csv,
    health.csv."""
    write_summary(res.summary, csv_path, metrics_path)
    for df, path in ((res.cells, cells_path), (res.units, units_path), (res.problems, problems_path),
                     (res.health, health_path)):
        if path:
            with atomic_path(path, suffix=".csv") as tmp:
                df.to_csv(tmp, index=False, na_rep="NaN", float_format="%.10g")
