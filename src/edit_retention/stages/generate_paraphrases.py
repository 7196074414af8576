"""generate_paraphrases: records -> augmentation / held-out evaluation paraphrases, from the
records' own templates or (``--generator lm``) also from ones a language model writes."""
from __future__ import annotations

import json
import logging

from ..io import InputError, write_json, write_jsonl
from ..records import read_records

log = logging.getLogger(__name__)


def run(a) -> None:
    records = read_records(a.records)
    if a.generator == "template":
        from ..paraphrase import split_paraphrases
        if a.model:
            raise InputError("paraphrases: --model is only read by --generator lm")
        rows = split_paraphrases(records, a.n_eval, a.seed)
        report = {"generator": "template", "n_records": len(rows)}
    else:
        rows, report = _lm(a, records)
    write_jsonl(a.out, rows)
    if a.out_report:
        write_json(a.out_report, {**report, "records": a.records, "n_eval": a.n_eval, "split_seed": a.seed})


def _lm(a, records):
    from ..models import load_model
    from ..paraphrase_lm import LMArgs, lm_paraphrases
    if not a.model:
        raise InputError("paraphrases: --generator lm needs --model (a prepared model folder)")
    opts = {k: getattr(a, k) for k in LMArgs.__dataclass_fields__ if k != "seed"}
    opts["seed"] = a.lm_seed
    args = LMArgs.from_dict({k: v for k, v in opts.items() if v is not None}, where="paraphrases")
    model, tok = load_model(a.model, device=a.device)
    rows, report = lm_paraphrases(model, tok, records, a.n_eval, a.seed, args)
    report["model"] = str(a.model)
    log.info("lm paraphrases: %d of %d candidates kept (%.0f%%); rejected: %s; %d records got none",
             report["kept"], report["n_candidates"], 100 * report["keep_rate"],
             json.dumps(report["rejected"]), report["records_without_generated"])
    return rows, report
