"""Command line: one subcommand per pipeline stage; Snakemake rules call these.

Usage::

    python -m edit_retention <stage> [options]       # --help on any stage

Stages: prepare-model, prepare-facts, paraphrases, corpus, task-data, select, stats, train-mend, edit,
finetune, evaluate, summarize, analyze, figure, figures, report, check-config. Structured
options (sources, hyperparameters) are JSON strings; every output is written atomically.

This module only parses options and dispatches: each subcommand runs a function of its
stage module (``stages/<rule family>.py``; ``STAGES``), imported by name, so that a rule's
code inputs (``codeinputs``) are its own stage's modules and not every stage's.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .cli_args import add_stage_parsers
from .io import InputError
from .memory import is_out_of_memory, out_of_memory_message, set_job_memory
from .storage_errors import storage_problem

log = logging.getLogger("edit_retention")

# subcommand -> "module:function" (relative to the package) that runs it.
STAGES = {
    "prepare-model": "stages.prepare_model:run",
    "prepare-facts": "stages.prepare_facts:run",
    "paraphrases": "stages.generate_paraphrases:run",
    "corpus": "stages.build_corpus:run",
    "task-data": "stages.build_task_data:run",
    "select": "stages.select_intrinsic:run",
    "stats": "stages.layer_stats:run",
    "train-mend": "stages.train_mend:run",
    "edit": "stages.apply_edits:run",
    "edit-health": "stages.edit_health:run",
    "finetune": "stages.finetune:run",
    "evaluate": "stages.evaluate:run",
    "summarize": "stages.summarize:run",
    "analyze": "stages.claims:run",
    "figure": "stages.figure:run",
    "figures": "stages.figure:run_all",
    "report": "stages.report:run",
    "check-config": "config:check_config_file",
}


def run_stage(a) -> None:
    module, _, fn = a.stage.partition(":")
    getattr(importlib.import_module(f"{__package__}.{module}"), fn)(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edit_retention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_parsers(p.add_subparsers(dest="cmd", required=True), STAGES)
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    try:
        if getattr(a, "mem_mb", None) is not None:
            set_job_memory(a.mem_mb)
        run_stage(a)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if isinstance(e, (MemoryError, RuntimeError)) and is_out_of_memory(e):
            print(f"error: {out_of_memory_message(a.cmd, getattr(a, 'device', 'cpu'), e)}", file=sys.stderr)
            return 3
        message = storage_problem(a.cmd, e)      # a full disk or an unwritable folder: one line
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 4
    return 0
