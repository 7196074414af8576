"""Raw per-prompt scores -> tidy long-format summary table + DVC headline metrics.

Usage::

    from edit_retention.summarize import summarize, write_summary
    cells = [{"model": "smollm2", "editor": "rome", "task": "text", "remedy": "none",
              "seed": 0,
              "phases": {"base": "base.jsonl", "edited": "edited.jsonl",
                         "finetuned": "ft.jsonl"},          # scores from score_items
              "task_metrics": "ft/eval.json"}]               # optional
    df = summarize(cells)
    write_summary(df, "data/results/summary.csv", "data/results/metrics.json")

Columns (exactly): model, editor, task, remedy, seed, knowledge, phase, metric, value, n.
``knowledge`` is "edited", "intrinsic" or "task"; ``n`` is the denominator of ``value``
(empty in the CSV only for task metrics whose JSON gives no "eval_samples").

Metrics per (knowledge, phase), on every phase of a cell. "Success" of a prompt is
``metrics.row_success``: the tracked target's mean token log-prob beats the
alternative's (edited: target_new over target_true; intrinsic, i.e. "the fact holds":
target_true over target_new; neighbourhood: the neighbour's true object over target_new).

    rewrite_success       share of facts whose main prompt succeeds (ES for edited)   n = facts
    paraphrase_success    mean over facts of the share of its held-out evaluation
                          paraphrases that succeed (ROME's PS: a macro average)       n = facts
    neighborhood_success  same macro average over neighbourhood prompts (NS; edited
                          knowledge only)                                             n = facts
    top1_accuracy         share of main prompts whose greedy next token is the
                          target's first token                                        n = facts
    target_prob           mean over facts of p_target (exp of mean token log-prob)
                          on the main prompt                                          n = facts

Extra metrics on every phase after editing (anything but "base" and "edited", i.e.
"finetuned" and checkpoints "step-N"), with *before* = the "edited" phase (after the
edit, before fine-tuning; for intrinsic knowledge too, so both kinds are measured over
the same fine-tuning):

    retention_rewrite     share of facts whose main prompt succeeded before and still
                          succeeds                                      n = facts succeeding before
    retention_paraphrase  the same PER PROMPT over evaluation paraphrases: share of
                          (fact, paraphrase) prompts succeeding before that still
                          succeed. Per prompt, not a per-fact majority vote, because a
                          vote over 2-4 paraphrases has tie/threshold artefacts.
                          (Prompts of one fact are correlated: binomial intervals on
                          this n are optimistic.)                       n = prompts succeeding before
    efr                   1 - retention_rewrite (edit forgetting rate)  n = as retention_rewrite
    target_prob_ratio     geometric mean over facts of p_target after / before on the
                          main prompt                                   n = facts

Protocols (``protocols``): the metrics above use the teacher-forced probability test. The
same success/retention metrics under the other protocols carry the protocol as a suffix,
so every existing column and metric name keeps its meaning:

    rewrite_success@P, paraphrase_success@P                        every phase
    retention_rewrite@P, retention_paraphrase@P, efr@P             phases after "edited"

for P = first_token (the row's ``top1``: greedy next token is the object's first token)
and P = generation_contains (the object, as whole words, in the row's greedy
``generation``; only when every rewrite/paraphrase row of every phase of the cell has
one, i.e. ``evaluate.generation_tokens`` > 0). Same n conventions as above; facts.csv
carries their units, so cells.csv intervals and the claims' tests read them unchanged.

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
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics as M
from . import protocols as P
from .bootstrap import N_BOOT
from .cells import LABELS, cell_table, remedy_traits, task_steps
from .phases import phase_order
from .problems import PROBLEM_COLUMNS, find_problems
from .health_table import health_problems, health_rows, health_table, read_health
from .io import InputError, atomic_path, read_json, read_jsonl, write_json

COLUMNS = ["model", "editor", "task", "remedy", "seed", "knowledge", "phase", "metric", "value", "n"]
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


def _by_fact(rows: dict) -> dict[str, list[dict]]:
    """Group {(case_id, index): row} by case_id."""
    out: dict[str, list[dict]] = defaultdict(list)
    for (cid, _), row in rows.items():
        out[cid].append(row)
    return out


def _macro_success(rows: dict, ok=M.row_success) -> tuple[float, int]:
    """Mean over facts of the share of their prompts that succeed (ROME's PS/NS)."""
    return M.mean(M.rate(ok(r) for r in fact_rows)[0] for fact_rows in _by_fact(rows).values())


def _judge(protocol: str):
    """(row -> success under ``protocol``, metric base name -> its name under it)."""
    return (lambda r: P.success(r, protocol)), (lambda m: P.metric_name(m, protocol))


def cell_protocols(tables: dict) -> list[str]:
    """The protocols every phase of a cell can be scored under: probability and first_token
    always, generation_contains when every rewrite/paraphrase row has a ``generation``."""
    rows = [r for t in tables.values() for (_, kind), b in t.items() if kind in ("rewrite", "paraphrase")
            for r in b.values()]
    return [p for p in P.PROTOCOLS if p != "generation_contains" or all("generation" in r for r in rows)]


def phase_metrics(table: dict, knowledge: str, protocol: str = P.PROBABILITY) -> list[tuple[str, float, int]]:
    """(metric, value, n) for one knowledge kind on one phase's scores (``protocol`` other
    than probability: only its rewrite/paraphrase success, suffixed)."""
    ok, name = _judge(protocol)
    rewrite = table.get((knowledge, "rewrite"), {})
    out = [
        (name("rewrite_success"), *M.rate(ok(r) for r in rewrite.values())),
        (name("paraphrase_success"), *_macro_success(table.get((knowledge, "paraphrase"), {}), ok)),
    ]
    if protocol != P.PROBABILITY:
        return out
    if knowledge == "edited":
        out.append(("neighborhood_success", *_macro_success(table.get((knowledge, "neighborhood"), {}))))
    out += [
        ("top1_accuracy", *M.rate(bool(r["top1"]) for r in rewrite.values())),
        ("target_prob", *M.mean(r["p_target"] for r in rewrite.values())),
    ]
    return out


def retention_metrics(before: dict, after: dict, knowledge: str, where: str,
                      protocol: str = P.PROBABILITY) -> list[tuple[str, float, int]]:
    """(metric, value, n) comparing a later phase's scores with the edited phase's
    (``protocol`` other than probability: retention and EFR only, suffixed)."""
    ok, name = _judge(protocol)

    def success(table, kind):
        return {k: ok(r) for k, r in table.get((knowledge, kind), {}).items()}

    def probs(table):
        return {k: r["p_target"] for k, r in table.get((knowledge, "rewrite"), {}).items()}

    try:
        ret_rw = M.retention(success(before, "rewrite"), success(after, "rewrite"))
        ret_pp = M.retention(success(before, "paraphrase"), success(after, "paraphrase"))
        ratio = M.prob_ratio(probs(before), probs(after))
    except InputError as e:
        raise InputError(f"{where}: {knowledge} facts: {e}") from e
    out = [(name("retention_rewrite"), *ret_rw), (name("retention_paraphrase"), *ret_pp),
           (name("efr"), 1.0 - ret_rw[0], ret_rw[1])]
    return out + ([("target_prob_ratio", *ratio)] if protocol == P.PROBABILITY else [])


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


def phase_units(table: dict, knowledge: str, protocol: str = P.PROBABILITY) -> list[tuple[str, str, float, float]]:
    """(metric, case_id, num, den) per fact for one phase: sum(num)/sum(den) over facts
    gives ``phase_metrics``' value (see ``bootstrap`` for how units are pooled)."""
    ok, name = _judge(protocol)
    plain = protocol == P.PROBABILITY
    out = []
    for (cid, _), r in table.get((knowledge, "rewrite"), {}).items():
        out.append((name("rewrite_success"), cid, float(ok(r)), 1.0))
        if plain:
            out += [("top1_accuracy", cid, float(bool(r["top1"])), 1.0),
                    ("target_prob", cid, float(r["p_target"]), 1.0)]
    kinds = [("paraphrase", "paraphrase_success")] + ([("neighborhood", "neighborhood_success")]
                                                       if knowledge == "edited" and plain else [])
    for kind, metric in kinds:
        for cid, rows in _by_fact(table.get((knowledge, kind), {})).items():
            out.append((name(metric), cid, M.rate(ok(r) for r in rows)[0], 1.0))
    return out


def retention_units(before: dict, after: dict, knowledge: str,
                    protocol: str = P.PROBABILITY) -> list[tuple[str, str, float, float]]:
    """(metric, case_id, num, den) per fact for the retention metrics of a later phase.

    Call after ``retention_metrics`` (which checks that every fact held before has an
    'after' score). Facts that did not hold before have no retention unit.
    """
    ok, name = _judge(protocol)
    out = []
    b_rw = before.get((knowledge, "rewrite"), {})
    a_rw = after.get((knowledge, "rewrite"), {})
    for key, row in b_rw.items():
        if ok(row):
            kept = float(ok(a_rw[key]))
            out += [(name("retention_rewrite"), key[0], kept, 1.0), (name("efr"), key[0], 1.0 - kept, 1.0)]
    a_pp = after.get((knowledge, "paraphrase"), {})
    held: dict = defaultdict(lambda: [0.0, 0.0])
    for key, row in before.get((knowledge, "paraphrase"), {}).items():
        if ok(row):
            held[key[0]][1] += 1
            held[key[0]][0] += float(ok(a_pp[key]))
    out += [(name("retention_paraphrase"), cid, k, n) for cid, (k, n) in held.items()]
    if protocol != P.PROBABILITY:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        for key, row in b_rw.items():
            out.append(("target_prob_ratio", key[0],
                        float(np.log(a_rw[key]["p_target"]) - np.log(row["p_target"])), 1.0))
    return out


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
    return _frame([row for i, cell in enumerate(cells) for row in cell_rows(cell, i)])


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["value"] = df["value"].astype("float64")
    df["n"] = df["n"].astype("Int64")
    return df


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
    summary = _frame(rows)
    u = pd.DataFrame(units, columns=LABELS + ["knowledge", "phase", "metric", "case_id", "num", "den"])
    relations = relations or {}
    u.insert(len(LABELS) + 4, "relation", [relations.get(str(c), "unknown") for c in u["case_id"]])
    cells_df = cell_table(u, summary, remedy_traits(remedies), task_steps(tasks), n_boot, seed)
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


def _pooled(df: pd.DataFrame, knowledge: str, phase: str, metric: str) -> float | None:
    """n-weighted mean of ``value`` over matching rows (pooled over facts); None if none."""
    sel = df[(df.knowledge == knowledge) & (df.phase == phase) & (df.metric == metric)]
    sel = sel[sel["n"].fillna(0).astype(int).gt(0) & sel["value"].notna()]
    total = int(sel["n"].sum()) if len(sel) else 0
    if total == 0:
        return None
    return float((sel["value"] * sel["n"].astype(float)).sum() / total)


def headline_metrics(df: pd.DataFrame) -> dict:
    """{editor: {remedy: {edited_retention, intrinsic_retention, edited_es_after_edit}}}.

    Values are pooled over model, task and seed, weighting each cell by its ``n`` (i.e.
    the share over all facts); ``None`` (JSON null) where there is nothing to count.
    """
    out: dict = {}
    for (editor, remedy), sub in df.groupby(["editor", "remedy"], sort=True):
        out.setdefault(str(editor), {})[str(remedy)] = {
            "edited_retention": _pooled(sub, "edited", "finetuned", "retention_rewrite"),
            "intrinsic_retention": _pooled(sub, "intrinsic", "finetuned", "retention_rewrite"),
            "edited_es_after_edit": _pooled(sub, "edited", "edited", "rewrite_success"),
        }
    return out


def write_summary(df: pd.DataFrame, csv_path: str | os.PathLike, metrics_path: str | os.PathLike) -> None:
    """Write the CSV (NaN written as "NaN") and the headline metrics JSON, atomically."""
    with atomic_path(csv_path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, na_rep="NaN")
    write_json(metrics_path, headline_metrics(df))


def read_summary(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Read a summary CSV back with the column dtypes ``summarize`` produces."""
    path = Path(csv_path)
    text_cols = {c: str for c in ("model", "editor", "task", "remedy", "knowledge", "phase", "metric")}
    df = pd.read_csv(path, keep_default_na=False, na_values={"value": ["NaN"], "n": ["NaN"]},
                     dtype=text_cols)
    if list(df.columns) != COLUMNS:
        raise InputError(f"{path}: columns {list(df.columns)} are not {COLUMNS}")
    df["value"] = df["value"].astype("float64")
    df["n"] = df["n"].astype("Int64")
    return df


def retention_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows for ``dvc plots``: retention_rewrite per grid cell and kind of knowledge."""
    ret = df[(df.metric == "retention_rewrite") & df.knowledge.isin(["edited", "intrinsic"])]
    cell = (ret.editor + "/" + ret.remedy + "/" + ret.task + "/s" + ret.seed.astype(str)
            + "/" + ret.knowledge)
    return pd.DataFrame({"cell": cell, "retention": ret.value, "n": ret.n}).reset_index(drop=True)
