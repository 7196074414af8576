"""Figure 1: edited vs intrinsic retention after fine-tuning, per editor x task.

Baseline remedies only (no paraphrases, no freezing, full fine-tuning); grouped bars,
one panel row per (model, task), whiskers = 95% bootstrap CI over facts and seeds.
"""
from __future__ import annotations

from . import style

TITLE = "Edited vs intrinsic retention (baseline remedy)"


def build(cells, fits):
    if not style.traits_known(cells):
        return style.not_in_grid(TITLE, "remedy definitions unknown (summarize ran without --remedies)")
    sel = style.retention(style.baseline(cells))
    if sel.empty:
        return style.not_in_grid(TITLE, "no baseline remedy (paraphrase_k 0, freeze none, full fine-tuning)")
    panels = style.facets(sel)
    fig, axes = style.grid(len(panels), 1, width=max(3.4, 1.2 * sel.editor.nunique() + 1.5))
    for ax, (title, sub) in zip(axes[:, 0], panels):
        editors = list(dict.fromkeys(sub["editor"]))
        series = []
        for knowledge, st in style.KNOWLEDGE.items():
            rows = sub[sub.knowledge == knowledge].drop_duplicates("editor").set_index("editor")
            series.append((st["label"], st, rows))
        style.bars(ax, editors, series)
        ax.set_title(title, fontsize=style.FONT["title"])
        ax.set_ylabel(style.RETENTION_LABEL, fontsize=style.FONT["label"])
    style.legend(fig, axes)
    return fig
