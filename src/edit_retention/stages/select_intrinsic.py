"""select_intrinsic: base model + facts -> the facts to edit and the intrinsic control set
(facts the base model already gets right), with the base model's scores."""
from __future__ import annotations

import json
import logging

from ..io import write_jsonl
from ..models import load_model
from ..records import read_records
from ..select import model_fingerprint, select_facts

log = logging.getLogger(__name__)


def run(a) -> None:
    records = read_records(a.records)
    model, tok = load_model(a.model, device=a.device)
    fp = model_fingerprint(a.model, str(next(model.parameters()).device)) if a.score_cache else ""
    edit, control, scores, info = select_facts(model, tok, records, a.n_edit, a.n_control, a.seed, a.batch_size,
                                               a.all_facts, a.score_cache, fp, where=f"select ({a.records})")
    write_jsonl(a.out_scores, scores)
    write_jsonl(a.out_edit, edit)
    write_jsonl(a.out_control, control)
    log.info("select: %s; %d edit, %d control", json.dumps(info), len(edit), len(control))
