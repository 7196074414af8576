"""prepare_facts: a fact source -> data/facts/<facts>/records.jsonl (one record schema)."""
from __future__ import annotations

import logging

from ..facts import load_facts
from ..io import write_jsonl

log = logging.getLogger(__name__)


def run(a) -> None:
    records = load_facts(a.source)
    write_jsonl(a.out, records)
    log.info("wrote %d facts to %s", len(records), a.out)
