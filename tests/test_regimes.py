"""Editing regimes (batch, sequential, single, groups), versioned hparam sets, and the
single/groups regimes downstream (per-model evaluation, fine-tuning and health)."""
from __future__ import annotations

import pytest
import torch

from conftest import make_record
from edit_retention.editors import (EditResult, deltas_applied, get_editor, hparams_sets, load_edit,
                                    make_hparams, save_edit)
from edit_retention.editors.regimes import edit_groups, run_regime, single_deltas, spread_relations
from edit_retention.finetune import FinetuneArgs
from edit_retention.io import InputError
from edit_retention.editors.verify import verify_cases
from edit_retention.health_measure import measure_health
from edit_retention.single import evaluate_single, group_facts, pair_controls
from edit_retention.stages.finetune import finetune_single
from test_editors import ROME_HP, assert_same, p_new, reqs, sharpen, snapshot, stats, texts  # noqa: F401


class Recorder:
    """An editor that records what it saw: the weights at call time and the state passed."""
    name = "recorder"

    def __init__(self, param):
        self.param, self.calls = param, []

    def edit(self, model, tok, requests, hp, stats, state=None):
        w = dict(model.named_parameters())[self.param].detach().clone()
        self.calls.append({"ids": [r["case_id"] for r in requests], "w": w, "state": state})
        d = torch.full_like(w, float(len(self.calls)))
        seen = (state or {}).get("seen", []) + [r["case_id"] for r in requests]
        return EditResult(deltas={self.param: d}, log={"editor": "recorder", "n_requests": len(requests),
                                                       "edited_layers": [1], "edited_params": [self.param],
                                                       "cases": [{"case_id": r["case_id"]} for r in requests],
                                                       "seconds": 0.0, "warnings": []},
                          state={"seen": seen})


def test_sequential_sees_earlier_batches_and_state(tiny_model):
    model, tok = tiny_model
    name = "model.layers.1.mlp.down_proj.weight"
    w0 = dict(model.named_parameters())[name].detach().clone()
    snap = snapshot(model)
    ed = Recorder(name)
    res = run_regime(ed, model, tok, reqs(3), None, None, "sequential", 2)
    assert [c["ids"] for c in ed.calls] == [["c0", "c1"], ["c2"]]
    assert ed.calls[0]["state"] is None and ed.calls[1]["state"] == {"seen": ["c0", "c1"]}
    torch.testing.assert_close(ed.calls[1]["w"], w0 + 1.0)        # batch 2 computed on the edited model
    torch.testing.assert_close(res.deltas[name], torch.full_like(w0, 3.0))   # 1 + 2, summed
    assert res.log["regime"] == "sequential" and res.log["n_batches"] == 2 and res.log["n_requests"] == 3
    assert [c["batch"] for c in res.log["cases"]] == [0, 0, 1]
    assert res.state == {"seen": ["c0", "c1", "c2"]}
    assert_same(model, snap)


def test_single_each_from_base_and_round_trip(tiny_model, tmp_path):
    model, tok = tiny_model
    name = "model.layers.1.mlp.down_proj.weight"
    w0 = dict(model.named_parameters())[name].detach().clone()
    ed = Recorder(name)
    res = run_regime(ed, model, tok, reqs(2), None, None, "single")
    assert all(torch.equal(c["w"], w0) and c["state"] is None for c in ed.calls)
    save_edit(res, tmp_path / "e")
    per_case = single_deltas(load_edit(tmp_path / "e"))
    assert [cid for cid, _ in per_case] == ["c0", "c1"]
    assert float(per_case[1][1][name][0, 0]) == 2.0
    with pytest.raises(InputError, match="not made in the 'single' or 'groups' regime"):
        single_deltas(run_regime(Recorder(name), model, tok, reqs(1), None, None, "batch"))
    with pytest.raises(InputError, match="regime 'parallel' is unknown"):
        run_regime(ed, model, tok, reqs(1), None, None, "parallel")


def test_rome_sequential_keeps_earlier_edits(tiny_model, stats):
    model, tok = tiny_model
    sharpen(model)
    hp = make_hparams("rome", ROME_HP)
    r = reqs(2)
    before = p_new(model, tok, r)
    res = run_regime(get_editor("rome"), model, tok, r, hp, stats, "sequential", 1)
    with deltas_applied(model, res.deltas):
        after = p_new(model, tok, r)
    assert (after > 5 * before).all()


def test_hparams_sets_layering():
    assert {"smollm2-135m", "tiny", "gpt2-xl", "gpt-j-6b", "llama3-8b"} <= set(hparams_sets("rome"))
    assert make_hparams("rome", None, "gpt2-xl").layer == 17
    assert make_hparams("rome", {"layer": 3}, "gpt2-xl").layer == 3          # the study config wins
    assert make_hparams("ft_l", None, "smollm2-135m").norm_constraint == 2e-2
    with pytest.raises(InputError, match="no hyperparameter file for editor 'rome' and set 'gpt5'"):
        make_hparams("rome", None, "gpt5")


def test_pairing_and_single_evaluation(tiny_model):
    model, tok = tiny_model
    sharpen(model)
    edited = [make_record(0, "Freedonia", "Paris", "Rome"), make_record(1, "Sylvania", "Lyon", "Berlin")]
    control = [make_record(i, s, "Oslo", "Graz") for i, s in ((2, "Ruritania"), (3, "Latveria"), (4, "Genovia"))]
    assert [[c["case_id"] for c in g] for g in pair_controls(edited, control)] == [["c2", "c4"], ["c3"]]
    para = {r["case_id"]: {"augment": [], "evaluate": ["{}'s capital city is"]} for r in edited + control}
    hp = make_hparams("ft_l", {"layers": [1], "lr": 1e-2, "norm_constraint": 5e-2, "steps": 10})
    res = run_regime(get_editor("ft_l"), model, tok, reqs(2), hp, None, "single")
    per_case = single_deltas(res)
    rows = evaluate_single(model, tok, edited, control, para, edit_groups(res), batch_size=4, generation_tokens=3)
    assert all(isinstance(r.get("generation"), str) == (r["kind"] != "neighborhood") for r in rows)
    rewrite = {r["case_id"]: r for r in rows if r["kind"] == "rewrite"}
    assert set(rewrite) == {"c0", "c1", "c2", "c3", "c4"}
    for i, (cid, deltas) in enumerate(per_case):      # each fact scored under its own delta only
        with deltas_applied(model, deltas):
            assert rewrite[cid]["p_target"] == pytest.approx(float(p_new(model, tok, reqs(2)[i:i + 1])[0]), rel=1e-4)
    with pytest.raises(InputError, match="do not match the edited facts"):
        evaluate_single(model, tok, edited[:1], control, para, edit_groups(res))


def test_single_finetune_runs_per_fact_and_restores(tiny_model):
    model, tok = tiny_model
    snap = snapshot(model)
    edited = [make_record(0, "Freedonia", "Paris", "Rome"), make_record(1, "Sylvania", "Lyon", "Berlin")]
    control = [make_record(2, "Ruritania", "Oslo", "Graz")]
    para = {r["case_id"]: {"augment": [], "evaluate": ["{}'s capital city is"]} for r in edited + control}
    res = run_regime(get_editor("ft_l"), model, tok, reqs(2), make_hparams("ft_l", {"layers": [1], "steps": 3}),
                     None, "single")
    args = FinetuneArgs(steps=2, lr=1e-3, batch_size=2, seq_len=16, warmup_steps=1, eval_blocks=2,
                        checkpoint_every=1)
    ckpt: dict = {}
    rows, logs = finetune_single(model, tok, edited, control, para, edit_groups(res),
                                 texts(20), texts(8, seed=1), args, seed=0, frozen_layers=[1],
                                 checkpoint_rows=ckpt, generation_tokens=3)
    for got in [rows] + list(ckpt.values()):          # every phase carries the continuations
        assert all(isinstance(r.get("generation"), str) == (r["kind"] != "neighborhood") for r in got)
    assert sorted(ckpt) == [1]
    assert [g["case_id"] for g in logs] == ["c0", "c1"] and all(g["frozen_layers"] == [1] for g in logs)
    assert {r["case_id"] for r in rows} == {"c0", "c1", "c2"}
    assert_same(model, snap)


def rel_reqs(rels):
    """Requests c0, c1, ... with the given relations (the groups regime deals over them)."""
    names = ["Freedonia", "Sylvania", "Ruritania", "Latveria", "Genovia", "Florin"]
    return [dict(reqs(1)[0], case_id=f"c{i}", subject=names[i], relation=r) for i, r in enumerate(rels)]


def test_spread_relations_deals_round_robin():
    r = rel_reqs(["A", "A", "A", "B", "B", "C"])
    assert [x["case_id"] for x in spread_relations(r)] == ["c0", "c3", "c5", "c1", "c4", "c2"]
    plain = [{k: v for k, v in x.items() if k != "relation"} for x in r]
    assert spread_relations(plain) == plain                  # no relations: order kept


def test_groups_each_from_base_spread_over_relations_and_round_trip(tiny_model, tmp_path):
    model, tok = tiny_model
    name = "model.layers.1.mlp.down_proj.weight"
    w0 = dict(model.named_parameters())[name].detach().clone()
    snap = snapshot(model)
    ed = Recorder(name)
    res = run_regime(ed, model, tok, rel_reqs(["A", "A", "B", "B", "C"]), None, None, "groups", 2)
    # dealt A, B, C, A, B -> groups of two facts of different relations, each edited from the base model
    assert [c["ids"] for c in ed.calls] == [["c0", "c2"], ["c4", "c1"], ["c3"]]
    assert all(torch.equal(c["w"], w0) and c["state"] is None for c in ed.calls)
    assert res.log["regime"] == "groups" and res.log["batch_size"] == 2 and res.log["n_batches"] == 3
    save_edit(res, tmp_path / "e")
    groups = edit_groups(load_edit(tmp_path / "e"))
    assert [ids for ids, _ in groups] == [["c0", "c2"], ["c4", "c1"], ["c3"]]
    assert [float(d[name][0, 0]) for _, d in groups] == [1.0, 2.0, 3.0]
    per_case = dict(single_deltas(load_edit(tmp_path / "e")))     # a group's facts share its delta
    assert float(per_case["c1"][name][0, 0]) == float(per_case["c4"][name][0, 0]) == 2.0
    assert_same(model, snap)
    with pytest.raises(InputError, match="needs batch_size >= 1"):
        run_regime(ed, model, tok, rel_reqs(["A"]), None, None, "groups", 0)


def test_groups_downstream_one_model_per_group(tiny_model):
    """Evaluation, fine-tuning and health see one model per group: its facts and their paired controls."""
    model, tok = tiny_model
    snap = snapshot(model)
    edited = [make_record(0, "Freedonia", "Paris", "Rome"), make_record(1, "Sylvania", "Lyon", "Berlin"),
              make_record(2, "Ruritania", "Graz", "Oslo")]
    control = [make_record(i, s, "Oslo", "Graz") for i, s in ((3, "Latveria"), (4, "Genovia"), (5, "Florin"))]
    para = {r["case_id"]: {"augment": [], "evaluate": ["{}'s capital city is"]} for r in edited + control}
    hp = make_hparams("ft_l", {"layers": [1], "lr": 1e-2, "norm_constraint": 5e-2, "steps": 5})
    res = run_regime(get_editor("ft_l"), model, tok, reqs(3), hp, None, "groups", 2)
    groups = edit_groups(res)
    assert [ids for ids, _ in groups] == [["c0", "c1"], ["c2"]]
    per_model = group_facts(edited, control, groups)
    assert [([r["case_id"] for r in recs], [c["case_id"] for c in ctrl]) for recs, ctrl, _ in per_model] == \
        [(["c0", "c1"], ["c3", "c4"]), (["c2"], ["c5"])]
    rows = evaluate_single(model, tok, edited, control, para, groups, batch_size=4)
    rewrite = {r["case_id"]: r for r in rows if r["kind"] == "rewrite"}
    assert set(rewrite) == {f"c{i}" for i in range(6)}
    with deltas_applied(model, groups[0][1]):     # c1 is scored under its group's delta (shared with c0)
        assert rewrite["c1"]["p_target"] == pytest.approx(float(p_new(model, tok, reqs(2)[1:2])[0]), rel=1e-4)
    args = FinetuneArgs(steps=2, lr=1e-3, batch_size=2, seq_len=16, warmup_steps=1, eval_blocks=2)
    rows, logs = finetune_single(model, tok, edited, control, para, groups, texts(20), texts(8, seed=1), args,
                                 seed=0, frozen_layers=[])
    assert [g.get("case_ids", [g.get("case_id")]) for g in logs] == [["c0", "c1"], ["c2"]]   # one run per group
    assert {r["case_id"] for r in rows} == {f"c{i}" for i in range(6)}
    h = measure_health(model, tok, None, edited, control, texts(4), groups=groups, batch_size=4)
    assert h["n_control_agreement"] == 3 and h["n_first_token_es"] == 3
    assert set(h["per_fact"]["control_agreement"]) == {"c3", "c4", "c5"}
    assert_same(model, snap)


def test_groups_verify_scores_each_case_under_its_own_group(tiny_model):
    """Groups are dealt over relations, so the edit's order is not the requests' order: the
    edit log's convergence must still score every case under its own group's delta."""
    model, tok = tiny_model
    sharpen(model)
    r = rel_reqs(["A", "A", "B"])                   # dealt A, B, A -> groups [c0, c2], [c1]
    hp = make_hparams("ft_l", {"layers": [1], "lr": 1e-2, "norm_constraint": 5e-2, "steps": 10})
    res = run_regime(get_editor("ft_l"), model, tok, r, hp, None, "groups", 2)
    assert [ids for ids, _ in edit_groups(res)] == [["c0", "c2"], ["c1"]]
    verify_cases(model, tok, r, res, single_deltas(res))
    own = dict(single_deltas(res))
    for i, c in enumerate(r):
        case = next(x for x in res.log["cases"] if x["case_id"] == c["case_id"])
        with deltas_applied(model, own[c["case_id"]]):
            assert case["scored_p_new"] == pytest.approx(float(p_new(model, tok, r[i:i + 1])[0]), rel=1e-4)
    with pytest.raises(InputError, match="case ids do not match"):
        verify_cases(model, tok, r, res, single_deltas(res)[:1])
