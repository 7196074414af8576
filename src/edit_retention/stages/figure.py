"""figure_<name>: cells.csv (+ elasticity.json) -> figures/<name>.png and .pdf
(the figure itself: ``plots/<name>.py``)."""
from __future__ import annotations

from ..plots import make_figure, make_figures


def run(a) -> None:
    make_figure(a.name, a.cells, a.out_png, a.out_pdf, fits=a.fits)


def run_all(a) -> None:
    make_figures(a.cells, a.out_dir, fits=a.fits)
