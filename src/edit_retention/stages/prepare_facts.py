"""prepare_facts: a fact source -> data/facts/<facts>/records.jsonl (one record schema)."""
from __future__ import annotations

import logging

from ..facts import load_facts, load_report
from ..io import write_json, write_jsonl

log = logging.getLogger(__name__)


def run(a) -> None:
    stats: dict = {}
    records = load_facts(a.source, stats)
    write_jsonl(a.out, records)
    if a.out_report:
        write_json(a.out_report, load_report(stats, a.source))
    log.info("wrote %d facts to %s", len(records), a.out)
