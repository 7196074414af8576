"""Paraphrase split: disjoint, deterministic, never the main prompt."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import make_record

from edit_retention.facts import load_facts
from edit_retention.facts.builtin import build_builtin
from edit_retention.io import InputError
from edit_retention.paraphrase import split_paraphrases

COUNTERFACT = Path("/work/shared/datasets/counterfact/counterfact_500.json")


def key(t):
    return " ".join(t.split()).lower()


def test_split_is_disjoint_complete_and_excludes_the_prompt():
    recs = build_builtin(per_relation=10, seed=0)
    rows = split_paraphrases(recs, n_eval=3, seed=0)
    assert [r["case_id"] for r in rows] == [r["case_id"] for r in recs]
    for rec, row in zip(recs, rows):
        aug, ev = row["augment"], row["evaluate"]
        assert len(ev) == 3 and len(aug) == len(rec["paraphrase_prompts"]) - 3
        assert not {key(t) for t in aug} & {key(t) for t in ev}
        assert key(rec["prompt"]) not in {key(t) for t in aug + ev}
        assert sorted(aug + ev) == sorted(rec["paraphrase_prompts"])
    # the per-case seed spreads different templates into the held-out set
    assert len({tuple(r["evaluate"]) for r in rows if r["case_id"].startswith("P36")}) > 1


def test_split_is_deterministic_and_independent_of_record_order():
    recs = [make_record(i) for i in range(6)]
    rows = split_paraphrases(recs, n_eval=2, seed=0)
    assert split_paraphrases(recs, n_eval=2, seed=0) == rows
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    again = {r["case_id"]: r for r in split_paraphrases(shuffled, n_eval=2, seed=0)}
    assert all(again[r["case_id"]] == r for r in rows)
    others = [split_paraphrases(recs, n_eval=2, seed=s) for s in range(1, 6)]
    assert any(o != rows for o in others)


def test_duplicates_and_the_prompt_are_removed_ignoring_case_and_space():
    rec = make_record(0)
    rec["paraphrase_prompts"] = ["The  capital of {} is", "{}'s capital city is", "{}'S CAPITAL city is",
                                 " The capital city of {} is", "The capital city of {} is"]
    row = split_paraphrases([rec], n_eval=1)[0]
    got = row["augment"] + row["evaluate"]
    assert len(got) == 2
    assert {key(t) for t in got} == {"{}'s capital city is", "the capital city of {} is"}


def test_too_few_paraphrases_names_case_and_field():
    rec = make_record(3)
    rec["paraphrase_prompts"] = ["{}'s capital city is", "{}'s capital city is ", rec["prompt"]]
    with pytest.raises(InputError, match=r"case_id 'c3': field 'paraphrase_prompts' has 1 distinct"):
        split_paraphrases([rec], n_eval=2)
    assert split_paraphrases([rec], n_eval=1)[0] == {"case_id": "c3", "augment": [], "evaluate": ["{}'s capital city is"]}
    assert split_paraphrases([rec], n_eval=0)[0]["augment"] == ["{}'s capital city is"]
    with pytest.raises(InputError, match="n_eval"):
        split_paraphrases([rec], n_eval=-1)


def test_counterfact_has_two_paraphrases_per_case():
    if not COUNTERFACT.exists():
        pytest.skip(f"{COUNTERFACT} is not on this machine")
    recs = load_facts({"type": "counterfact", "path": str(COUNTERFACT), "limit": 50})
    rows = split_paraphrases(recs, n_eval=1)
    assert all(len(r["augment"]) == 1 and len(r["evaluate"]) == 1 for r in rows)
    with pytest.raises(InputError, match="paraphrase_prompts"):
        split_paraphrases(recs, n_eval=3)


def test_one_rephrasing_is_enough_for_evaluation_only():
    from edit_retention.paraphrase import split_record
    rec = {"case_id": "z1", "prompt": "Who founded {}?", "paraphrase_prompts": ["{} was founded by whom?"]}
    assert split_record(rec, 1) == {"case_id": "z1", "augment": [], "evaluate": ["{} was founded by whom?"]}
    with pytest.raises(InputError, match="has 1 distinct paraphrases other than the prompt; 2 are needed"):
        split_record(rec, 2)
