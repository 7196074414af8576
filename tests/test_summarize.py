"""Summary table from synthetic score files with hand-computed expected values."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from edit_retention.io import InputError, write_json, write_jsonl
from edit_retention.summarize import COLUMNS, headline_metrics, read_summary, summarize, write_summary

ALT_P = 0.1  # every alternative has probability 0.1, so a prompt succeeds iff p_target > 0.1


def _row(cid, knowledge, kind, index, p, top1=False):
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
    from edit_retention.summarize import retention_table
    df = pd.DataFrame([
        dict(model="m", editor="rome", task="t", remedy="none", seed=0, knowledge=k, phase="finetuned",
             metric=metric, value=v, n=4)
        for k, metric, v in [("edited", "retention_rewrite", 0.5), ("intrinsic", "retention_rewrite", 1.0),
                             ("edited", "rewrite_success", 0.9), ("task", "eval_loss", 3.0)]])
    t = retention_table(df)
    assert t.to_dict("records") == [{"cell": "rome/none/t/s0/edited", "retention": 0.5, "n": 4},
                                    {"cell": "rome/none/t/s0/intrinsic", "retention": 1.0, "n": 4}]
