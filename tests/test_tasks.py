"""Downstream tasks: offline defaults, original-format loaders, filtering, encoding, scores."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_record
from edit_retention.finetune import FinetuneArgs, finetune, task_metrics
from edit_retention.io import InputError
from edit_retention.tasks import TASKS, build_task_data, check_examples, get_task
from edit_retention.tasks.arithmetic import final_answer
from edit_retention.tasks.encoding import IGNORE, encode_supervised
from edit_retention.tasks.qa import normalise_answer

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
SUPERVISED = ["instruction", "math", "classification", "qa"]
RECORDS = [make_record()]


def test_registry_and_unknown_type():
    assert set(TASKS) == {"causal_lm", "instruction", "math", "classification", "qa"}
    with pytest.raises(InputError, match="unknown task type 'poetry'"):
        get_task("poetry")


@pytest.mark.parametrize("kind", SUPERVISED)
def test_builtin_default_is_offline_deterministic_and_split(kind):
    task = get_task(kind)
    a = build_task_data(task, {"type": "builtin"}, RECORDS, n_train=30, n_eval=6, seed=1)
    b = build_task_data(task, {"type": "builtin"}, RECORDS, n_train=30, n_eval=6, seed=1)
    assert a["train"] == b["train"] and a["eval"] == b["eval"]
    assert len(a["train"]) == 30 and len(a["eval"]) == 6
    texts = {task.text_of(e) for e in a["train"]}
    assert not texts & {task.text_of(e) for e in a["eval"]}
    assert check_examples(task, a["train"], "train.jsonl") == a["train"]   # round-trips its own schema
    json.dumps(a)  # JSON-serialisable as written by the task-data stage


def test_fact_filter_drops_examples_mentioning_a_fact():
    # "Ava" is one of the generator's names, "apples" one of its objects
    recs = [make_record(0, subject="Ava", true="apples", new="Rome")]
    out = build_task_data(get_task("math"), {"type": "builtin"}, recs, n_train=20, n_eval=5, seed=0)
    assert out["meta"]["n_dropped_by_filter_main"] > 0
    for ex in out["train"] + out["eval"]:
        assert "Ava" not in ex["question"] + ex["answer"] and "apples" not in ex["question"]


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_local_files_in_original_formats(tmp_path):
    alpaca = _write(tmp_path / "a.json", json.dumps([
        {"instruction": f"Write a haiku about clocks number {i}.", "input": "", "output": "Tick tock."}
        for i in range(4)] + [{"instruction": "Add them.", "input": "2, 3", "output": "5"}]))
    gsm = _write(tmp_path / "g.jsonl", "".join(json.dumps(
        {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}) + "\n"
        for i in range(5)))
    sst = _write(tmp_path / "s.tsv", "sentence\tlabel\nit 's a charming journey . \t1\nbleak and dull \t0\n"
                 "a fine film \t1\nutterly tedious \t0\n")
    nq = _write(tmp_path / "n.jsonl", "".join(json.dumps({"question": f"who wrote book {i}", "answer": [f"Author {i}"]})
                                               + "\n" for i in range(5)))
    out = build_task_data(get_task("instruction"), {"type": "file", "path": alpaca}, RECORDS, 3, 2)
    assert {"instruction", "input", "output"} == set(out["train"][0])
    out = build_task_data(get_task("math"), {"type": "file", "path": gsm}, RECORDS, 3, 2)
    assert all(final_answer(e["answer"]) for e in out["train"])
    out = build_task_data(get_task("classification"), {"type": "file", "path": sst, "eval_path": sst}, RECORDS, 2, 2)
    assert {e["label"] for e in out["eval"]} <= {0, 1} and out["eval"][0]["sentence"] == out["eval"][0]["sentence"].strip()
    out = build_task_data(get_task("qa"), {"type": "file", "path": nq}, RECORDS, 3, 2)
    assert isinstance(out["train"][0]["answer"], list)
    # columns under other names
    ren = _write(tmp_path / "r.jsonl", json.dumps({"q": "what is one", "a": ["1"]}) + "\n"
                 + json.dumps({"q": "what is two", "a": ["2"]}) + "\n")
    out = build_task_data(get_task("qa"), {"type": "file", "path": ren, "fields": {"question": "q", "answer": "a"}},
                          RECORDS, 1, 1)
    assert {e["question"] for e in out["train"] + out["eval"]} == {"what is one", "what is two"}


@pytest.mark.parametrize("kind, text, message", [
    ("math", '{"question": "q1?", "answer": "1\\n#### 1"}\n{"question": "q2?"}\n', r"g\.jsonl: record 1: missing field 'answer'"),
    ("math", '{"question": "q1?", "answer": "it is one"}\n', r"record 0: field 'answer' has no final answer after '####'"),
    ("classification", "sentence\tlabel\ngood\tmaybe\n", r"s\.tsv: record 0: field 'label' must be 0 or 1"),
    ("classification", "text\tlabel\ngood\t1\n", r"record 0: missing field 'sentence'"),
    ("qa", '{"question": "who", "answer": 3}\n', r"record 0: field 'answer' must be a list of strings"),
    ("instruction", '[{"instruction": "x"}]', r"a\.json: record 0: missing field 'output'"),
])
def test_bad_file_names_file_record_and_field(tmp_path, kind, text, message):
    name = {"math": "g.jsonl", "classification": "s.tsv", "qa": "n.jsonl", "instruction": "a.json"}[kind]
    path = _write(tmp_path / name, text)
    with pytest.raises(InputError, match=message):
        build_task_data(get_task(kind), {"type": "file", "path": path}, RECORDS, 1, 1)


def test_zero_usable_rows_and_too_few(tmp_path):
    path = _write(tmp_path / "n.jsonl", json.dumps({"question": "what is the capital of Freedonia", "answer": ["Paris"]}) + "\n"
                  + json.dumps({"question": "  ", "answer": ["x"]}) + "\n")
    with pytest.raises(InputError, match=r"n\.jsonl: zero usable rows \(2 read, 1 empty, 1 mention a fact\)"):
        build_task_data(get_task("qa"), {"type": "file", "path": path}, RECORDS, 1, 1)
    with pytest.raises(InputError, match="n_train=500"):
        build_task_data(get_task("math"), {"type": "file", "path": _write(
            tmp_path / "g.jsonl", json.dumps({"question": "q?", "answer": "#### 1"}) + "\n")}, RECORDS, 500, 1)


def test_source_errors(tmp_path):
    task = get_task("math")
    with pytest.raises(InputError, match="unknown task source type 'ftp'"):
        build_task_data(task, {"type": "ftp"}, RECORDS, 1, 1)
    with pytest.raises(InputError, match="unknown key 'colour' for task source type 'file'"):
        build_task_data(task, {"type": "file", "path": "x.jsonl", "colour": 1}, RECORDS, 1, 1)
    with pytest.raises(InputError, match="does not exist"):
        build_task_data(task, {"type": "file", "path": str(tmp_path / "nope.jsonl")}, RECORDS, 1, 1)


def test_hub_source_without_datasets_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)   # import fails; no network is touched
    with pytest.raises(InputError, match="needs the `datasets` package"):
        build_task_data(get_task("math"), {"type": "hf", "id": "openai/gsm8k", "config": "main"}, RECORDS, 1, 1)


@pytest.mark.skipif(not DATASETS.exists(), reason="../shared/datasets is absent")
@pytest.mark.parametrize("kind, source, check", [
    ("instruction", {"path": "alpaca/alpaca_en_demo_999.json"}, lambda e: e["output"]),
    ("math", {"path": "gsm8k/gsm8k_train.jsonl", "eval_path": "gsm8k/gsm8k_test.jsonl"},
     lambda e: final_answer(e["answer"]).lstrip("-").isdigit()),
    ("classification", {"path": "sst2/alps_sst2_train.tsv", "eval_path": "sst2/alps_sst2_dev.tsv"},
     lambda e: e["label"] in (0, 1)),
    ("qa", {"path": "nq_open/nq_open_dev.jsonl"}, lambda e: e["answer"]),
])
def test_real_data_files(kind, source, check):
    src = {"type": "file", **{k: str(DATASETS / v) for k, v in source.items()}}
    out = build_task_data(get_task(kind), src, RECORDS, n_train=20, n_eval=10, seed=0)
    assert len(out["train"]) == 20 and len(out["eval"]) == 10
    assert all(check(e) for e in out["train"] + out["eval"])
    assert out["meta"]["n_usable_main"] > 100


def test_instruction_uses_chat_template_and_masks_the_prompt(tiny_model):
    _, tok = tiny_model
    task = get_task("instruction")
    ex = {"instruction": "Sort the words.", "input": "b, a", "output": "a, b"}
    prompt, response = task.prompt_response(tok, ex)
    assert tok.chat_template and "<|im_start|>assistant" in prompt and "b, a" in prompt and response == "a, b"
    t = encode_supervised(task, tok, [ex], 128, "test")
    labels, ids = t["labels"][0], t["input_ids"][0]
    kept = labels != IGNORE
    assert tok.decode(ids[kept]).startswith("a, b") and ids[kept][-1] == tok.eos_token_id
    assert not kept[: len(tok(prompt, add_special_tokens=False)["input_ids"])].any()
    with pytest.raises(InputError, match="no example fits seq_len=4"):
        encode_supervised(task, tok, [ex], 4, "test")


def test_answer_parsing():
    assert final_answer("so 3 + 4 = 7\n#### 7") == "7"
    assert final_answer("#### 1,200") == "1200" and final_answer("#### $18.00") == "18"
    assert final_answer("no answer") is None
    assert normalise_answer("The Beatles!") == "beatles"


@pytest.mark.parametrize("kind", SUPERVISED)
def test_each_task_trains_and_reports_its_score(tiny_model, kind):
    model, tok = tiny_model
    task = get_task(kind)
    data = build_task_data(task, {"type": "builtin"}, RECORDS, n_train=12, n_eval=4, seed=0)
    args = FinetuneArgs(steps=2, lr=1e-3, batch_size=4, seq_len=96, warmup_steps=1, eval_examples=4, max_new_tokens=6)
    log = finetune(model, tok, data["train"], data["eval"], args, seed=0, progress=False, task=task)
    flat = task_metrics(log)
    assert log["task_metric"] == task.metric and flat["eval_samples"] == 4
    assert {"eval_loss", "eval_perplexity", "task_score", "task_score_before", task.metric} <= set(flat)
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat.values())
    assert log["eval_loss"] < log["eval_loss_before"]
    if task.higher_is_better:
        assert 0.0 <= flat["task_score"] <= 1.0
    else:
        assert math.isclose(flat["task_score"], math.exp(flat["eval_loss"]))


def test_nan_loss_stops_a_supervised_task(tiny_model):
    model, tok = tiny_model
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))
    task = get_task("classification")
    data = task.builtin({}, 8, 0)
    args = FinetuneArgs(steps=2, batch_size=2, seq_len=32, eval_examples=2)
    with pytest.raises(FloatingPointError, match="diverged.*task classification"):
        finetune(model, tok, data, data[:2], args, seed=0, progress=False, task=task)
