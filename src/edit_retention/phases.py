"""The phases a fact is scored at, in order: base, edited, step-N (checkpoints), finetuned."""
from __future__ import annotations

import math
import re

FINAL_PHASE = "finetuned"


def phase_step(phase: str, total_steps: float | None = None) -> float:
    """Fine-tuning step of a phase: edited 0, step-N N, finetuned the task's steps."""
    if phase == "edited":
        return 0.0
    m = re.fullmatch(r"step-(\d+)", str(phase))
    if m:
        return float(m.group(1))
    if phase == "finetuned" and total_steps is not None:
        return float(total_steps)
    return math.nan


def phase_order(phase: str) -> tuple:
    """Sort key: base, edited, step-N by N, finetuned, then anything else by name."""
    m = re.fullmatch(r"step-(\d+)", str(phase))
    if phase == "base":
        return (0, 0, "")
    if phase == "edited":
        return (1, 0, "")
    if m:
        return (2, int(m.group(1)), "")
    if phase == "finetuned":
        return (3, 0, "")
    return (4, 0, str(phase))
