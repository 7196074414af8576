"""train_mend: MEND's hypernetwork, trained on the facts outside the study's edit and control sets."""
from __future__ import annotations

import logging

from ..editors import make_hparams
from ..editors.mend_net import save_hypernet
from ..editors.mend_train import train_mend
from ..io import InputError, read_jsonl
from ..models import load_model
from ..records import read_records

log = logging.getLogger(__name__)


def mend_train_requests(records: list[dict], exclude: set[str]) -> list[dict]:
    """MEND's edit-training split: every fact outside the study's edit and control sets, its
    paraphrase templates as aug prompts and its neighbourhood prompts as locality texts."""
    out = []
    for r in records:
        if r["case_id"] in exclude:
            continue
        out.append({"case_id": r["case_id"], "subject": r["subject"], "prompt": r["prompt"],
                    "target_new": r["target_new"], "target_true": r["target_true"],
                    "aug_prompts": list(r["paraphrase_prompts"][:1]),
                    "locality_prompts": [n["prompt"] for n in r["neighborhood_prompts"]]})
    if not out:
        raise InputError("train-mend: no facts are left for MEND's training split once the edit and "
                         "control sets are excluded; use a larger fact set")
    return out


def run(a) -> None:
    hp = make_hparams("mend", a.hparams, a.hparams_set)
    model, tok = load_model(a.model, device=a.device)
    exclude = {r["case_id"] for p in a.exclude for r in read_jsonl(p)}
    reqs = mend_train_requests(read_records(a.records), exclude)
    n_val = min(a.n_val, len(reqs) // 5)
    train, val = reqs[n_val:], reqs[:n_val]
    tensors, config = train_mend(model, tok, train, hp, a.seed, val_requests=val or None)
    save_hypernet(a.out, tensors, config)
    log.info("MEND hypernetwork: %d training / %d held-out facts, %.0f s", len(train), len(val),
             config["train"]["seconds"])
