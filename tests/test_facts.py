"""Fact sources: the built-in set, the CounterFact loader, the JSONL loader, dispatch."""
from __future__ import annotations

import copy
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from edit_retention.facts import load_facts, to_template
from edit_retention.facts.builtin import build_builtin, contains_word, plain_name
from edit_retention.facts.templates import DEFAULT_RELATIONS, RELATIONS
from edit_retention.io import InputError, write_jsonl
from edit_retention.records import fill, validate_records

# Real public data beside the repository (../shared/datasets); tests that read it skip without it.
DATASETS = Path(os.environ.get("EDIT_RETENTION_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
COUNTERFACT = DATASETS / "counterfact" / "counterfact_500.json"


@pytest.fixture(scope="module")
def builtin():
    return build_builtin(per_relation=80, seed=0)


def by_relation(records):
    out = defaultdict(list)
    for r in records:
        out[r["relation"]].append(r)
    return out


# ---------------------------------------------------------------- templates

@pytest.mark.parametrize("rel", sorted(RELATIONS))
def test_templates_have_one_slot_and_end_before_the_object(rel):
    r = RELATIONS[rel]
    templates = [r.prompt, *r.paraphrases]
    assert len(r.paraphrases) >= 6
    assert len({t.lower() for t in templates}) == len(templates)
    for t in templates:
        assert t.count("{}") == 1 and t == t.strip() and not t.endswith(("{}", "."))


# ---------------------------------------------------------------- builtin

def test_builtin_covers_six_relations_with_several_hundred_valid_facts(builtin):
    validate_records(builtin, "builtin")
    rels = by_relation(builtin)
    assert set(rels) == set(DEFAULT_RELATIONS) and len(rels) >= 6
    assert len(builtin) >= 400
    assert all(len(v) >= 60 for v in rels.values()), {k: len(v) for k, v in rels.items()}


def test_builtin_knows_famous_facts_first(builtin):
    facts = {(r["relation"], r["subject"]): r["target_true"] for r in builtin}
    assert facts[("P36", "France")] == "Paris"
    assert facts[("P30", "Brazil")] == "South America"
    assert facts[("P37", "Germany")] == "German"
    assert facts[("P38", "Japan")] == "Japanese yen"
    assert facts[("P17", "Tokyo")] == "Japan"
    assert facts[("P131", "California")] == "United States"
    assert by_relation(builtin)["P36"][0]["subject"] == "China"  # most populous first


def test_builtin_targets_are_other_objects_of_the_relation(builtin):
    for rel, recs in by_relation(builtin).items():
        objects = {r["target_true"] for r in recs}
        for r in recs:
            assert r["target_new"] != r["target_true"]
            assert r["target_new"] in objects
            assert all(n["target"] != r["target_new"] for n in r["neighborhood_prompts"])
            assert not contains_word(r["subject"], r["target_true"])
            assert r["case_id"] == f"{rel}-{r['subject']}"
            assert r["prompt"] == RELATIONS[rel].prompt
            assert r["paraphrase_prompts"] == list(RELATIONS[rel].paraphrases)
            assert plain_name(r["subject"]) == r["subject"]


def test_builtin_neighbours_share_the_true_object_where_possible(builtin):
    n_sharing = 0
    for rel, recs in by_relation(builtin).items():
        truth = {r["subject"]: r["target_true"] for r in recs}
        for r in recs:
            neigh = r["neighborhood_prompts"]
            assert len(neigh) == 3
            subjects = [s for s in truth if s != r["subject"] and fill(r["prompt"], s) in
                        {n["prompt"] for n in neigh}]
            assert len(subjects) == 3  # each neighbour is the main prompt of another subject
            for s in subjects:
                n = next(n for n in neigh if n["prompt"] == fill(r["prompt"], s))
                assert n["target"] == truth[s]
            sharers = [s for s, o in truth.items() if o == r["target_true"] and s != r["subject"]
                       and not contains_word(s, r["subject"]) and not contains_word(r["subject"], s)]
            expect = min(3, len(sharers))
            assert sum(n["target"] == r["target_true"] for n in neigh) >= expect
            assert [n["target"] for n in neigh[:expect]] == [r["target_true"]] * expect
            n_sharing += expect > 0
    assert n_sharing > len(builtin) / 2


def test_builtin_is_deterministic_for_a_seed(builtin):
    assert build_builtin(per_relation=80, seed=0) == builtin
    other = build_builtin(per_relation=80, seed=1)
    assert [r["case_id"] for r in other] == [r["case_id"] for r in builtin]
    assert [r["target_new"] for r in other] != [r["target_new"] for r in builtin]


def test_builtin_options_and_errors():
    recs = build_builtin(per_relation=5, relations=["P36", "P1376"])
    assert [r["relation"] for r in recs] == ["P36"] * 5 + ["P1376"] * 5
    with pytest.raises(InputError, match="P999.*known"):
        build_builtin(relations=["P999"])
    with pytest.raises(InputError, match="per_relation"):
        build_builtin(per_relation=0)


def test_name_helpers():
    assert plain_name("Gujarāt") == "Gujarat"
    assert plain_name("São Paulo") == "São Paulo"
    assert plain_name("N'Djamena") == "N'Djamena"
    assert plain_name("Pontevedra [Pontevedra]") is None
    assert contains_word("Kuwait City", "kuwait") and not contains_word("Indianapolis", "India")


# ---------------------------------------------------------------- dispatch

def test_load_facts_dispatch_errors(tmp_path):
    with pytest.raises(InputError, match="unknown fact source type 'nope'.*builtin, counterfact, counterfact_easyedit, "
                                         "jsonl, knowedit, pararel, zsre"):
        load_facts({"type": "nope"})
    with pytest.raises(InputError, match="unknown key 'colour' for fact source type 'builtin'"):
        load_facts({"type": "builtin", "colour": 1})
    with pytest.raises(InputError, match="limit"):
        load_facts({"type": "builtin", "limit": 0})
    with pytest.raises(InputError, match="min_paraphrases"):
        load_facts({"type": "builtin", "min_paraphrases": True})
    with pytest.raises(InputError, match="'bad_records' must be one of drop, error"):
        load_facts({"type": "builtin", "bad_records": "skip"})
    with pytest.raises(InputError, match="no such file"):
        load_facts({"type": "jsonl", "path": str(tmp_path / "missing.jsonl")})


def test_load_facts_builtin_with_limit():
    stats = {}
    recs = load_facts({"type": "builtin", "per_relation": 4, "relations": ["P30"], "limit": 3}, stats)
    assert [r["relation"] for r in recs] == ["P30"] * 3 and stats["n_records"] == 3


# ---------------------------------------------------------------- counterfact

def cf_case(case_id=0, subject="Angola"):
    return {
        "case_id": case_id,
        "requested_rewrite": {"prompt": "{} is located in", "relation_id": "P30", "subject": subject,
                              "target_new": {"str": "Antarctica", "id": "Q51"},
                              "target_true": {"str": "Africa", "id": "Q15"}},
        "paraphrase_prompts": [f"Some noise. {subject} is a part of the continent of",
                               "This one lacks the subject and is dropped:"],
        "neighborhood_prompts": ["Ghana is in", "Ethiopia is in"],
    }


def write_cf(tmp_path, cases) -> str:
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(cases))
    return str(path)


def test_counterfact_conversion(tmp_path):
    stats = {}
    recs = load_facts({"type": "counterfact", "path": write_cf(tmp_path, [cf_case(7)])}, stats)
    assert recs == [{
        "case_id": "7", "relation": "P30", "subject": "Angola", "prompt": "{} is located in",
        "target_true": "Africa", "target_new": "Antarctica",
        "paraphrase_prompts": ["Some noise. {} is a part of the continent of"],
        "neighborhood_prompts": [{"prompt": "Ghana is in", "target": "Africa"},
                                 {"prompt": "Ethiopia is in", "target": "Africa"}],
        "source": "counterfact:cf.json",
    }]
    assert stats["removed"] == {"paraphrase_without_subject": ["7"]} and "dropped" not in stats


def test_to_template_uses_the_last_occurrence():
    assert to_template("Eshkol of Israel. Israel's capital is", "Israel") == "Eshkol of Israel. {}'s capital is"
    assert to_template("no subject here", "Israel") is None
    assert to_template("A {} literal. Israel is", "Israel") is None


@pytest.mark.parametrize("breakage, field", [
    (lambda c: c["requested_rewrite"].pop("target_new"), "requested_rewrite.target_new.str"),
    (lambda c: c.pop("case_id"), "case_id"),
    (lambda c: c["requested_rewrite"].update(subject=3), "requested_rewrite.subject"),
    (lambda c: c.update(neighborhood_prompts="Ghana is in"), "neighborhood_prompts"),
    (lambda c: c["requested_rewrite"].update(prompt="Angola is located in"), "prompt"),
])
def test_counterfact_bad_record_names_file_record_and_field(tmp_path, breakage, field):
    bad = cf_case(2)
    breakage(bad)
    path = write_cf(tmp_path, [cf_case(1), bad])
    with pytest.raises(InputError) as e:
        load_facts({"type": "counterfact", "path": path})
    msg = str(e.value)
    assert path in msg and "record 1" in msg and repr(field)[:-1] in msg, msg


def test_one_bad_record_policy_drop_count_name_or_fatal(tmp_path):
    """target_new == target_true: the case is dropped and its id recorded (not the whole
    file rejected); bad_records: error makes the same case fatal, naming it."""
    same = cf_case(2, "Chad")
    same["requested_rewrite"]["target_new"]["str"] = "africa "
    path = write_cf(tmp_path, [cf_case(1), same, cf_case(3, "Mali")])
    stats = {}
    recs = load_facts({"type": "counterfact", "path": path}, stats)
    assert [r["case_id"] for r in recs] == ["1", "3"]
    assert stats["dropped"] == {"target_new_is_true": ["2"]} and stats["n_rows"] == 3
    with pytest.raises(InputError, match=r"record 1 \(case_id '2'\).*target_new.*bad_records: error"):
        load_facts({"type": "counterfact", "path": path, "bad_records": "error"})
    # the same policy for a file already in the record schema
    out = tmp_path / "r.jsonl"
    write_jsonl(out, [dict(r, target_new=r["target_true"]) if r["case_id"] == "3" else r for r in recs])
    stats = {}
    assert [r["case_id"] for r in load_facts({"type": "jsonl", "path": str(out)}, stats)] == ["1"]
    assert stats["dropped"] == {"target_new_is_true": ["3"]}
    # the report of the facts artifact: counts, meanings, case ids, strata
    from edit_retention.facts import load_report
    rep = load_report(stats, {"type": "jsonl"})
    assert rep["dropped"]["target_new_is_true"]["n"] == 1 and rep["dropped"]["target_new_is_true"]["case_ids"] == ["3"]
    assert rep["n_rows"] == 2 and rep["n_records"] == 1 and rep["relations"]["n_strata"] == 1
    json.dumps(rep)


def test_counterfact_empty_or_not_a_list(tmp_path):
    with pytest.raises(InputError, match="empty"):
        load_facts({"type": "counterfact", "path": write_cf(tmp_path, [])})
    with pytest.raises(InputError, match="JSON list"):
        load_facts({"type": "counterfact", "path": write_cf(tmp_path, {"a": 1})})
    with pytest.raises(InputError, match="repeats record 0"):
        load_facts({"type": "counterfact", "path": write_cf(tmp_path, [cf_case(1), cf_case(1)])})


def test_counterfact_real_file_round_trips(tmp_path):
    if not COUNTERFACT.exists():
        pytest.skip(f"{COUNTERFACT} is not on this machine")
    stats = {}
    recs = load_facts({"type": "counterfact", "path": str(COUNTERFACT)}, stats)
    raw = json.loads(COUNTERFACT.read_text())
    assert len(recs) == len(raw) == stats["n_records"]
    for rec, case in zip(recs, raw):
        rw = case["requested_rewrite"]
        assert rec["case_id"] == str(case["case_id"]) and rec["subject"] == rw["subject"]
        assert rec["target_true"] == rw["target_true"]["str"] and rec["target_new"] == rw["target_new"]["str"]
        assert [fill(t, rec["subject"]) for t in rec["paraphrase_prompts"]] == [
            p.strip() for p in case["paraphrase_prompts"] if rw["subject"] in p]
        assert [n["prompt"] for n in rec["neighborhood_prompts"]] == case["neighborhood_prompts"]
    assert len(stats.get("removed", {}).get("paraphrase_without_subject", [])) == sum(
        rw not in p for c in raw for rw in [c["requested_rewrite"]["subject"]] for p in c["paraphrase_prompts"])
    assert "dropped" not in stats
    out = tmp_path / "records.jsonl"
    write_jsonl(out, recs)
    assert load_facts({"type": "jsonl", "path": str(out)}) == recs
    assert load_facts({"type": "counterfact", "path": str(COUNTERFACT), "limit": 10}) == recs[:10]


# ---------------------------------------------------------------- jsonl

def test_jsonl_bad_record_names_file_record_and_field(tmp_path, builtin):
    recs = copy.deepcopy(builtin[:3])
    del recs[2]["target_true"]
    path = tmp_path / "records.jsonl"
    write_jsonl(path, recs)
    with pytest.raises(InputError, match=rf"{path}: record 2 \(case_id '{recs[2]['case_id']}'\): missing field 'target_true'"):
        load_facts({"type": "jsonl", "path": str(path)})


def test_prepare_facts_writes_the_load_report_and_results_md_shows_it(tmp_path):
    """Drop counts by reason with case ids land in the facts artifact (load_report.json
    beside records.jsonl) and in results.md's versions section."""
    from edit_retention import cli
    from edit_retention.io import read_json
    from edit_retention.report_provenance import fact_versions, versions_section
    same = cf_case(2, "Chad")
    same["requested_rewrite"]["target_new"]["str"] = "Africa"
    source = {"type": "counterfact", "path": write_cf(tmp_path, [cf_case(1), same])}
    out = tmp_path / "facts" / "records.jsonl"
    assert cli.main(["prepare-facts", "--source", json.dumps(source), "--out", str(out),
                     "--out-report", str(out.parent / "load_report.json")]) == 0
    rep = read_json(out.parent / "load_report.json")
    assert rep["dropped"]["target_new_is_true"]["case_ids"] == ["2"] and rep["n_records"] == 1
    assert rep["removed"]["paraphrase_without_subject"]["case_ids"] == ["1", "2"]
    text = versions_section([], fact_versions([out]), "abc")
    assert "cases dropped, target_new_is_true" in text and "case ids 2" in text
    assert "relation strata: 1" in text
