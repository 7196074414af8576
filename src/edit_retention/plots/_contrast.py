"""Shared body of figures 4 and 5: retention bars per value of one remedy trait, with the
downstream task score beside them (one row per (model, task))."""
from __future__ import annotations

from . import style


def build(cells, title: str, trait: str, fixed: dict, what: str):
    if not style.traits_known(cells):
        return style.not_in_grid(title, "remedy definitions unknown (summarize ran without --remedies)")
    keep = (cells.paraphrase_k == 0)
    for col, val in fixed.items():
        keep &= cells[col] == val
    sub_cells = cells[keep]
    sel = style.retention(sub_cells)
    values = list(dict.fromkeys(sel[trait]))
    if len(values) < 2:
        return style.not_in_grid(title, f"fewer than 2 {what} with paraphrase_k 0 (have {values})")
    score_name, score = style.task_score(sub_cells)
    panels = style.facets(sel)
    # Each bar group is as wide as its "trait=value" label needs (~0.07 in per character).
    per_group = max(0.9, 0.07 * max(len(f"{trait}={v}") for v in values) + 0.1)
    fig, axes = style.grid(len(panels), 2, width=max(3.4, per_group * len(values) * sel.editor.nunique() + 1.2))
    for r, (title_, sub) in enumerate(panels):
        label = lambda e, v: f"{e}\n{trait}={v}"
        groups = list(dict.fromkeys(label(e, v) for e, v in zip(sub.editor, sub[trait])))
        sub = sub.assign(group=[label(e, v) for e, v in zip(sub.editor, sub[trait])])
        series = [(st["label"], st, sub[sub.knowledge == k].drop_duplicates("group").set_index("group"))
                  for k, st in style.KNOWLEDGE.items()]
        style.bars(axes[r, 0], groups, series)
        axes[r, 0].set_ylabel(style.RETENTION_LABEL, fontsize=style.FONT["label"])
        axes[r, 0].set_title(f"{title_}: retention", fontsize=style.FONT["title"])
        ax = axes[r, 1]
        if score_name is None:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "no downstream score in this grid", ha="center", fontsize=style.FONT["label"])
            continue
        sc = score[(score.model == sub.model.iloc[0]) & (score.task == sub.task.iloc[0])]
        sc = sc.assign(group=[label(e, v) for e, v in zip(sc.editor, sc[trait])]).drop_duplicates("group")
        st = style.series_style(1)
        style.bars(ax, groups, [(score_name, st, sc.set_index("group"))], ylim=None, n_label="n_seeds")
        here = sub_cells[(sub_cells.model == sub.model.iloc[0]) & (sub_cells.task == sub.task.iloc[0])]
        ax.set_ylabel(f"{style.score_label(here, score_name)} (mean over seeds)", fontsize=style.FONT["label"])
        ax.set_title(f"{title_}: downstream score", fontsize=style.FONT["title"])
    style.legend(fig, axes)
    return fig
