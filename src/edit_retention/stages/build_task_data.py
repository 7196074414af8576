"""build_task_data: a fine-tuning task's train / held-out examples, filtered against the facts."""
from __future__ import annotations

import logging

from ..io import write_json, write_jsonl
from ..records import read_records
from ..tasks import build_task_data, get_task

log = logging.getLogger(__name__)


def run(a) -> None:
    task = get_task(a.type)
    out = build_task_data(task, a.source, read_records(a.records), a.n_train, a.n_eval, a.seed)
    write_jsonl(a.out_train, out["train"])
    write_jsonl(a.out_eval, out["eval"])
    write_json(a.out_meta, out["meta"])
    log.info("task %s: %d train, %d held-out examples", a.type, len(out["train"]), len(out["eval"]))
