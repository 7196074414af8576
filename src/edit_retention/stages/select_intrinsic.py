"""select_intrinsic: base model + facts -> the facts to edit and the intrinsic control set
(facts the base model already gets right), with the base model's scores."""
from __future__ import annotations

import logging

from ..io import write_jsonl
from ..models import load_model
from ..records import read_records
from ..select import known_mask, split_known

log = logging.getLogger(__name__)


def run(a) -> None:
    records = read_records(a.records)
    model, tok = load_model(a.model, device=a.device)
    mask, scores = known_mask(model, tok, records, a.batch_size)
    if a.all_facts:  # random test models know nothing; keep the pipeline shape
        mask = [True] * len(records)
    edit, control = split_known(records, mask, a.n_edit, a.n_control, a.seed, where=f"select ({a.records})")
    write_jsonl(a.out_scores, scores)
    write_jsonl(a.out_edit, edit)
    write_jsonl(a.out_control, control)
    log.info("base model knows %d/%d facts; %d edit, %d control", sum(mask), len(records), len(edit), len(control))
