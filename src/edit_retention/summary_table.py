"""summary.csv: its columns, writing it with the headline metrics (metrics.json), reading
it back, and its retention rows for ``dvc plots`` (retention.csv).

Usage::

    from edit_retention.summary_table import read_summary, write_summary
    write_summary(df, "data/results/summary.csv", "data/results/metrics.json")
    df = read_summary("data/results/summary.csv")

Columns (exactly): model, editor, task, remedy, seed, knowledge, phase, metric, value, n.
``knowledge`` is "edited", "intrinsic" or "task"; ``n`` is the denominator of ``value``
(empty in the CSV only for task metrics whose JSON gives no "eval_samples").
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .checksums import verify_file
from .io import InputError, atomic_path, write_json

COLUMNS = ["model", "editor", "task", "remedy", "seed", "knowledge", "phase", "metric", "value", "n"]


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """Summary rows as a frame: columns exactly ``COLUMNS``, value float, n nullable int."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["value"] = df["value"].astype("float64")
    df["n"] = df["n"].astype("Int64")
    return df


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
    verify_file(path)
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
