"""What an edit log may call a success: the prompt ES scores, not the editor's own objective.

ROME/MEMIT/AlphaEdit stop their v* optimisation on P(target_new) averaged over the plain
prompt and prefixed copies of it; when the subject is the prompt's first token (no start
token: "Windows is developed by") the prefixed copies produce a different key, and the
average can pass while the plain prompt, the one ES scores, does not. So after every edit
each case is scored on its own main prompt under the edited model (the probability test of
``metrics.prob_success``, the same function ES uses):

    converged        True only when that scored prompt succeeds
    scored_p_new     P(target_new) there (per-token geometric mean)
    scored_p_true    P(target_true) there
    objective_converged  the editor's own early-stop flag (kept, renamed), when it has one

and the log gains ``n_converged`` and ``not_converged`` (case ids), which the report names.
"""
from __future__ import annotations

from ..evaluate import score_items
from ..io import InputError
from ..metrics import row_success
from ..records import fill
from .base import EditResult, deltas_applied


def _item(r: dict) -> dict:
    return {"case_id": r["case_id"], "knowledge": "edited", "kind": "rewrite", "index": 0,
            "prompt": fill(r["prompt"], r["subject"]), "target": r["target_new"], "alt": r["target_true"]}


def verify_cases(model, tok, requests: list[dict], result: EditResult, per_case=None) -> EditResult:
    """Mark each case of ``result.log["cases"]`` by its scored prompt (see the module doc).
    ``per_case``: (case_id, deltas) per request for the single regime; else ``result.deltas``
    is the edit of every request. The model is unchanged on return."""
    items = [_item(r) for r in requests]
    if per_case is None:
        with deltas_applied(model, result.deltas):
            rows = score_items(model, tok, items, progress=False)
    else:
        rows, own = [], dict(per_case)       # each case under its own model's deltas, matched by id
        if sorted(own) != sorted(r["case_id"] for r in requests):
            raise InputError("verify_cases: the per-case deltas' case ids do not match the requests")
        for it, r in zip(items, requests):
            with deltas_applied(model, own[r["case_id"]]):
                rows += score_items(model, tok, [it], progress=False)
    by_id = {row["case_id"]: row for row in rows}
    cases = result.log.setdefault("cases", [])
    known = {c.get("case_id") for c in cases}
    cases += [{"case_id": r["case_id"]} for r in requests if r["case_id"] not in known]
    for c in cases:
        row = by_id.get(c.get("case_id"))
        if row is None:
            continue
        if "converged" in c:
            c["objective_converged"] = c.pop("converged")
        c.update(converged=row_success(row), scored_p_new=row["p_target"], scored_p_true=row["p_alt"])
    failed = [c["case_id"] for c in cases if c.get("case_id") in by_id and not c["converged"]]
    result.log.update(n_converged=len(by_id) - len(failed), not_converged=failed)
    return result
