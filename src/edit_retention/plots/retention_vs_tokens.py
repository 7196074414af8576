"""Figure 7: retention against fine-tuning tokens (log x), edited vs intrinsic, one panel
per success protocol and one for the reference study's asymmetric pairing (edits by first
token, intrinsic facts by generation contains), with 95% bands.

Baseline remedies; x = the ``tokens`` column of cells.csv (step x batch_size x seq_len of
each checkpoint and of the final phase). Step 0 (right after the edit, retention 1 by
definition) has no place on a log axis: the dotted line at 1 stands for it. One panel row
per (model, task, editor). The dose study (workflow/config/dose.yaml) scores the facts at
log-spaced steps for this figure; a grid with only the final phase draws one point per curve.
"""
from __future__ import annotations

from ..protocols import ASYMMETRIC, PROTOCOLS, metric_name, protocol_for
from . import style

TITLE = "Retention vs fine-tuning tokens per protocol (baseline remedy)"
LABELS = {"probability": "probability", "first_token": "first token", "generation_contains": "generation contains",
          ASYMMETRIC: "reference pairing\n(edits: first token, intrinsic: generation)"}
METRIC = "retention_rewrite"


def curve(cells, protocol: str, knowledge: str):
    """Rows of one curve, sorted by tokens: ``knowledge``'s retention under ``protocol``
    (for ``ASYMMETRIC``, the protocol the reference study used for that kind)."""
    name = metric_name(METRIC, protocol_for(protocol, knowledge))
    rows = cells[(cells["metric"] == name) & (cells["knowledge"] == knowledge) & (cells["tokens"] > 0)]
    return rows.sort_values("tokens")


def build(cells, fits):
    if not style.traits_known(cells):
        return style.not_in_grid(TITLE, "remedy definitions unknown (summarize ran without --remedies)")
    if "tokens" not in cells or not (cells["tokens"] > 0).any():
        return style.not_in_grid(TITLE, "no fine-tuned phase with known tokens (task params batch_size and "
                                        "seq_len; cells.csv from before the tokens column)")
    base = style.baseline(cells)
    scored = [p for p in PROTOCOLS if not curve(base, p, "edited").empty or not curve(base, p, "intrinsic").empty]
    if not scored:
        return style.not_in_grid(TITLE, "no baseline remedy with a fine-tuned phase")
    panels = list(scored) + ([ASYMMETRIC] if {"first_token", "generation_contains"} <= set(scored) else [])
    rows = [(f"{title}: {editor}", sub[sub.editor == editor]) for title, sub in style.facets(base)
            for editor in dict.fromkeys(sub.editor)]
    fig, axes = style.grid(len(rows), len(panels))
    for r, (title, sub) in enumerate(rows):
        for c, protocol in enumerate(panels):
            ax = axes[r, c]
            for knowledge, st in style.KNOWLEDGE.items():
                k = curve(sub, protocol, knowledge)
                if not k.empty:
                    style.line_with_band(ax, k.tokens, k.value, k.ci_low, k.ci_high, st, st["label"])
            ax.axhline(1.0, color="black", linestyle=":", linewidth=0.6)
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.08)
            ax.set_xlabel("fine-tuning tokens (log)", fontsize=style.FONT["label"])
            ax.set_title(f"{title}\n{LABELS[protocol]}", fontsize=style.FONT["title"])
            ax.tick_params(labelsize=style.FONT["tick"])
            ax.text(0.02, 0.03, "dotted: 1 at step 0 (after the edit)", transform=ax.transAxes,
                    fontsize=style.FONT["note"])
        axes[r, 0].set_ylabel(style.RETENTION_LABEL, fontsize=style.FONT["label"])
    style.legend(fig, axes)
    return fig
