"""Figure 1: edited vs intrinsic retention after fine-tuning, per editor x protocol x task.

Baseline remedies only (no paraphrases, no freezing, full fine-tuning); grouped bars, one
group per editor and success protocol (``protocols.py``: probability, first token,
generation contains) and, where both are scored, the reference study's asymmetric pairing
(edits by first token, intrinsic facts by generation contains), so the gap each protocol
creates is side by side; one panel row per (model, task); whiskers = 95% bootstrap CI over
facts and seeds.
"""
from __future__ import annotations

import pandas as pd

from ..protocols import ASYMMETRIC, PROTOCOLS, metric_name, protocol_for
from . import style

TITLE = "Edited vs intrinsic retention per protocol (baseline remedy)"
LABELS = {"probability": "probability", "first_token": "first token", "generation_contains": "generation\ncontains",
          ASYMMETRIC: "reference\npairing"}
METRIC = "retention_rewrite"


def _finetuned(cells: pd.DataFrame, protocol: str) -> pd.DataFrame:
    return cells[(cells["metric"] == metric_name(METRIC, protocol)) & (cells["phase"] == "finetuned")
                 & cells["knowledge"].isin(["edited", "intrinsic"])]


def build(cells, fits):
    if not style.traits_known(cells):
        return style.not_in_grid(TITLE, "remedy definitions unknown (summarize ran without --remedies)")
    base = style.baseline(cells)
    by_protocol = {p: _finetuned(base, p) for p in PROTOCOLS}
    sel = pd.concat(by_protocol.values())
    if sel.empty:
        return style.not_in_grid(TITLE, "no baseline remedy (paraphrase_k 0, freeze none, full fine-tuning)")
    present = [p for p in PROTOCOLS if not by_protocol[p].empty]
    if {"first_token", "generation_contains"} <= set(present):
        present.append(ASYMMETRIC)
    panels = style.facets(sel)
    n_groups = sel.editor.nunique() * len(present)
    fig, axes = style.grid(len(panels), 1, width=max(3.4, 0.85 * n_groups + 1.5))
    for ax, (title, sub) in zip(axes[:, 0], panels):
        editors = list(dict.fromkeys(sub["editor"]))
        groups, series = [], {k: [] for k in style.KNOWLEDGE}
        for editor in editors:
            for protocol in present:
                group = f"{editor}\n{LABELS[protocol]}" if len(editors) > 1 else LABELS[protocol]
                groups.append(group)
                for knowledge in style.KNOWLEDGE:
                    rows = by_protocol[protocol_for(protocol, knowledge)]
                    key = (sub["model"].iloc[0], sub["task"].iloc[0])
                    rows = rows[(rows.model == key[0]) & (rows.task == key[1]) & (rows.editor == editor)
                                & (rows.knowledge == knowledge)]
                    series[knowledge].append(rows.head(1).assign(group=group))
        frames = [(st["label"], st, pd.concat(series[k]).set_index("group") if series[k] else pd.DataFrame())
                  for k, st in style.KNOWLEDGE.items()]
        style.bars(ax, groups, frames)
        ax.set_title(title if len(editors) > 1 else f"{title}: {editors[0]}", fontsize=style.FONT["title"])
        ax.set_ylabel(style.RETENTION_LABEL, fontsize=style.FONT["label"])
    style.legend(fig, axes)
    return fig
