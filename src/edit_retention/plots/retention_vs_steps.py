"""Figure 2: retention vs fine-tuning step, edited vs intrinsic (curves with 95% bands).

Baseline remedies; x = the step of each phase (edited = 0 where retention is 1 by
definition, checkpoints step-N, the final phase at the task's step count). The fitted
decay R(t) = r_inf + (1 - r_inf) exp(-lam t) from elasticity.json is drawn thin where
one was fitted.
"""
from __future__ import annotations

import numpy as np

from . import style

TITLE = "Retention vs fine-tuning steps (baseline remedy)"


def build(cells, fits):
    if not style.traits_known(cells):
        return style.not_in_grid(TITLE, "remedy definitions unknown (summarize ran without --remedies)")
    base = style.baseline(cells)
    sel = base[(base.metric == "retention_rewrite") & base.step.notna() & base.knowledge.isin(["edited", "intrinsic"])]
    if sel.empty or sel.step.nunique() < 1:
        return style.not_in_grid(TITLE, "no fine-tuned phase with a known step count in a baseline cell")
    panels = style.facets(sel)
    editors = list(dict.fromkeys(sel.editor))
    fig, axes = style.grid(len(panels), len(editors))
    for r, (title, sub) in enumerate(panels):
        for c, editor in enumerate(editors):
            ax = axes[r, c]
            ed = sub[sub.editor == editor]
            for knowledge, st in style.KNOWLEDGE.items():
                k = ed[ed.knowledge == knowledge].sort_values("step")
                x = np.concatenate([[0.0], k.step.to_numpy(float)])
                v = np.concatenate([[1.0], k.value.to_numpy(float)])
                lo = np.concatenate([[1.0], k.ci_low.to_numpy(float)])
                hi = np.concatenate([[1.0], k.ci_high.to_numpy(float)])
                style.line_with_band(ax, x, v, lo, hi, st, st["label"])
                for f in fits:
                    if (f.get("kind") == "step" and f.get("status") == "fitted" and f.get("editor") == editor
                            and f.get("knowledge") == knowledge and f.get("remedy") in set(k.remedy)
                            and f.get("model") == k.model.iloc[0] and f.get("task") == k.task.iloc[0]):
                        t = np.linspace(0, x.max(), 100)
                        p = f["fit"]
                        ax.plot(t, p["r_inf"] + (1 - p["r_inf"]) * np.exp(-p["lam"] * t), color=st["line"],
                                linewidth=0.6, linestyle=":")
            n_ckpt = int((ed.phase.str.startswith("step-")).sum() // max(1, ed.knowledge.nunique()))
            note = f"{n_ckpt} checkpoint(s)" if n_ckpt else "no checkpoints in this grid: start and end only"
            ax.text(0.02, 0.03, note, transform=ax.transAxes, fontsize=style.FONT["note"])
            ax.set_ylim(-0.02, 1.08)
            ax.set_xlabel("fine-tuning step", fontsize=style.FONT["label"])
            ax.set_title(f"{title}: {editor}", fontsize=style.FONT["title"])
        axes[r, 0].set_ylabel("retention (held at step 0)", fontsize=style.FONT["label"])
    style.legend(fig, axes)
    return fig
