"""Figures from the cell table (data/results/cells.csv), as PNG and PDF, black-and-white readable.

Usage::

    from edit_retention.plots import make_figure, make_figures, FIGURES
    make_figure("retention_by_editor", "data/results/cells.csv",
                "figures/retention_by_editor.png", "figures/retention_by_editor.pdf",
                fits="data/results/elasticity.json")        # fits: optional fitted curves
    make_figures("data/results/cells.csv", "figures")      # all of them

One module per figure (``build(cells, fits) -> Figure``), all drawn with ``style``; a
figure whose cells the grid lacks renders a "not in this grid" panel, never an error.

    retention_by_editor     1 edited vs intrinsic retention per editor x protocol x task (bars, 95% CI)
    retention_vs_steps      2 retention vs fine-tuning step, edited vs intrinsic (bands)
    retention_vs_k          3 edited retention vs paraphrase count k, per editor
    freezing                4 retention per freezing strategy, downstream score beside it
    methods                 5 full vs LoRA vs DoRA fine-tuning, downstream score beside it
    retention_vs_edit_size  6 edited retention vs edit-set size, per editor
    retention_vs_tokens     7 retention vs fine-tuning tokens (log x), one panel per protocol

Which cells each figure uses is decided by the remedy traits in cells.csv
(paraphrase_k, freeze, method; from the remedies config), never by remedy names.
Intervals are the two-way (facts x seeds) bootstrap intervals of ``bootstrap``.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..io import InputError, read_json
from ..tables import read_table
from . import style

FIGURES = ["retention_by_editor", "retention_vs_steps", "retention_vs_k", "freezing", "methods",
           "retention_vs_edit_size", "retention_vs_tokens"]


def build(name: str, cells, fits: list | None = None):
    if name not in FIGURES:
        raise InputError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.build(cells, fits or [])


def _fits(path) -> list:
    if not path:
        return []
    data = read_json(path)
    return data.get("curves", []) if isinstance(data, dict) else data


def make_figure(name: str, cells_csv: str | os.PathLike, png: str | os.PathLike, pdf: str | os.PathLike,
                fits: str | os.PathLike | None = None) -> list[Path]:
    """Render one figure from cells.csv (and elasticity.json) to ``png`` and ``pdf``."""
    fig = build(name, read_table(cells_csv), _fits(fits))
    return style.save(fig, png, pdf)


def make_figures(cells_csv: str | os.PathLike, out_dir: str | os.PathLike,
                 fits: str | os.PathLike | None = None) -> list[Path]:
    """Render every figure into ``out_dir``/<name>.png and .pdf; return the paths."""
    cells, curves = read_table(cells_csv), _fits(fits)
    out: list[Path] = []
    for name in FIGURES:
        out += style.save(build(name, cells, curves), Path(out_dir) / f"{name}.png", Path(out_dir) / f"{name}.pdf")
    return out
