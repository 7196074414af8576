"""Downstream fine-tuning tasks: one module per task type, behind one registry.

Usage::

    from edit_retention.tasks import get_task, build_task_data
    task = get_task("math")
    data = build_task_data(task, {"type": "builtin"}, fact_records, n_train=500, n_eval=50, seed=0)
    data["train"], data["eval"], data["meta"]

Task types (``TASKS``; study config ``tasks.<name>.type``) and their held-out score:

    causal_lm       unrelated text (python_docs corpus)            eval_perplexity (lower is better)
    instruction     Alpaca instruction/input/output, chat template  response_perplexity (lower)
    math            GSM8K question/answer "#### N"                 exact_match
    classification  SST-2 sentence/label -> " negative"/" positive" label_accuracy
    qa              NQ-open question/answer list                   exact_match

Each module's docstring says what its offline default (``{"type": "builtin"}``) is made
of and why; ``base.py`` describes the sources (builtin, local file, Hugging Face hub id)
and the fact filter every task's text goes through.
"""
from __future__ import annotations

from ..io import InputError
from .arithmetic import Math
from .base import Task
from .data import build_task_data as _build_supervised
from .data import check_examples, check_source
from .causal_lm import CausalLM, pack_blocks
from .classification import Classification
from .instruction import Instruction
from .qa import QA

TASKS: dict[str, type[Task]] = {
    "causal_lm": CausalLM,
    "instruction": Instruction,
    "math": Math,
    "classification": Classification,
    "qa": QA,
}
DEFAULT_SOURCE = {"type": "builtin"}


def get_task(type_: str) -> Task:
    if type_ not in TASKS:
        raise InputError(f"unknown task type {type_!r} (known: {', '.join(TASKS)})")
    return TASKS[type_]()


def build_task_data(task: Task, source: dict, records: list[dict], n_train: int, n_eval: int, seed: int = 0) -> dict:
    if hasattr(task, "build_data"):
        return task.build_data(source, records, n_train, n_eval, seed)
    return _build_supervised(task, source, records, n_train, n_eval, seed)


__all__ = ["TASKS", "Task", "get_task", "build_task_data", "check_examples", "check_source", "pack_blocks",
           "DEFAULT_SOURCE"]
