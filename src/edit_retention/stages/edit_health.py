"""edit_health: base model + an edit + the edit and control facts + held-out text -> the
edit's health (health.py: control and neighbourhood agreement, first-token ES, perplexity
ratio, delta norm), one JSON beside the edit. Measured before any fine-tuning; the gate
that reads it runs in summarize, so changing a threshold never recomputes anything."""
from __future__ import annotations

import logging

from ..editors import load_edit
from ..editors.regimes import edit_groups, is_single
from ..health_measure import measure_health
from ..io import read_texts, write_json
from ..models import load_model
from ..records import read_records

log = logging.getLogger(__name__)


def run(a) -> None:
    model, tok = load_model(a.model, device=a.device)
    edit = load_edit(a.edit)
    edited, control = read_records(a.edited), read_records(a.control)
    texts = read_texts(a.texts)[: a.n_texts]
    single = is_single(edit)
    h = measure_health(model, tok, None if single else edit.deltas, edited, control, texts,
                       groups=edit_groups(edit) if single else None, batch_size=a.batch_size)
    h.update(editor=edit.log.get("editor"), regime=edit.log.get("regime"), k=edit.log.get("k"),
             batch_size=edit.log.get("batch_size"), n_requests=edit.log.get("n_requests"))
    write_json(a.out, h)
    log.info("edit health of %s: control agreement %.3f, neighbourhood agreement %.3f, first-token ES %.3f, "
             "perplexity x%.3f, |delta|/|W| %.3f", a.edit, h["control_agreement"], h["neighborhood_agreement"],
             h["first_token_es"], h["ppl_ratio"], h["delta_rel_norm"])
