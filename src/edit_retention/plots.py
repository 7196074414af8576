"""Figures from the summary table, as PNG and PDF, readable in black and white.

Usage::

    from edit_retention.plots import make_figures
    paths = make_figures("data/results/summary.csv", "figures")

Figures (each one panel row per (model, task) in the summary; values pooled over seeds
by summing counts, k = round(value * n); error bars are 95% Wilson intervals from the
pooled k and n; base-phase rows identical across seeds (one shared file) count once):

    retention_by_editor  retention_rewrite after fine-tuning, edited vs intrinsic
                         knowledge, per editor, remedy "none"
    remedies             the same per remedy ("none", "paraphrase", "freeze", then any
                         other remedy in the table), one panel per editor
    phases               rewrite_success over base -> edited -> (step-N) -> finetuned,
                         edited vs intrinsic, one panel per editor, remedy "none"

Edited knowledge is dark grey with "//" hatching (solid line), intrinsic light grey
with ".." hatching (dashed line). Figures are built with ``matplotlib.figure.Figure``
(Agg canvas, no pyplot state) and written atomically.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import metrics as M
from .io import InputError, atomic_path
from .summarize import read_summary

STYLE = {
    "edited": {"color": "0.3", "hatch": "//", "linestyle": "-", "marker": "o", "label": "edited"},
    "intrinsic": {"color": "0.8", "hatch": "..", "linestyle": "--", "marker": "s", "label": "intrinsic"},
}
REMEDY_ORDER = ("none", "paraphrase", "freeze")
BASELINE_REMEDY = "none"


def _pool(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Pool value/n over seeds: k = sum(round(value * n)), n = sum(n); add Wilson bounds."""
    df = df[df["n"].fillna(0).astype(int).gt(0) & df["value"].notna()].copy()
    df["k"] = (df["value"] * df["n"].astype(float)).round()
    cols = ["k", "n"]
    out = df.groupby(by, sort=False)[cols].sum().reset_index() if len(df) else pd.DataFrame(columns=by + cols)
    out["n"] = out["n"].astype(int)
    out["value"] = out["k"] / out["n"]
    bounds = [M.wilson_ci(k, n) for k, n in zip(out["k"], out["n"])]
    out["lo"] = [b[0] for b in bounds]
    out["hi"] = [b[1] for b in bounds]
    return out


def _select(df: pd.DataFrame, metric: str, phase: str | None = None, remedy: str | None = None) -> pd.DataFrame:
    sel = df[(df.metric == metric) & df.knowledge.isin(list(STYLE))]
    if phase is not None:
        sel = sel[sel.phase == phase]
    if remedy is not None:
        sel = sel[sel.remedy == remedy]
    if sel.empty:
        raise InputError(
            f"summary has no rows for metric {metric!r}"
            + (f", phase {phase!r}" if phase else "") + (f", remedy {remedy!r}" if remedy else "")
        )
    return sel


def _facets(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One (title, rows) per (model, task), in order of appearance."""
    return [(f"{m} / {t}", sub) for (m, t), sub in df.groupby(["model", "task"], sort=False)]


def _remedies(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["remedy"]))
    return [r for r in REMEDY_ORDER if r in present] + sorted(r for r in present if r not in REMEDY_ORDER)


def _phase_key(phase: str) -> tuple:
    m = re.fullmatch(r"step-(\d+)", phase)
    if phase == "base":
        return (0, 0)
    if phase == "edited":
        return (1, 0)
    if m:
        return (2, int(m.group(1)))
    if phase == "finetuned":
        return (3, 0)
    return (4, phase)


def _bars(ax, pooled: pd.DataFrame, groups: list[str], group_col: str) -> None:
    """Grouped bars: one group per value of ``group_col``, one bar per knowledge kind."""
    x = np.arange(len(groups))
    width = 0.38
    for j, knowledge in enumerate(STYLE):
        st = STYLE[knowledge]
        sub = pooled[pooled.knowledge == knowledge].set_index(group_col)
        vals = np.array([sub["value"].get(g, np.nan) for g in groups], dtype=float)
        lo = np.array([sub["lo"].get(g, np.nan) for g in groups], dtype=float)
        hi = np.array([sub["hi"].get(g, np.nan) for g in groups], dtype=float)
        pos = x + (j - 0.5) * width
        ax.bar(pos, np.nan_to_num(vals), width, color=st["color"], hatch=st["hatch"],
               edgecolor="black", linewidth=0.6, label=st["label"])
        ok = ~np.isnan(vals)
        ax.errorbar(pos[ok], vals[ok], yerr=[vals[ok] - lo[ok], hi[ok] - vals[ok]],
                    fmt="none", ecolor="black", capsize=3, linewidth=0.8)
        for p, g, v, top in zip(pos, groups, vals, hi):
            if np.isnan(v):
                ax.text(p, 0.02, "n/a", ha="center", va="bottom", fontsize=6)
            else:
                ax.text(p, top + 0.01, f"n={int(sub['n'][g])}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.12)


def _grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(4.0, 3.2 * n_cols), 3.0 * n_rows), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    return fig, axes


def _legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend for the whole figure, above the panels (never over the data)."""
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=len(labels), fontsize=8, frameon=False)


def fig_retention_by_editor(df: pd.DataFrame) -> Figure:
    """(a) edited vs intrinsic retention_rewrite per editor, remedy "none"."""
    sel = _select(df, "retention_rewrite", "finetuned", BASELINE_REMEDY)
    facets = _facets(sel)
    fig, axes = _grid(len(facets), 1)
    for ax, (title, sub) in zip(axes[:, 0], facets):
        editors = list(dict.fromkeys(sub["editor"]))
        _bars(ax, _pool(sub, ["editor", "knowledge"]), editors, "editor")
        ax.set_title(f"{title} (remedy: {BASELINE_REMEDY})", fontsize=9)
        ax.set_ylabel("retention after fine-tuning")
    _legend(fig, axes)
    return fig


def fig_remedies(df: pd.DataFrame) -> Figure:
    """(b) edited vs intrinsic retention_rewrite per remedy, one panel per editor."""
    sel = _select(df, "retention_rewrite", "finetuned")
    facets = _facets(sel)
    editors = list(dict.fromkeys(sel["editor"]))
    fig, axes = _grid(len(facets), len(editors))
    for r, (title, sub) in enumerate(facets):
        for c, editor in enumerate(editors):
            ed = sub[sub.editor == editor]
            _bars(axes[r, c], _pool(ed, ["remedy", "knowledge"]), _remedies(sel), "remedy")
            axes[r, c].set_title(f"{title}: {editor}", fontsize=9)
        axes[r, 0].set_ylabel("retention after fine-tuning")
    _legend(fig, axes)
    return fig


def fig_phases(df: pd.DataFrame) -> Figure:
    """(c) rewrite_success across phases, edited vs intrinsic, one panel per editor."""
    sel = _select(df, "rewrite_success", remedy=BASELINE_REMEDY)
    # The base phase is one shared scores file whose rows summarize repeats per cell:
    # count identical base rows once, or pooling over seeds would inflate n.
    sel = sel[~((sel.phase == "base") & sel.drop(columns="seed").duplicated())]
    facets = _facets(sel)
    editors = list(dict.fromkeys(sel["editor"]))
    phases = sorted(dict.fromkeys(sel["phase"]), key=_phase_key)
    fig, axes = _grid(len(facets), len(editors))
    for r, (title, sub) in enumerate(facets):
        for c, editor in enumerate(editors):
            ax = axes[r, c]
            pooled = _pool(sub[sub.editor == editor], ["phase", "knowledge"])
            for knowledge, st in STYLE.items():
                p = pooled[pooled.knowledge == knowledge].set_index("phase").reindex(phases)
                x = np.arange(len(phases))
                ax.errorbar(x, p["value"], yerr=[p["value"] - p["lo"], p["hi"] - p["value"]],
                            color="black" if knowledge == "edited" else "0.45", linestyle=st["linestyle"],
                            marker=st["marker"], markerfacecolor=st["color"], capsize=3, label=st["label"])
            ax.set_xticks(np.arange(len(phases)), phases)
            ax.set_ylim(-0.02, 1.05)
            ax.set_title(f"{title}: {editor}", fontsize=9)
        axes[r, 0].set_ylabel("rewrite success (fact holds)")
    _legend(fig, axes)
    return fig


FIGURES = {"retention_by_editor": fig_retention_by_editor, "remedies": fig_remedies, "phases": fig_phases}


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf atomically; return their paths."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(out_dir) / f"{name}.{ext}"
        meta = {"CreationDate": None} if ext == "pdf" else {}
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, metadata=meta)
        paths.append(path)
    return paths


def make_figures(summary_csv: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Render every figure in ``FIGURES`` from the summary CSV; return the written paths."""
    df = read_summary(summary_csv)
    paths: list[Path] = []
    for name, build in FIGURES.items():
        paths += save_figure(build(df), out_dir, name)
    return paths
