"""Figure 4: retention under each freezing strategy, with the downstream score beside it.

Cells with paraphrase_k 0 and full fine-tuning, one bar group per (editor, freeze).
"""
from __future__ import annotations

from . import _contrast

TITLE = "Retention per freezing strategy (k = 0, full fine-tuning)"


def build(cells, fits):
    return _contrast.build(cells, TITLE, "freeze", {"method": "full"}, "freezing strategies")
