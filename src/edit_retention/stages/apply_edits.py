"""apply_edits: model + requests (+ layer statistics) -> weight deltas and an edit log.

The requests are the edit facts, each with its first k augmentation paraphrases
(``edit_requests``); the regime (batch, sequential, single, groups) is ``editors.regimes``'.
"""
from __future__ import annotations

import logging

from ..editors import edited_layers, get_editor, make_hparams, save_edit
from ..editors.base import request_from_record
from ..editors.passes import count_passes
from ..editors.regimes import is_single, run_regime, single_deltas
from ..editors.verify import verify_cases
from ..io import InputError, read_jsonl
from ..models import check_layers, load_model
from ..records import read_records
from ..stats import load_stats

log = logging.getLogger(__name__)


def edit_requests(edit_records: list[dict], paraphrases: list[dict], k: int) -> list[dict]:
    """Editor requests: each fact with its first k augmentation paraphrases."""
    aug = {p["case_id"]: p["augment"] for p in paraphrases}
    reqs = []
    for r in edit_records:
        a = aug.get(r["case_id"])
        if a is None:
            raise InputError(f"paraphrases: no row for case_id {r['case_id']!r}")
        if len(a) < k:
            raise InputError(f"paraphrases: case_id {r['case_id']!r} has {len(a)} augmentation paraphrases, k={k} asked")
        reqs.append(request_from_record(r, a[:k]))
    return reqs


def run(a) -> None:
    hp = make_hparams(a.editor, a.hparams, a.hparams_set)
    model, tok = load_model(a.model, device=a.device)
    check_layers(model, edited_layers(hp), where=f"editors.{a.editor} layers")
    stats = None
    if a.stats:
        stats = {}
        for p in a.stats:
            s, _ = load_stats(p)
            stats.update(s)
    reqs = edit_requests(read_records(a.requests), read_jsonl(a.paraphrases), a.k)
    with count_passes(model) as passes:
        res = run_regime(get_editor(a.editor), model, tok, reqs, hp, stats, a.regime, a.batch_size)
    verify_cases(model, tok, reqs, res, single_deltas(res) if is_single(res) else None)
    if res.log["not_converged"]:
        log.warning("%d of %d edits do not succeed on their own scored prompt: %s", len(res.log["not_converged"]),
                    len(reqs), res.log["not_converged"][:10])
    res.log.update({"k": a.k, "n_requests": len(reqs), "passes": passes,
                    "seconds_per_request": res.log["seconds"] / max(len(reqs), 1)})
    save_edit(res, a.out)
