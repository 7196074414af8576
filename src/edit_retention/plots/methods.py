"""Figure 5: full fine-tuning vs LoRA vs DoRA (retention, downstream score beside it).

Cells with paraphrase_k 0 and no freezing, one bar group per (editor, method).
"""
from __future__ import annotations

from . import _contrast

TITLE = "Full vs LoRA vs DoRA (k = 0, no freezing)"


def build(cells, fits):
    return _contrast.build(cells, TITLE, "method", {"freeze": "none"}, "fine-tuning methods")
