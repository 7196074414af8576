"""Summary table from synthetic score files with hand-computed expected values."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from edit_retention.io import InputError, write_json, write_jsonl
from edit_retention.summarize import summarize
from edit_retention.summary_table import COLUMNS, headline_metrics, read_summary, write_summary

ALT_P = 0.1  # every alternative has probability 0.1, so a prompt succeeds iff p_target > 0.1


def _row(cid, knowledge, kind, index, p, top1=None):
    top1 = p > 0.3 if top1 is None else top1   # the first-token protocol mostly agrees here
    return {"case_id": cid, "knowledge": knowledge, "kind": kind, "index": index,
            "prompt": f"{cid} {kind} {index}", "target": "t", "alt": "a",
            "lp_target": math.log(p), "n_target": 1, "lp_alt": math.log(ALT_P), "n_alt": 1,
            "p_target": p, "p_alt": ALT_P, "top1": top1}


def _phase(rewrite: dict, para: dict, neigh: dict, intr_rewrite: dict, intr_para: dict) -> list[dict]:
    """Rows from {case_id: p} (rewrite / neighbourhood) and {case_id: [p, ...]} (paraphrases)."""
    rows = [_row(c, "edited", "rewrite", 0, p, top1=p > 0.3) for c, p in rewrite.items()]
    rows += [_row(c, "edited", "paraphrase", j, p) for c, ps in para.items() for j, p in enumerate(ps)]
    rows += [_row(c, "edited", "neighborhood", 0, p) for c, p in neigh.items()]
    rows += [_row(c, "intrinsic", "rewrite", 0, p) for c, p in intr_rewrite.items()]
    rows += [_row(c, "intrinsic", "paraphrase", j, p) for c, ps in intr_para.items() for j, p in enumerate(ps)]
    return rows


T, F = 0.5, 0.05  # a succeeding / failing paraphrase probability
PHASES = {
    "base": _phase({"e0": .01, "e1": .01, "e2": .01, "e3": .01}, {"e0": [F, F]}, {"e0": .9},
                   {"i0": .9, "i1": .9, "i2": .9}, {"i0": [T, T]}),
    # edited: ES on e0,e1,e2; paraphrases e0 [T,T] e1 [T,F] e2 [F,F] e3 [T,F]
    "edited": _phase({"e0": .5, "e1": .4, "e2": .2, "e3": .05},
                     {"e0": [T, T], "e1": [T, F], "e2": [F, F], "e3": [T, F]},
                     {"e0": .9, "e1": .9, "e2": .9, "e3": .05},
                     {"i0": .9, "i1": .9, "i2": .9}, {"i0": [T, T], "i1": [T, F]}),
    # finetuned: e0 kept, e1 and e2 forgotten, e3 newly succeeds (not counted)
    "finetuned": _phase({"e0": .25, "e1": .05, "e2": .05, "e3": .2},
                        {"e0": [T, F], "e1": [F, F], "e2": [F, F], "e3": [T, T]},
                        {"e0": .9, "e1": .9, "e2": .05, "e3": .05},
                        {"i0": .9, "i1": .9, "i2": .05}, {"i0": [T, T], "i1": [T, T]}),
}


def _files(tmp_path, phases=PHASES):
    paths = {}
    for name, rows in phases.items():
        paths[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    return paths


def _cell(paths, editor="rome", remedy="none", **extra):
    return {"model": "tiny", "editor": editor, "task": "text", "remedy": remedy, "seed": 0,
            "phases": {k: str(v) for k, v in paths.items()}, **extra}


def _get(df, knowledge, phase, metric, editor="rome"):
    sel = df[(df.editor == editor) & (df.knowledge == knowledge) & (df.phase == phase) & (df.metric == metric)]
    assert len(sel) == 1, (knowledge, phase, metric, len(sel))
    return float(sel["value"].iloc[0]), sel["n"].iloc[0]


def test_columns_and_exact_values(tmp_path):
    df = summarize([_cell(_files(tmp_path))])
    assert list(df.columns) == COLUMNS
    expect = {
        ("edited", "base", "rewrite_success"): (0.0, 4),
        ("edited", "edited", "rewrite_success"): (0.75, 4),
        ("edited", "edited", "paraphrase_success"): (0.5, 4),      # mean of 1, .5, 0, .5
        ("edited", "edited", "neighborhood_success"): (0.75, 4),
        ("edited", "edited", "top1_accuracy"): (0.5, 4),           # p > 0.3: e0, e1
        ("edited", "edited", "target_prob"): ((.5 + .4 + .2 + .05) / 4, 4),
        ("edited", "finetuned", "retention_rewrite"): (1 / 3, 3),  # of e0,e1,e2 only e0
        ("edited", "finetuned", "efr"): (2 / 3, 3),
        ("edited", "finetuned", "retention_paraphrase"): (0.5, 4),  # per prompt: e0/0 e0/1 e1/0 e3/0
        ("edited", "finetuned", "target_prob_ratio"): (0.5, 4),     # (.5 * .125 * .25 * 4) ** .25
        ("intrinsic", "base", "rewrite_success"): (1.0, 3),
        ("intrinsic", "edited", "paraphrase_success"): (0.75, 2),
        ("intrinsic", "finetuned", "retention_rewrite"): (2 / 3, 3),
        ("intrinsic", "finetuned", "retention_paraphrase"): (1.0, 3),
        ("intrinsic", "finetuned", "target_prob_ratio"): ((0.05 / 0.9) ** (1 / 3), 3),
    }
    for (knowledge, phase, metric), (value, n) in expect.items():
        got_v, got_n = _get(df, knowledge, phase, metric)
        assert got_v == pytest.approx(value) and got_n == n, (knowledge, phase, metric)
    # retention-type metrics only after fine-tuning; neighbourhood only for edited facts
    assert set(df[df.metric == "retention_rewrite"].phase) == {"finetuned"}
    assert "neighborhood_success" not in set(df[df.knowledge == "intrinsic"].metric)


def test_shared_base_file_repeats_its_rows_per_cell(tmp_path):
    paths = _files(tmp_path)
    df = summarize([_cell(paths, editor="rome"), _cell(paths, editor="memit")])
    base = df[df.phase == "base"]
    # one copy of every base-phase metric under each cell's labels, with identical values
    assert len(base) == 2 * len(base[base.editor == "rome"])
    a = base[base.editor == "rome"].drop(columns="editor").reset_index(drop=True)
    b = base[base.editor == "memit"].drop(columns="editor").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_nan_kept_and_written(tmp_path):
    phases = dict(PHASES)
    phases["edited"] = [dict(r, p_target=0.01, lp_target=math.log(0.01)) if r["knowledge"] == "intrinsic" else r
                        for r in PHASES["edited"]]  # no intrinsic fact holds before fine-tuning
    df = summarize([_cell(_files(tmp_path, phases))])
    v, n = _get(df, "intrinsic", "finetuned", "retention_rewrite")
    assert math.isnan(v) and n == 0
    write_summary(df, tmp_path / "out" / "summary.csv", tmp_path / "out" / "metrics.json")
    text = (tmp_path / "out" / "summary.csv").read_text()
    assert "intrinsic,finetuned,retention_rewrite,NaN,0" in text
    back = read_summary(tmp_path / "out" / "summary.csv")
    assert len(back) == len(df) and back["value"].isna().sum() == df["value"].isna().sum()
    head = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert head["rome"]["none"]["intrinsic_retention"] is None
    assert head["rome"]["none"]["edited_retention"] == pytest.approx(1 / 3)


def test_empty_scores_file_raises_naming_it(tmp_path):
    paths = _files(tmp_path)
    paths["finetuned"].write_text("")
    # Emptied after its job wrote it: the checksum sidecar names it with the rebuild command.
    with pytest.raises(InputError, match=r"finetuned.jsonl: damaged .* --forcerun .*finetuned.jsonl"):
        summarize([_cell(paths)])
    # Empty as written (no sidecar, e.g. a file of the user's): the cell is named.
    (tmp_path / ".finetuned.jsonl.sha256").unlink()
    with pytest.raises(InputError, match=r"editor=rome.*finetuned.jsonl is empty"):
        summarize([_cell(paths)])


def test_task_metrics_and_headline(tmp_path):
    paths = _files(tmp_path)
    write_json(tmp_path / "task.json", {"eval_loss": 2.5, "eval_perplexity": 12.18, "eval_samples": 40})
    df = summarize([_cell(paths, task_metrics=str(tmp_path / "task.json")),
                    _cell(paths, remedy="freeze")])
    task = df[df.knowledge == "task"]
    assert set(task.metric) == {"eval_loss", "eval_perplexity", "eval_samples"}
    assert set(task.phase) == {"finetuned"} and set(task.remedy) == {"none"}
    assert _get(df, "task", "finetuned", "eval_loss") == (2.5, 40)
    head = headline_metrics(df)
    assert set(head["rome"]) == {"none", "freeze"}
    assert head["rome"]["none"] == pytest.approx(
        {"edited_retention": 1 / 3, "intrinsic_retention": 2 / 3, "edited_es_after_edit": 0.75})
    assert all(type(v) is float for v in head["rome"]["freeze"].values())


def test_retention_table_has_one_row_per_cell_and_knowledge():
    import pandas as pd
    from edit_retention.summary_table import retention_table
    df = pd.DataFrame([
        dict(model="m", editor="rome", task="t", remedy="none", seed=0, knowledge=k, phase="finetuned",
             metric=metric, value=v, n=4)
        for k, metric, v in [("edited", "retention_rewrite", 0.5), ("intrinsic", "retention_rewrite", 1.0),
                             ("edited", "rewrite_success", 0.9), ("task", "eval_loss", 3.0)]])
    t = retention_table(df)
    assert t.to_dict("records") == [{"cell": "rome/none/t/s0/edited", "retention": 0.5, "n": 4},
                                    {"cell": "rome/none/t/s0/intrinsic", "retention": 1.0, "n": 4}]


# --- units, cells table with CIs, step phases, problems --------------------------------

from edit_retention.summarize import relations_of, summarize_all, write_results  # noqa: E402
from edit_retention.tables import read_table  # noqa: E402


def test_units_reproduce_every_summary_value(tmp_path):
    paths = _files(tmp_path)
    res = summarize_all([_cell(paths)], n_boot=50)
    u = res.units
    for _, r in res.summary[res.summary.knowledge != "task"].iterrows():
        sel = u[(u.knowledge == r.knowledge) & (u.phase == r.phase) & (u.metric == r.metric)]
        if r.n == 0:
            assert sel.den.sum() == 0
            continue
        v = sel.num.sum() / sel.den.sum()
        v = math.exp(v) if r.metric == "target_prob_ratio" else v
        assert v == pytest.approx(r.value), (r.knowledge, r.phase, r.metric)


def test_step_phases_are_accepted_and_ordered(tmp_path):
    phases = dict(PHASES)
    phases["step-10"] = PHASES["edited"]
    phases["step-2"] = PHASES["finetuned"]
    paths = _files(tmp_path, phases)
    cell = _cell({k: paths[k] for k in ("finetuned", "step-10", "base", "step-2", "edited")})
    df = summarize([cell])
    assert list(dict.fromkeys(df.phase)) == ["base", "edited", "step-2", "step-10", "finetuned"]
    assert _get(df, "edited", "step-10", "retention_rewrite") == (1.0, 3)
    assert _get(df, "edited", "step-2", "retention_rewrite")[0] == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="unknown phase 'later'"):
        summarize([_cell({**paths, "later": paths["edited"]})])


def test_cli_cell_parser_takes_step_phases():
    from edit_retention.stages.summarize import parse_cell as parse
    c = parse("model=m,editor=e,task=t,remedy=r,seed=2,finetuned=F,step-10=S10,base=B,step-2=S2,edited=E,"
              "task_metrics=T")
    assert list(c["phases"]) == ["base", "edited", "step-2", "step-10", "finetuned"]
    assert c["seed"] == 2 and c["task_metrics"] == "T"


def test_cells_table_pools_seeds_with_ci_and_traits(tmp_path):
    write_jsonl(tmp_path / "records.jsonl", [{"case_id": c, "relation": "P1"} for c in
                                             ("e0", "e1", "e2", "e3", "i0", "i1", "i2")])
    paths = _files(tmp_path)
    cells = [_cell(paths, seed=s) for s in (0, 1)]
    for c, s in zip(cells, (0, 1)):
        c["seed"] = s
    res = summarize_all(cells, relations_of([tmp_path / "records.jsonl"]),
                        {"none": {"paraphrase_k": 0, "freeze": "none"}},
                        {"text": {"params": {"steps": 40, "batch_size": 8, "seq_len": 64}}}, n_boot=100)
    row = res.cells[(res.cells.knowledge == "edited") & (res.cells.phase == "finetuned")
                    & (res.cells.metric == "retention_rewrite")].iloc[0]
    assert row.value == pytest.approx(1 / 3) and row.n == 6 and row.n_facts == 3 and row.n_seeds == 2
    assert row.ci_low <= row.value <= row.ci_high and row.seeds == "0;1" and row.seed_std == 0
    assert (row.paraphrase_k, row.freeze, row.method, row.n_edits, row.step) == (0, "none", "full", 4, 40)
    assert row.tokens == 40 * 8 * 64      # token positions trained: step x batch_size x seq_len
    edited_phase = res.cells[(res.cells.knowledge == "edited") & (res.cells.phase == "edited")]
    assert (edited_phase.tokens == 0).all() and res.cells[res.cells.phase == "base"].tokens.isna().all()
    assert set(res.units.relation) == {"P1"} and res.problems.empty
    write_results(res, tmp_path / "o/summary.csv", tmp_path / "o/metrics.json", tmp_path / "o/cells.csv",
                  tmp_path / "o/facts.csv", tmp_path / "o/problems.csv")
    back = read_table(tmp_path / "o/cells.csv")
    assert len(back) == len(res.cells) and back.value.isna().sum() == res.cells.value.isna().sum()
    assert list(read_summary(tmp_path / "o/summary.csv").columns) == COLUMNS


def test_problems_name_n0_nan_missing_seed_and_failed_cell(tmp_path):
    phases = dict(PHASES)
    phases["edited"] = [dict(r, p_target=0.01, lp_target=math.log(0.01)) if r["knowledge"] == "intrinsic" else r
                        for r in PHASES["edited"]]
    paths = _files(tmp_path, phases)
    write_json(tmp_path / "nan.json", {"eval_loss": None})
    good = _cell(paths, task_metrics=str(tmp_path / "nan.json"))
    other_seed = dict(_cell(paths, remedy="freeze"), seed=1)
    failed = dict(_cell(paths, remedy="freeze"), phases={**{k: str(v) for k, v in paths.items()},
                                                          "finetuned": str(tmp_path / "missing.jsonl")})
    with pytest.raises((InputError, OSError)):
        summarize_all([good, other_seed, failed], n_boot=20)
    res = summarize_all([good, other_seed, failed], remedies={"none": {"paraphrase_k": 0, "freeze": "none"}},
                        allow_missing=True, n_boot=20)
    text = res.problems.problem.tolist()
    assert any(p.startswith("n = 0") for p in text)                        # intrinsic retention
    assert any(p.startswith("value is NaN") for p in text)                 # eval_loss null
    assert any(p.startswith("cell failed") and "missing.jsonl" in p for p in text)
    missing = res.problems[res.problems.problem.str.startswith("seed missing")]
    assert set(zip(missing.remedy, missing.seed)) == {("none", 1), ("freeze", 0)}
    assert any("no relation" in p for p in text) and any("'freeze'" in p or "not defined" in p for p in text)
    # the failed cell is absent from the summary, not averaged in
    assert set(zip(res.summary.remedy, res.summary.seed)) == {("none", 0), ("freeze", 1)}


def test_plot_tables_for_dvc():
    """curve_table: baseline-remedy retention per step, from 1 at step 0; effect_table: every
    claim contrast with an estimate (the CSV data behind `dvc plots diff`)."""
    from edit_retention.plot_data import curve_table, effect_table

    def cell(remedy, k, freeze, knowledge, phase, step, value):
        return dict(model="m", editor="rome", task="text", remedy=remedy, knowledge=knowledge, phase=phase,
                    metric="retention_rewrite", value=value, ci_low=value - 0.1, ci_high=min(1.0, value + 0.1),
                    n=10, paraphrase_k=k, freeze=freeze, method="full", step=step)

    cells = pd.DataFrame([cell("none", 0, "none", "edited", "finetuned", 4, 0.5),
                          cell("none", 0, "none", "edited", "step-2", 2, 0.7),
                          cell("none", 0, "none", "intrinsic", "finetuned", 4, 0.9),
                          cell("freeze", 0, "edited", "edited", "finetuned", 4, 0.8)])
    curves = curve_table(cells)
    assert list(curves.columns) == ["curve", "step", "retention", "ci_low", "ci_high", "n"]
    edited = curves[curves.curve == "rome/edited"]
    assert edited.step.tolist() == [0, 2, 4] and edited.retention.tolist() == [1.0, 0.7, 0.5]
    assert set(curves.curve) == {"rome/edited", "rome/intrinsic"}
    claims = pd.DataFrame({"claim": ["C1", "C2"], "scope": ["all", "all"], "contrast": ["a - b", "c - d"],
                           "effect": [0.2, float("nan")], "ci_low": [0.1, float("nan")],
                           "ci_high": [0.3, float("nan")], "verdict": ["supports", "not in this grid"]})
    effects = effect_table(claims)
    assert effects.to_dict("records") == [{"contrast": "C1 all: a - b", "effect": 0.2, "ci_low": 0.1,
                                           "ci_high": 0.3, "verdict": "supports"}]
