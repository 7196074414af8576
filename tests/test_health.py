"""Edit health: the measures on hand-built cases, and the gate on a deliberately broken edit."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import make_record
from edit_retention.health import gate
from edit_retention.health_measure import delta_rel_norms, greedy_next, measure_health, text_nll
from edit_retention.io import InputError

TEXTS = ["The library reads the file line by line and returns a list of records.",
         "Each call opens a new connection, so close it when the work is done."]


def test_gate_thresholds():
    healthy = {"control_agreement": 0.95, "neighborhood_agreement": 0.9, "first_token_es": 0.5, "ppl_ratio": 1.02}
    assert gate(healthy) == []
    broken = {"control_agreement": 0.04, "neighborhood_agreement": 0.9, "ppl_ratio": 1.5}
    problems = gate(broken)
    assert len(problems) == 2 and "control agreement 0.04 < 0.8" in problems[0] and "perplexity" in problems[1]
    # the defaults: ROME's single edits here (controls 10/12, neighbours 0.735, first-token ES
    # 10/12) pass; MEMIT in groups of 6 (0.75, 0.583) and an edit that did not take do not
    assert gate({"control_agreement": 10 / 12, "neighborhood_agreement": 0.735, "first_token_es": 10 / 12}) == []
    assert len(gate({"control_agreement": 0.75, "neighborhood_agreement": 0.583, "first_token_es": 0.85})) == 2
    assert gate({"control_agreement": 0.92, "neighborhood_agreement": 0.77, "first_token_es": 0.10}) == \
        ["first-token ES 0.10 < 0.5"]
    # a threshold of the study overrides the default; nan never fails
    assert gate({"control_agreement": 0.85}, {"min_control_agreement": 0.9}) == ["control agreement 0.85 < 0.9"]
    assert gate({"control_agreement": float("nan")}) == []
    assert gate({"first_token_es": 0.1}, {"min_first_token_es": 0.5}) == ["first-token ES 0.10 < 0.5"]
    with pytest.raises(InputError, match="unknown"):
        gate(healthy, {"min_controls": 0.9})


def test_greedy_next_matches_argmax_and_batching(tiny_model):
    model, tok = tiny_model
    prompts = ["The capital of France is", "Berlin is located in the country of", "A"]
    one = greedy_next(model, tok, prompts, batch_size=1)
    many = greedy_next(model, tok, prompts, batch_size=8)
    assert one == many
    with torch.no_grad():
        ids = tok(prompts[1], return_tensors="pt")["input_ids"]
        assert one[1] == int(model(input_ids=ids).logits[0, -1].argmax())


def test_delta_norms_relative_to_weight(tiny_model):
    model, _ = tiny_model
    name, w = next((n, p) for n, p in model.named_parameters() if n.endswith("mlp.down_proj.weight"))
    d = 2.0 * w.detach().clone()
    assert delta_rel_norms(model, {name: d})[name] == pytest.approx(2.0, rel=1e-6)


def _records(n):
    subjects = ["Freedonia", "Sylvania", "Latveria", "Genovia", "Zubrowka", "Elbonia"]
    return [make_record(i, subject=s) for i, s in enumerate(subjects[:n])]


def test_nil_edit_keeps_everything_but_fails_the_gate(tiny_model):
    model, tok = tiny_model
    edited, control = _records(3), _records(6)[3:]
    name = next(n for n, _ in model.named_parameters() if n.endswith("mlp.down_proj.weight"))
    zero = {name: torch.zeros_like(dict(model.named_parameters())[name])}
    h = measure_health(model, tok, zero, edited, control, TEXTS)
    assert h["control_agreement"] == 1.0 and h["ppl_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert h["delta_rel_norm"] == 0.0
    assert "the edit changed nothing: max |delta|/|W| 0 < 1e-06" in gate(h)
    assert gate(h, {"min_first_token_es": 0.0}) == ["the edit changed nothing: max |delta|/|W| 0 < 1e-06"]
    assert gate(dict(h, delta_rel_norm=0.05), {"min_first_token_es": 0.0}) == []


def test_huge_delta_fails_the_gate_and_model_is_restored(tiny_model):
    model, tok = tiny_model
    edited, control = _records(3), _records(6)[3:]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    deltas = {n: 50 * p.detach().norm() / p.numel() ** 0.5 * torch.randn(p.shape, generator=g)
              for n, p in model.named_parameters() if ".mlp.down_proj" in n}
    h = measure_health(model, tok, deltas, edited, control, TEXTS)
    assert h["delta_rel_norm"] > 10
    # a random tiny model predicts near-uniformly, so its perplexity need not rise; what
    # it says does change
    assert h["control_agreement"] < 0.9
    problems = gate(h)
    assert any("control agreement" in p for p in problems)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert text_nll(model, tok, TEXTS) == pytest.approx(math.log(h["ppl_base"]), rel=1e-5)


def test_single_regime_pools_per_fact_models(tiny_model):
    model, tok = tiny_model
    edited, control = _records(2), _records(4)[2:]
    name = next(n for n, _ in model.named_parameters() if n.endswith("mlp.down_proj.weight"))
    w = dict(model.named_parameters())[name]
    groups = [([edited[0]["case_id"]], {name: torch.zeros_like(w)}), ([edited[1]["case_id"]], {name: 0.5 * w.detach()})]
    h = measure_health(model, tok, None, edited, control, TEXTS, groups=groups)
    assert h["delta_rel_norm"] == pytest.approx(0.5, rel=1e-6)
    assert h["n_control_agreement"] == len(control) and h["n_first_token_es"] == 2
    with pytest.raises(InputError, match="do not match the edited facts"):
        measure_health(model, tok, None, edited, control, TEXTS, groups=groups[:1])


# ------------------------------------------------------------------ results: rows, table, gate
from _synth import KEEP, REMEDIES, TASKS, make_grid  # noqa: E402

from edit_retention.claims import evaluate_claims  # noqa: E402
from edit_retention.health_table import UNHEALTHY, health_table, unhealthy_scopes  # noqa: E402
from edit_retention.io import write_json  # noqa: E402
from edit_retention.report_results import health_section  # noqa: E402
from edit_retention.summarize import relations_of, summarize_all  # noqa: E402


def _health_file(path, control_hits: int, k: int = 0, ppl: float = 1.02):
    n = 12
    h = {"control_agreement": control_hits / n, "neighborhood_agreement": 0.9, "first_token_es": 0.75,
         "ppl_ratio": ppl, "delta_rel_norm": 0.2, "n_control_agreement": n, "n_first_token_es": n,
         "n_neighborhood_agreement": 10, "n_texts": 32, "regime": "batch", "k": k, "n_requests": n,
         "per_fact": {"control_agreement": {f"i{j}": [int(j < control_hits), 1] for j in range(n)},
                      "first_token_es": {f"e{j}": [int(j % 4 != 0), 1] for j in range(n)},
                      "neighborhood_agreement": {f"e{j}": [1, 1] for j in range(10)}}}
    write_json(path, h)
    return str(path)


@pytest.fixture(scope="module")
def health_grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hgrid")
    cells, rec = make_grid(tmp, list(REMEDIES), KEEP, steps=(2,), n=12, editors=("rome", "memit"))
    files = {("rome", k): _health_file(tmp / f"rome_k{k}.json", control_hits=1, k=k) for k in (0, 1, 3)}
    files |= {("memit", k): _health_file(tmp / f"memit_k{k}.json", control_hits=12, k=k) for k in (0, 1, 3)}
    for c in cells:
        c["health"] = files[(c["editor"], REMEDIES[c["remedy"]]["paraphrase_k"])]
    res = summarize_all(cells, relations_of([rec]), REMEDIES, TASKS, n_boot=50,
                        health_thresholds={"min_control_agreement": 0.9, "n_texts": 32})
    return res


def test_health_rows_units_and_intervals_in_the_results(health_grid):
    s = health_grid.summary
    row = s[(s.editor == "rome") & (s.metric == "health_control_agreement") & (s.remedy == "none") & (s.seed == 0)]
    assert len(row) == 1 and row.knowledge.iloc[0] == "intrinsic" and row.phase.iloc[0] == "edited"
    assert row.value.iloc[0] == pytest.approx(1 / 12) and int(row.n.iloc[0]) == 12
    c = health_grid.cells
    cell = c[(c.editor == "memit") & (c.metric == "health_first_token_es") & (c.remedy == "none")].iloc[0]
    assert cell.value == pytest.approx(9 / 12) and cell.ci_low < cell.value < cell.ci_high
    assert set(s[s.metric == "health_ppl_ratio"].value) == {1.02}


def test_gate_table_problems_and_withheld_claims(health_grid):
    t = health_grid.health
    assert set(t.editor) == {"rome", "memit"} and len(t) == 6
    assert not t[t.editor == "rome"].healthy.any() and t[t.editor == "memit"].healthy.all()
    assert "control agreement 0.08 < 0.9" in t[t.editor == "rome"].problems.iloc[0]
    assert sum("edit unhealthy" in p for p in health_grid.problems.problem) == 3
    bad = unhealthy_scopes(t)
    assert set(bad) == {("tiny", "rome")}
    claims = evaluate_claims(health_grid.units, health_grid.cells, n_boot=50, n_perm=50, unhealthy=bad)
    rome = claims[claims.scope.str.startswith("tiny/rome/")]
    memit = claims[claims.scope.str.startswith("tiny/memit/")]
    assert (rome.verdict == UNHEALTHY).all() and "control agreement" in rome.note.iloc[0]
    assert not (memit.verdict == UNHEALTHY).any()
    pooled = claims[claims.scope == "all"]
    assert (pooled[pooled.verdict != "not in this grid"].verdict == UNHEALTHY).all()
    plain = evaluate_claims(health_grid.units, health_grid.cells, n_boot=50, n_perm=50)
    assert not (plain.verdict == UNHEALTHY).any()
    md = health_section(t)
    assert "**unhealthy**" in md and "healthy" in md and md.count("\n") == len(t) + 1


def test_health_table_thresholds_change_the_verdict_only(health_grid, tmp_path):
    cells = [{"model": "m", "editor": "rome", "task": "t", "remedy": "r", "seed": 0,
              "health": _health_file(tmp_path / "h.json", control_hits=10, ppl=1.2)}]
    strict = health_table(cells)
    assert not strict.healthy.iloc[0] and "perplexity ratio 1.200 > 1.1" in strict.problems.iloc[0]
    lax = health_table(cells, {"min_control_agreement": 0.5, "max_ppl_ratio": 1.5})
    assert lax.healthy.iloc[0] and lax.control_agreement.iloc[0] == strict.control_agreement.iloc[0]


def test_gate_message_never_rounds_a_failing_value_up_to_its_threshold():
    # 35 of 44 neighbours kept = 0.795: two decimals would print "0.80 < 0.8"
    problems = gate({"neighborhood_agreement": 35 / 44, "control_agreement": 0.95}, {"min_neighborhood_agreement": 0.8})
    assert problems == ["neighbourhood agreement 0.795 < 0.8"]


@pytest.mark.parametrize("v_lr", [1e30, 1e-30])
def test_rome_edit_with_a_learning_rate_that_moves_nothing_fails_the_gate(tiny_model, v_lr):
    """Issue 14 item 3: ROME with v_lr 1e30 (or 1e-30) writes a numerically nil delta: the
    edit log's scored P(target_new) is the unedited model's, and the gate names the edit as
    one that changed nothing (whatever the random model happened to prefer before)."""
    from edit_retention.editors import get_editor, make_hparams
    from edit_retention.editors.base import EditResult
    from edit_retention.editors.verify import verify_cases
    model, tok = tiny_model
    edited, control = _records(2), _records(4)[2:]
    reqs = [{**r, "aug_prompts": [], "held_out": []} for r in edited]
    res = get_editor("rome").edit(model, tok, reqs, make_hparams("rome", {"layer": 1, "v_lr": v_lr, "v_steps": 5}),
                                  None)
    before = {c["case_id"]: c["scored_p_new"] for c in verify_cases(model, tok, reqs, EditResult({}, {})).log["cases"]}
    after = {c["case_id"]: c["scored_p_new"] for c in verify_cases(model, tok, reqs, res).log["cases"]}
    assert after == pytest.approx(before, rel=1e-6)
    h = measure_health(model, tok, res.deltas, edited, control, TEXTS)
    assert h["delta_rel_norm"] < 1e-6
    assert any(p.startswith("the edit changed nothing") for p in gate(h))
