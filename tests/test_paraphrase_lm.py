"""LM paraphrase generator: the filter and dedup on hand-written candidates, the split
policy, generation on the tiny random model (seeded, batch-independent), CLI, config."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from conftest import make_record

from edit_retention import cli
from edit_retention.config import check_study
from edit_retention.io import InputError, read_json, read_jsonl, write_jsonl
from edit_retention.paraphrase import split_paraphrases, split_record
from edit_retention.paraphrase_lm import LMArgs, lm_paraphrases, merge_split
from edit_retention.paraphrase_lm_filter import (REASONS, continuation_lines, filter_candidates, normalise,
                                                 strip_object_slot, to_template)
from edit_retention.paraphrase_lm_generate import build_prompt, sample_continuations

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = ("Paris", "Rome")


def key(t):
    return " ".join(t.split()).lower()


# ------------------------------------------------------------------ pure functions

@pytest.mark.parametrize("raw, clean", [
    ("  Freedonia's   capital\tis ", "Freedonia's capital is"),
    ('"Freedonia\'s capital is"', "Freedonia's capital is"),
    ("“The seat of Freedonia's government is”", "The seat of Freedonia's government is"),
    ("'The capital city of Freedonia is'", "The capital city of Freedonia is"),
    ("1. Freedonia's capital is", "Freedonia's capital is"),
    ("(2) Freedonia's capital is", "Freedonia's capital is"),
    ("- Freedonia's capital is", "Freedonia's capital is"),
    ("Rewritten: Freedonia's capital is", "Freedonia's capital is"),
    ('Paraphrase 3: "Freedonia\'s capital is"', "Freedonia's capital is"),
    ("Freedonia's capital is", "Freedonia's capital is"),
])
def test_normalise_strips_whitespace_quotes_numbering_and_labels(raw, clean):
    assert normalise(raw) == clean


@pytest.mark.parametrize("raw, clean", [
    ("Freedonia's capital is ...", "Freedonia's capital is"),
    ("Freedonia's capital is...", "Freedonia's capital is"),
    ("Freedonia's capital is…", "Freedonia's capital is"),
    ("Freedonia's capital is:", "Freedonia's capital is"),
    ("Freedonia's capital is ___", "Freedonia's capital is"),
    ("Freedonia's capital is [blank]", "Freedonia's capital is"),
    ("Freedonia's capital is (...)", "Freedonia's capital is"),
    ("Freedonia's capital is —", "Freedonia's capital is"),
    ("Freedonia's capital is -", "Freedonia's capital is"),
    ('Freedonia\'s capital is ..."', "Freedonia's capital is"),
    ("Freedonia's capital is.", "Freedonia's capital is."),      # a full stop is not a slot
    ("The capital of Freedonia is", "The capital of Freedonia is"),
])
def test_strip_object_slot_removes_what_marks_the_missing_object(raw, clean):
    assert strip_object_slot(raw) == clean


@pytest.mark.parametrize("cand, reason", [
    ("", "empty"),
    ("The {capital} of Freedonia is", "brackets"),
    ("The capital of Freedonia is [City Name]", "brackets"),
    ("The capital of this country is", "no_subject"),
    ("The capital of Freedonians is", "no_subject"),                 # a whole word only
    ("Freedonia's capital, the capital of Freedonia, is", "subject_repeated"),
    ("Freedonia's capital is Paris", "contains_object"),
    ("Freedonia's capital, not rome, is", "contains_object"),        # the new object too, any case
    ("What is the capital of Freedonia?", "ends_sentence"),
    ("Freedonia has a capital.", "ends_sentence"),
    ("Freedonia's capital, in short,", "ends_sentence"),
    ("The country whose capital we ask for is Freedonia", "ends_with_subject"),
    ("Freedonia's capital", "too_short"),
    ("The city that " + "really " * 20 + "is the capital of Freedonia is", "too_long"),
])
def test_each_rejection_reason(cand, reason):
    assert to_template(cand, "Freedonia", OBJECTS) == (None, reason)


def test_kept_candidates_become_templates():
    assert to_template("Freedonia's capital city is", "Freedonia", OBJECTS) == ("{}'s capital city is", "kept")
    assert to_template("In Freedonia, the capital is", "Freedonia", OBJECTS) == ("In {}, the capital is", "kept")
    # the object inside the subject does not count (Luxembourg's capital is Luxembourg)
    assert to_template("The capital city of Luxembourg is", "Luxembourg", ("Luxembourg", "Rome")) == \
        ("The capital city of {} is", "kept")


def test_filter_dedups_against_the_prompt_and_each_other_and_counts_reasons():
    rec = make_record(0)
    cands = [("Freedonia's capital city is ...", False),
             ("  Freedonia's CAPITAL   city is", False),       # duplicate (case, space)
             ("The capital of Freedonia is ...", False),        # the main prompt
             ("The capital of Freedonia is Paris", False),      # contains_object
             ("The capital of Freedonia is located in", False),  # extends the prompt
             ("1. The city that is Freedonia's capital is:", False),
             ("Freedonia's seat of government is", True),       # cut by max_new_tokens
             ("Freedonia is", False),
             ("The capital of Freedonia where Kestrel Motors was founded is", False),
             ("the capital of freedonia is", False)]
    kept, counts = filter_candidates(cands, rec)
    assert kept == ["{}'s capital city is", "The city that is {}'s capital is"]
    assert counts == Counter(kept=2, duplicate=1, same_as_prompt=1, contains_object=1, extends_prompt=1,
                             truncated=1, too_short=1, no_subject=1, echoes_example=1)   # the subject's case counts
    assert set(counts) <= set(REASONS) | {"kept"}


def test_an_example_subject_is_no_echo_in_its_own_record():
    rec = {**make_record(0), "subject": "Kestrel Motors", "prompt": "{} was founded in the city of"}
    kept, counts = filter_candidates([("The city where Kestrel Motors was founded is ...", False)], rec)
    assert kept == ["The city where {} was founded is"] and counts == Counter(kept=1)


def test_continuation_lines_marks_only_the_cut_last_line():
    assert continuation_lines("A is\n\nB is", finished=True) == [("A is", False), ("B is", False)]
    assert continuation_lines("A is\nB i", finished=False) == [("A is", False), ("B i", True)]
    assert continuation_lines("   \n", finished=False) == []


# ------------------------------------------------------------------ split policy

GEN = ["{}'s seat of power is", "The city that is {}'s capital is", "The governing city of {} is",
       "The capital city of {} is"]   # the last one is one of make_record's templates too


def check_disjoint(row, rec):
    aug, ev = {key(t) for t in row["augment"]}, {key(t) for t in row["evaluate"]}
    assert not aug & ev and key(rec["prompt"]) not in aug | ev
    assert len(aug) == len(row["augment"]) and len(ev) == len(row["evaluate"])


def test_held_out_templates_stay_hand_written_by_default():
    rec = make_record(1)
    base = split_record(rec, 2, seed=0)
    row, used = merge_split(rec, GEN, 2, seed=0, mode="add")
    assert row["evaluate"] == base["evaluate"]          # the same as the template generator
    check_disjoint(row, rec)
    assert sorted(row["augment"]) == sorted(base["augment"] + used)
    assert "The capital city of {} is" not in used      # equal to a hand-written template
    assert used == GEN[:3]
    again, _ = merge_split(rec, GEN, 2, seed=0, mode="add")
    assert again == row
    row, used = merge_split(rec, GEN, 2, seed=0, mode="replace")
    assert row["evaluate"] == base["evaluate"] and row["augment"] == used
    held = {key(t) for t in base["evaluate"]}
    assert used == [t for t in GEN if key(t) not in held]   # a copy of a non-held-out one stays
    check_disjoint(row, rec)


def test_evaluate_from_all_splits_the_pool():
    rec = make_record(2)
    row, used = merge_split(rec, GEN, 2, seed=0, mode="add", evaluate_from="all")
    check_disjoint(row, rec)
    assert len(row["augment"]) + len(row["evaluate"]) == len(rec["paraphrase_prompts"]) + len(used)
    row, used = merge_split(rec, GEN, 2, seed=0, mode="replace", evaluate_from="all")
    check_disjoint(row, rec)
    assert sorted(row["augment"] + row["evaluate"]) == sorted(used) and len(used) == 4
    with pytest.raises(InputError, match="case_id 'c2': 1 distinct generated \\(mode replace\\) paraphrases, 2"):
        merge_split(rec, GEN[:1], 2, seed=0, mode="replace", evaluate_from="all")
    with pytest.raises(InputError, match="mode 'swap'"):
        merge_split(rec, GEN, 2, mode="swap")


def test_generator_with_a_stub_sampler_reports_counts():
    recs = [make_record(i) for i in range(3)]
    recs[2]["subject"] = "Sylvania"
    calls = []

    def stub(prompts, seeds, plain):
        calls.append((len(prompts), plain))
        assert all(len(s) == 2 for s in seeds)
        outs = []
        for p in prompts:
            subj = "Sylvania" if p.endswith("Sylvania is ...\nRewritten:") else "Freedonia"
            outs.append([(f"{subj}'s seat of power is ...\nThe capital of {subj} is Paris.", True),
                         (f"The governing city of {subj} is", False)])
        return outs

    rows, report = lm_paraphrases(None, _Tok(), recs, 2, 0, LMArgs(n_candidates=2, batch_size=2), progress=False,
                                  sample=stub)
    assert calls == [(2, True), (1, True)]
    assert report["n_sequences"] == 6 and report["n_candidates"] == 9
    assert report["kept"] == 3 and report["rejected"] == {"truncated": 3, "contains_object": 3}
    assert report["keep_rate"] == pytest.approx(1 / 3)
    for rec, row in zip(recs, rows):
        assert row["generated"] == ["{}'s seat of power is"]
        assert row["filter"] == {"kept": 1, "contains_object": 1, "truncated": 1}
        assert "{}'s seat of power is" in row["augment"]
        check_disjoint(row, rec)


class _Tok:
    """A tokenizer stand-in without a chat template (only build_prompt reads it)."""
    chat_template = None


def test_plain_and_chat_prompts(tiny_model):
    _, tok = tiny_model
    text, chat = build_prompt(tok, "Freedonia", "The capital of Freedonia is")
    assert chat and "<|im_start|>assistant" in text and text.count("Freedonia") >= 2
    text, chat = build_prompt(_Tok(), "Freedonia", "The capital of Freedonia is")
    assert not chat and text.endswith("Original: The capital of Freedonia is ...\nRewritten:")


# ------------------------------------------------------------------ the tiny model

ARGS = LMArgs(n_candidates=3, max_new_tokens=6, batch_size=2)


def test_generation_is_seeded_and_independent_of_the_batch(tiny_model):
    model, tok = tiny_model
    recs = [make_record(0), make_record(1, subject="The Republic of Sylvania")]
    prompts = [build_prompt(tok, r["subject"], r["prompt"].replace("{}", r["subject"]))[0] for r in recs]
    seeds = [[11, 12, 13], [21, 22, 23]]
    both = sample_continuations(model, tok, prompts, seeds, False, ARGS)
    assert sample_continuations(model, tok, prompts, seeds, False, ARGS) == both
    alone = sample_continuations(model, tok, prompts[:1], seeds[:1], False, ARGS)
    assert alone == both[:1]                          # no padding alone, left padding in the batch
    assert tok.padding_side == "right"                 # restored
    other = sample_continuations(model, tok, prompts[:1], [[14, 15, 16]], False, ARGS)
    assert other != alone
    assert all(len(c) == 3 and all(isinstance(t, str) and isinstance(f, bool) for t, f in c) for c in both)


def test_generator_end_to_end_on_the_tiny_model(tiny_model):
    model, tok = tiny_model
    recs = [make_record(i) for i in range(3)]
    rows, report = lm_paraphrases(model, tok, recs, 2, 0, ARGS, progress=False)
    assert [r["case_id"] for r in rows] == ["c0", "c1", "c2"]
    assert report["n_sequences"] == 9 and report["n_candidates"] >= 1
    assert report["kept"] + sum(report["rejected"].values()) == report["n_candidates"]
    templates = split_paraphrases(recs, 2, 0)
    for rec, row, tpl in zip(recs, rows, templates):
        assert row["evaluate"] == tpl["evaluate"]
        assert all(t.count("{}") == 1 for t in row["augment"])
        check_disjoint(row, rec)
    again, _ = lm_paraphrases(model, tok, recs, 2, 0, ARGS, progress=False)
    assert again == rows
    assert not model.training


def test_cli_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    recs = [make_record(i) for i in range(2)]
    write_jsonl(tmp_path / "records.jsonl", recs)
    common = ["paraphrases", "--records", str(tmp_path / "records.jsonl"), "--n-eval", "2", "--seed", "0"]
    assert cli.main(common + ["--out", str(tmp_path / "t.jsonl"), "--out-report", str(tmp_path / "t.json")]) == 0
    assert read_jsonl(tmp_path / "t.jsonl") == split_paraphrases(recs, 2, 0)
    assert read_json(tmp_path / "t.json")["generator"] == "template"
    lm = ["--generator", "lm", "--model", str(tiny_model_dir), "--n-candidates", "2", "--max-new-tokens", "5",
          "--lm-seed", "3", "--mode", "replace"]
    assert cli.main(common + lm + ["--out", str(tmp_path / "p.jsonl"), "--out-report", str(tmp_path / "r.json")]) == 0
    rows, report = read_jsonl(tmp_path / "p.jsonl"), read_json(tmp_path / "r.json")
    assert report["n_sequences"] == 4 and report["args"]["seed"] == 3 and report["args"]["mode"] == "replace"
    assert report["model"] == str(tiny_model_dir) and report["split_seed"] == 0
    for row in rows:
        assert row["augment"] == row["generated"] and len(row["evaluate"]) == 2
    assert cli.main(common + lm + ["--out", str(tmp_path / "p2.jsonl")]) == 0
    assert read_jsonl(tmp_path / "p2.jsonl") == rows
    capsys.readouterr()
    assert cli.main(common + ["--generator", "lm", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--generator lm needs --model" in capsys.readouterr().err
    assert cli.main(common + ["--model", str(tiny_model_dir), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--model is only read by --generator lm" in capsys.readouterr().err
    assert cli.main(common + lm[:4] + ["--temperature", "0", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "paraphrases: key 'temperature' must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


# ------------------------------------------------------------------ config

@pytest.fixture()
def cfg():
    c = yaml.safe_load((ROOT / "params.yaml").read_text())
    c["paraphrase"]["generator"] = "lm"
    return c


def test_lm_generator_config_is_valid(cfg):
    check_study(cfg, where="params.yaml")
    cfg["paraphrase"]["lm"] = {"model": "smollm2-135m"}
    check_study(cfg, where="params.yaml")


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["lm"].update(model="gpt5"), "paraphrase.lm.model: unknown model 'gpt5' \\(known: smollm2-135m\\)"),
    (lambda p: p["lm"].update(n_candidates="many"), "paraphrase.lm.n_candidates: 'many' is not of type 'integer'"),
    (lambda p: p["lm"].update(temprature=1.0), "paraphrase.lm: unknown key 'temprature'; did you mean 'temperature'"),
    (lambda p: p["lm"].update(max_new_tokens=1000), "paraphrase.lm.max_new_tokens: 1000 is greater than"),
    (lambda p: p["lm"].update(mode="merge"), "paraphrase.lm.mode: 'merge' is not one of"),
    (lambda p: p.update(generator="gpt"), "paraphrase.generator: 'gpt' is not one of"),
    (lambda p: p.pop("lm"), "paraphrase.lm.model: generator 'lm' needs paraphrase.lm.model"),
])
def test_bad_lm_generator_config_names_the_key(cfg, mutate, message):
    mutate(cfg["paraphrase"])
    with pytest.raises(InputError, match=message):
        check_study(cfg, where="params.yaml")


def test_template_generator_ignores_the_lm_block(cfg):
    cfg["paraphrase"]["generator"] = "template"
    cfg["paraphrase"]["lm"]["model"] = "not-in-this-study"
    check_study(cfg, where="params.yaml")


def test_schema_defaults_are_the_generators_defaults():
    schema = yaml.safe_load((ROOT / "src/edit_retention/config.schema.yaml").read_text())
    props = schema["properties"]["paraphrase"]["properties"]["lm"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    assert defaults == asdict(LMArgs())
    with pytest.raises(InputError, match="paraphrase.lm: unknown key 'model'"):
        LMArgs.from_dict({"model": "x"})
    assert LMArgs.from_dict({"temperature": 1}).temperature == 1.0
