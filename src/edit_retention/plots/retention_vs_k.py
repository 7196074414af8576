"""Figure 3: edited retention vs number of augmentation paraphrases k, per editor.

Remedies without freezing and with full fine-tuning, told apart by paraphrase_k; one
line per editor (marker and line style per editor), whiskers = 95% CI; the fitted
R = a + b ln(1 + k) from elasticity.json where one was fitted.
"""
from __future__ import annotations

import numpy as np

from . import style

TITLE = "Edited retention vs paraphrases per edit (k)"


def build(cells, fits):
    if not style.traits_known(cells):
        return style.not_in_grid(TITLE, "remedy definitions unknown (summarize ran without --remedies)")
    sel = style.retention(cells, knowledge=("edited",))
    sel = sel[(sel.freeze == "none") & (sel.method == "full") & sel.paraphrase_k.notna()]
    if sel.paraphrase_k.nunique() < 2:
        ks = sorted(sel.paraphrase_k.unique().tolist())
        return style.not_in_grid(TITLE, f"fewer than 2 values of k without freezing (have {ks})")
    panels = style.facets(sel)
    fig, axes = style.grid(len(panels), 1)
    for ax, (title, sub) in zip(axes[:, 0], panels):
        for i, (editor, ed) in enumerate(sub.groupby("editor", sort=False)):
            st = dict(style.series_style(i), line="black")
            ed = ed.sort_values("paraphrase_k")
            x = ed.paraphrase_k.to_numpy(float)
            ax.plot(x, ed.value, color="black", linestyle=st["linestyle"], marker=st["marker"],
                    markerfacecolor=st["color"], label=editor)
            style.errbar(ax, x, ed.value, ed.ci_low, ed.ci_high)
            for f in fits:
                if (f.get("kind") == "k" and f.get("status") == "fitted" and f.get("editor") == editor
                        and f.get("freeze") == "none" and f.get("method") == "full"):
                    kk = np.linspace(0, x.max(), 50)
                    ax.plot(kk, f["fit"]["intercept"] + f["fit"]["slope"] * np.log1p(kk), color="0.5",
                            linewidth=0.6, linestyle=":")
        ax.set_xticks(sorted(sub.paraphrase_k.unique()))
        ax.set_ylim(-0.02, 1.08)
        ax.set_xlabel("augmentation paraphrases per edit (k)", fontsize=style.FONT["label"])
        ax.set_ylabel(style.RETENTION_LABEL, fontsize=style.FONT["label"])
        ax.set_title(title, fontsize=style.FONT["title"])
    style.legend(fig, axes)
    return fig
