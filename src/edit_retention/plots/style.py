"""The one figure style: greys, hatches, markers and line styles readable in black and white.

Every figure module builds a ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state)
with these helpers, so a change here restyles every figure and a change in one figure's
module restyles (and, in Snakemake, reruns) only that figure.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..io import InputError, atomic_path

KNOWLEDGE = {
    "edited": {"color": "0.3", "hatch": "//", "linestyle": "-", "marker": "o", "label": "edited",
               "line": "black", "band_hatch": "////"},
    "intrinsic": {"color": "0.85", "hatch": "..", "linestyle": "--", "marker": "s", "label": "intrinsic",
                  "line": "0.4", "band_hatch": "...."},
}
# Series other than edited/intrinsic (editors, methods, freezing strategies), in order.
SERIES = [
    {"color": "0.2", "hatch": "//", "linestyle": "-", "marker": "o"},
    {"color": "0.6", "hatch": "\\\\", "linestyle": "--", "marker": "s"},
    {"color": "0.9", "hatch": "xx", "linestyle": ":", "marker": "^"},
    {"color": "0.45", "hatch": "..", "linestyle": "-.", "marker": "D"},
    {"color": "0.75", "hatch": "++", "linestyle": (0, (5, 1)), "marker": "v"},
    {"color": "1.0", "hatch": "oo", "linestyle": (0, (1, 3)), "marker": "P"},
]
FONT = {"title": 9, "label": 8, "tick": 7, "note": 6}
RETENTION_LABEL = "retention after fine-tuning\n(share of facts that held before)"


def series_style(i: int) -> dict:
    return SERIES[i % len(SERIES)]


def grid(n_rows: int, n_cols: int, width: float = 3.4, height: float = 2.9) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(4.0, width * n_cols), height * n_rows), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.flat:
        ax.tick_params(labelsize=FONT["tick"])
    return fig, axes


def not_in_grid(title: str, reason: str) -> Figure:
    """A one-panel figure saying what this study's grid lacks (never an error)."""
    fig = Figure(figsize=(5.0, 2.2), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.62, "not in this grid", ha="center", va="center", fontsize=12, weight="bold")
    ax.text(0.5, 0.32, reason, ha="center", va="center", fontsize=FONT["label"], wrap=True)
    fig.suptitle(title, fontsize=FONT["title"])
    return fig


def legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend for the figure, above the panels, from the first panel that has handles."""
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 4),
                       fontsize=FONT["label"], frameon=False)
            return


def errbar(ax, x, row_values, row_lo, row_hi, **kw) -> None:
    v, lo, hi = (np.asarray(a, float) for a in (row_values, row_lo, row_hi))
    ok = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.errorbar(np.asarray(x, float)[ok], v[ok], yerr=[v[ok] - lo[ok], hi[ok] - v[ok]], fmt="none",
                    ecolor="black", capsize=3, linewidth=0.8, **kw)


def bars(ax, groups: list[str], series: list[tuple[str, dict, pd.DataFrame]], ylim=(0, 1.15),
         n_label: str = "n") -> None:
    """Grouped bars with CI whiskers and n labels.

    ``series``: (label, style, rows indexed by group with value/ci_low/ci_high/n).
    A missing value is drawn as an empty slot labelled "n/a"; n = 0 as "n=0". ``n_label``
    names the count column shown above each bar ("n", or "n_seeds" for task scores).
    """
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for j, (label, st, rows) in enumerate(series):
        pos = x + (j - (len(series) - 1) / 2) * width
        get = lambda col: np.array([rows[col].get(g, np.nan) if col in rows else np.nan for g in groups], float)
        vals, lo, hi, n = get("value"), get("ci_low"), get("ci_high"), get(n_label)
        tag = "n" if n_label == "n" else "seeds"
        ax.bar(pos, np.nan_to_num(vals), width, color=st["color"], hatch=st["hatch"], edgecolor="black",
               linewidth=0.6, label=label)
        errbar(ax, pos, vals, lo, hi)
        for p, v, top, k in zip(pos, vals, hi, n):
            if np.isnan(v):
                ax.text(p, 0.02, "n/a" if np.isnan(k) else f"{tag}={int(k)}", ha="center", va="bottom",
                        fontsize=FONT["note"], rotation=90)
            else:
                y = top if np.isfinite(top) else v
                ax.annotate(f"{tag}={int(k)}", (p, y), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=FONT["note"])
    ax.set_xticks(x, groups, fontsize=FONT["tick"])
    if ylim:
        ax.set_ylim(*ylim)


def line_with_band(ax, x, v, lo, hi, st: dict, label: str) -> None:
    """A curve with its CI as a hatched band (visible without colour)."""
    x, v, lo, hi = (np.asarray(a, float) for a in (x, v, lo, hi))
    ok = np.isfinite(v)
    ax.plot(x[ok], v[ok], color=st.get("line", "black"), linestyle=st["linestyle"], marker=st["marker"],
            markerfacecolor=st["color"], markeredgecolor="black", label=label, linewidth=1.2)
    band = ok & np.isfinite(lo) & np.isfinite(hi)
    if band.sum() >= 2:
        ax.fill_between(x[band], lo[band], hi[band], facecolor="none", edgecolor=st.get("line", "black"),
                        hatch=st.get("band_hatch", "////"), linewidth=0.0, alpha=0.5)
    elif band.any():
        errbar(ax, x[band], v[band], lo[band], hi[band])


def facets(cells: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One (title, rows) per (model, task), in order of appearance."""
    return [(f"{m} / {t}", sub) for (m, t), sub in cells.groupby(["model", "task"], sort=False)]


def baseline(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows of baseline remedies: no paraphrases, no freezing, full fine-tuning (by definition)."""
    return cells[(cells["paraphrase_k"] == 0) & (cells["freeze"] == "none") & (cells["method"] == "full")]


def traits_known(cells: pd.DataFrame) -> bool:
    return "paraphrase_k" in cells and cells["paraphrase_k"].notna().any()


def retention(cells: pd.DataFrame, phase: str = "finetuned", knowledge=("edited", "intrinsic")) -> pd.DataFrame:
    return cells[(cells["metric"] == "retention_rewrite") & (cells["phase"] == phase)
                 & cells["knowledge"].isin(list(knowledge))]


def task_score(cells: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """The downstream score rows to show beside retention: the task's own ``task_score``
    (perplexity, accuracy or exact match, by task), else eval_perplexity, eval_loss,
    accuracy / exact match, else the first task metric (not *_before, not eval_samples)."""
    task = cells[(cells["knowledge"] == "task") & (cells["phase"] == "finetuned")]
    names = list(dict.fromkeys(task["metric"]))
    for pref in ("task_score", "eval_perplexity", "eval_loss", "eval_accuracy", "accuracy", "eval_exact_match",
                 "exact_match"):
        if pref in names:
            return pref, task[task["metric"] == pref]
    rest = [n for n in names if not n.endswith("_before") and n != "eval_samples"]
    return (rest[0], task[task["metric"] == rest[0]]) if rest else (None, task.iloc[0:0])


def score_label(cells: pd.DataFrame, name: str) -> str:
    """The name to print for score rows ``name``: for ``task_score``, the task's own metric
    that it copies (eval_perplexity, label_accuracy, exact_match, ...) when one matches."""
    if name != "task_score":
        return name
    task = cells[(cells["knowledge"] == "task") & (cells["phase"] == "finetuned")]
    keys = ["model", "editor", "task", "remedy"]
    ref = task[task["metric"] == name].set_index(keys)["value"]
    for other in dict.fromkeys(task["metric"]):
        if other in (name, "eval_samples", "eval_loss") or other.endswith("_before"):
            continue
        vals = task[task["metric"] == other].set_index(keys)["value"].reindex(ref.index)
        if len(ref) and bool(np.isclose(vals, ref, equal_nan=False).all()):
            return other
    return name


def save(fig: Figure, png: str | os.PathLike, pdf: str | os.PathLike) -> list[Path]:
    """Write the figure as PNG and PDF, atomically (PDF without a creation date)."""
    out = []
    for path, ext in ((png, "png"), (pdf, "pdf")):
        if not path:
            continue
        path = Path(path)
        if path.suffix != f".{ext}":
            raise InputError(f"figure output {path}: expected a .{ext} file name")
        meta = {"CreationDate": None} if ext == "pdf" else {}
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, metadata=meta)
        out.append(path)
    return out
