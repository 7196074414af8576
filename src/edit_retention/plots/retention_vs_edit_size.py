"""Figure 6: edited retention vs edit-set size (number of facts edited into one model).

Baseline remedies; x = n_edits (log scale), one line per editor, whiskers = 95% CI;
the fitted R = a + b ln(N) from elasticity.json where one was fitted.
"""
from __future__ import annotations

import numpy as np

from . import style

TITLE = "Edited retention vs edit-set size (baseline remedy)"


def build(cells, fits):
    if not style.traits_known(cells):
        return style.not_in_grid(TITLE, "remedy definitions unknown (summarize ran without --remedies)")
    sel = style.retention(style.baseline(cells), knowledge=("edited",))
    sel = sel[sel.n_edits.notna()]
    if sel.n_edits.nunique() < 2:
        sizes = sorted(int(s) for s in sel.n_edits.unique())
        return style.not_in_grid(TITLE, f"fewer than 2 edit-set sizes (have {sizes})")
    panels = style.facets(sel)
    fig, axes = style.grid(len(panels), 1)
    for ax, (title, sub) in zip(axes[:, 0], panels):
        for i, (editor, ed) in enumerate(sub.groupby("editor", sort=False)):
            st = style.series_style(i)
            ed = ed.sort_values("n_edits")
            x = ed.n_edits.to_numpy(float)
            ax.plot(x, ed.value, color="black", linestyle=st["linestyle"], marker=st["marker"],
                    markerfacecolor=st["color"], label=editor)
            style.errbar(ax, x, ed.value, ed.ci_low, ed.ci_high)
            for f in fits:
                if (f.get("kind") == "n_edits" and f.get("status") == "fitted" and f.get("editor") == editor
                        and f.get("paraphrase_k") == 0 and f.get("freeze") == "none" and f.get("method") == "full"):
                    nn = np.geomspace(x.min(), x.max(), 50)
                    ax.plot(nn, f["fit"]["intercept"] + f["fit"]["slope"] * np.log(nn), color="0.5",
                            linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.08)
        ax.set_xlabel("facts edited into one model", fontsize=style.FONT["label"])
        ax.set_ylabel(style.RETENTION_LABEL, fontsize=style.FONT["label"])
        ax.set_title(title, fontsize=style.FONT["title"])
    style.legend(fig, axes)
    return fig
