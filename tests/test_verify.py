"""An edit log's `converged` is the scored prompt's success, never the editor's own objective
(a subject at position 0 is where the two part: prefixed copies give another key)."""
from __future__ import annotations

import torch

from conftest import make_record
from test_editors import ROME_HP, sharpen, texts

from edit_retention.editors import EditResult, get_editor, make_hparams, request_from_record
from edit_retention.editors.regimes import run_regime, single_deltas
from edit_retention.editors.verify import verify_cases
from edit_retention.evaluate import score_items
from edit_retention.metrics import row_success
from edit_retention.stats import compute_mom2


def _scored(model, tok, reqs, deltas):
    from edit_retention.editors import deltas_applied
    items = [{"case_id": r["case_id"], "knowledge": "edited", "kind": "rewrite", "index": 0,
              "prompt": r["prompt"].replace("{}", r["subject"]), "target": r["target_new"],
              "alt": r["target_true"]} for r in reqs]
    with deltas_applied(model, deltas):
        return [row_success(x) for x in score_items(model, tok, items, progress=False)]


def test_objective_flag_is_not_the_logged_success(tiny_model):
    model, tok = tiny_model
    reqs = [request_from_record(make_record(i, s), []) for i, s in enumerate(["Freedonia", "Sylvania"])]
    res = EditResult(deltas={}, log={"cases": [{"case_id": r["case_id"], "converged": True} for r in reqs]})
    verify_cases(model, tok, reqs, res)
    expected = _scored(model, tok, reqs, {})
    assert [c["converged"] for c in res.log["cases"]] == expected
    assert all(c["objective_converged"] for c in res.log["cases"])
    assert res.log["n_converged"] == sum(expected)
    assert res.log["not_converged"] == [r["case_id"] for r, ok in zip(reqs, expected) if not ok]


def test_subject_at_position_zero_rome_batch_and_single(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    stats = compute_mom2(model, tok, texts(), [1], max_len=32, progress=False)
    recs = [dict(make_record(0, "Windows", "Microsoft", "Apple"), prompt="{} is developed by"),
            dict(make_record(1, "PlayStation", "Sony", "Nintendo"), prompt="{} is made by")]
    reqs = [request_from_record(r, []) for r in recs]
    hp = make_hparams("rome", {**ROME_HP, "n_prefixes": 2})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for regime in ("batch", "single"):
        res = run_regime(get_editor("rome"), model, tok, reqs, hp, stats, regime)
        per_case = single_deltas(res) if regime == "single" else None
        verify_cases(model, tok, reqs, res, per_case)
        if per_case is None:
            expected = _scored(model, tok, reqs, res.deltas)
        else:
            expected = [_scored(model, tok, [r], d)[0] for r, (_, d) in zip(reqs, per_case)]
        assert [c["converged"] for c in res.log["cases"]] == expected, regime
        assert all("objective_converged" in c and "scored_p_new" in c for c in res.log["cases"])
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
