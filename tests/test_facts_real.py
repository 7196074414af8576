"""Fact sources of real public data: EasyEdit CounterFact, zsRE, ParaRel/T-REx, hub loading,
the data root. Each loader is tested on tiny inline files and, when ../shared/datasets is
beside the repository, on the real files (skipped cleanly without it)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import yaml

from edit_retention.config import check_source_files, check_study
from edit_retention.data_root import resolve_data_root, resolve_source, source_files
from edit_retention.facts import load_facts
from edit_retention.facts.pararel import pattern_template
from edit_retention.io import InputError, write_jsonl
from edit_retention.paraphrase import split_paraphrases
from edit_retention.records import fill

ROOT = Path(__file__).resolve().parents[1]
# The shared data sets; EDIT_RETENTION_DATASETS points elsewhere (e.g. from a git worktree).
DATASETS = Path(os.environ.get("EDIT_RETENTION_DATASETS", ROOT.parent / "shared" / "datasets"))


def real(rel: str) -> Path:
    path = DATASETS / rel
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    return path


def write(tmp_path, name, obj) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def raises_naming(source, *parts):
    """load_facts(source) raises an InputError whose message contains every part."""
    with pytest.raises(InputError) as e:
        load_facts(source)
    msg = str(e.value)
    assert all(p in msg for p in parts), msg


# ---------------------------------------------------------------- counterfact_easyedit

def ee_case(case_id=10, subject="BBC One"):
    return {"case_id": case_id, "prompt": f"{subject}, by", "target_new": "Sega", "subject": subject,
            "ground_truth": "BBC", "rephrase_prompt": f"{subject} is my favorite product owned by",
            "locality_prompt": "BBC Radio, by", "locality_ground_truth": "BBC"}


def test_easyedit_conversion(tmp_path):
    second = {k: v for k, v in ee_case(subject="Fiat Uno").items() if k != "case_id"}
    second.update(rephrase_prompt=["Fiat Uno is made by", "no subject here:"],
                  locality_prompt=["Fiat Panda, by", "Sega Saturn, by"],
                  locality_ground_truth=["Fiat", "Sega"], target_new="Sega ")
    stats = {}
    recs = load_facts({"type": "counterfact_easyedit", "path": write(tmp_path, "ee.json", [ee_case(), second]),
                       "rephrase_filter": "none"}, stats)
    assert recs[0] == {
        "case_id": "10", "relation": "template:{}, by", "subject": "BBC One", "prompt": "{}, by",
        "target_true": "BBC", "target_new": "Sega",
        "paraphrase_prompts": ["{} is my favorite product owned by"],
        "neighborhood_prompts": [{"prompt": "BBC Radio, by", "target": "BBC"}],
        "source": "counterfact_easyedit:ee.json",
    }
    # no case_id: the row index; lists accepted; a neighbour answering target_new is removed
    assert recs[1]["case_id"] == "1" and recs[1]["target_new"] == "Sega"
    assert recs[1]["paraphrase_prompts"] == ["{} is made by"]
    assert recs[1]["neighborhood_prompts"] == [{"prompt": "Fiat Panda, by", "target": "Fiat"}]
    assert stats["removed"] == {"paraphrase_without_subject": ["1"], "neighbour_answers_target_new": ["1"]}
    assert "dropped" not in stats and stats["n_records"] == 2 and stats["relations"] == {"template:{}, by": 2}
    assert stats["rephrase_filter"]["mode"] == "none" and stats["rephrase_filter"]["n_relation_paraphrases"] == 0


def test_easyedit_relations_come_from_the_prompt_template(tmp_path):
    """No relation id in the file: facts sharing a prompt template share a relation, and
    the select stage's strata follow it."""
    from edit_retention.select import split_known
    cases = []
    for i, (subj, tpl) in enumerate([("Toyota Corolla", "{}, produced by"), ("Windows 8", "{}, developed by"),
                                     ("Honda Civic", "{}, produced by"), ("Xbox", "{}, developed by"),
                                     ("Nissan Leaf", "{}, produced by"), ("MS-DOS", "{}, developed by"),
                                     ("Suzuki Swift", " {}, produced by "), ("Office 95", "{}, developed  by")]):
        cases.append(dict(ee_case(100 + i, subj), prompt=tpl.replace("{}", subj), ground_truth=f"Maker{i}",
                          locality_prompt="x", locality_ground_truth="y"))
    stats = {}
    recs = load_facts({"type": "counterfact_easyedit", "path": write(tmp_path, "ee.json", cases)}, stats)
    assert stats["relations"] == {"template:{}, produced by": 4, "template:{}, developed by": 4}
    assert stats["relation_rule"] == "template"
    edit, control = split_known(recs, [True] * 8, 2, 2, seed=0)
    assert sorted(r["relation"] for r in edit) == sorted(r["relation"] for r in control)
    assert len({r["relation"] for r in edit}) == 2


def test_easyedit_rephrase_filter_keeps_relation_paraphrases_only(tmp_path):
    """EasyEdit's rephrase_prompt mixes ROME paraphrases (noise, then a prompt template of
    the file) and generation prompts; the default filter keeps the first, counts the rest."""
    rows = [dict(ee_case(1, "Sakarya Province"), prompt="Sakarya Province is located in",
                 rephrase_prompt="The best restaurants around Sakarya Province include"),
            dict(ee_case(2, "Howard Glacier"), prompt="Howard Glacier is located in",
                 rephrase_prompt="Published in 1990. Howard Glacier belongs to the continent of"),
            dict(ee_case(3, "Mount Kenya"), prompt="Mount Kenya belongs to the continent of",
                 rephrase_prompt="It rains a lot there. Mount Kenya is located in"),
            dict(ee_case(4, "Lake Chad"), prompt="Lake Chad belongs to the continent of",
                 rephrase_prompt="Lake Chad is located in")]   # a template, but no noise: a generation prompt
    path = write(tmp_path, "ee.json", rows)
    stats = {}
    recs = load_facts({"type": "counterfact_easyedit", "path": path}, stats)
    assert [r["paraphrase_prompts"] for r in recs] == [[], ["Published in 1990. {} belongs to the continent of"],
                                                       ["It rains a lot there. {} is located in"], []]
    assert stats["removed"] == {"paraphrase_not_relation_template": ["1", "4"]}
    assert stats["rephrase_filter"]["n_rephrasings"] == 4 and stats["rephrase_filter"]["n_relation_paraphrases"] == 2
    assert "2 of 4 rephrase prompts are not paraphrases" in stats["rephrase_filter"]["note"]
    stats = {}
    load_facts({"type": "counterfact_easyedit", "path": path, "min_paraphrases": 1}, stats)
    assert stats["dropped"] == {"min_paraphrases": ["1", "4"]}
    stats = {}
    recs = load_facts({"type": "counterfact_easyedit", "path": path, "rephrase_filter": "none"}, stats)
    assert all(len(r["paraphrase_prompts"]) == 1 for r in recs) and "removed" not in stats
    assert "PS on this data mostly measures generation prompts" in stats["rephrase_filter"]["note"]
    raises_naming({"type": "counterfact_easyedit", "path": path, "rephrase_filter": "strict"}, "'rephrase_filter'")


@pytest.mark.parametrize("breakage, field", [
    (lambda c: c.pop("ground_truth"), "ground_truth"),
    (lambda c: c.update(target_new="  "), "target_new"),
    (lambda c: c.update(locality_prompt=3), "locality_prompt"),
])
def test_easyedit_bad_record_names_file_record_case_and_field(tmp_path, breakage, field):
    bad = ee_case(42, "Arun Nehru")
    breakage(bad)
    path = write(tmp_path, "ee.json", [ee_case(), bad])
    raises_naming({"type": "counterfact_easyedit", "path": path}, path, "record 1", "(case_id ", "42", f"'{field}'")


@pytest.mark.parametrize("breakage, reason", [
    (lambda c: c.update(prompt="Some channel, by"), "subject_not_in_prompt"),
    (lambda c: c.update(target_new="BBC"), "target_new_is_true"),
])
def test_easyedit_unusable_case_is_dropped_or_fatal(tmp_path, breakage, reason):
    bad = ee_case(42, "Arun Nehru")
    breakage(bad)
    path = write(tmp_path, "ee.json", [ee_case(), bad])
    stats = {}
    assert [r["case_id"] for r in load_facts({"type": "counterfact_easyedit", "path": path}, stats)] == ["10"]
    assert stats["dropped"] == {reason: ["42"]}
    raises_naming({"type": "counterfact_easyedit", "path": path, "bad_records": "error"},
                  path, "record 1", "42", reason, "bad_records: error")


def test_easyedit_real_file():
    path = real("counterfact/counterfact_easyedit_val.json")
    raw = json.loads(path.read_text())
    stats = {}
    recs = load_facts({"type": "counterfact_easyedit", "path": str(path), "rephrase_filter": "none"}, stats)
    assert len(recs) == len(raw) == 1919 and "dropped" not in stats and "removed" not in stats
    for rec, case in zip(recs, raw):
        assert rec["case_id"] == str(case["case_id"]) and rec["subject"] == case["subject"]
        assert fill(rec["prompt"], rec["subject"]) == case["prompt"].strip()
        assert rec["relation"] == "template:" + " ".join(rec["prompt"].split())
        assert (rec["target_true"], rec["target_new"]) == (case["ground_truth"].strip(), case["target_new"].strip())
        assert [fill(t, rec["subject"]) for t in rec["paraphrase_prompts"]] == [case["rephrase_prompt"].strip()]
        assert rec["neighborhood_prompts"] == [{"prompt": case["locality_prompt"],
                                                "target": case["locality_ground_truth"].strip()}]
    strata = stats["relations"]
    assert len(strata) == 207 and max(strata.values()) == 53       # "{} is located in"
    assert stats["rephrase_filter"]["n_relation_paraphrases"] == 337
    stats = {}
    load_facts({"type": "counterfact_easyedit", "path": str(path)}, stats)
    assert len(stats["removed"]["paraphrase_not_relation_template"]) == 1919 - 337


# ---------------------------------------------------------------- zsre

def zsre_case(subject="Ramalinaceae"):
    return {"subject": subject, "src": f"Which family does {subject} belong to?", "pred": "Ramalinales",
            "rephrase": f"What family are {subject}?", "alt": "Lamiinae", "answers": ["Lecanorales"],
            "loc": "nq question: types of skiing in the winter olympics 2018", "loc_ans": "Downhill",
            "cond": "x", "portability": {}}


def test_zsre_conversion_and_drops(tmp_path):
    no_subject = dict(zsre_case(), src="Which family does it belong to?")
    alt_is_true = dict(zsre_case("Lamiaceae"), alt="lecanorales ")
    no_rephrase = dict(zsre_case("Pinaceae"), rephrase="What family is it?", loc_ans="Lamiinae",
                       answers=["Pinales", "Coniferales"])
    stats = {}
    recs = load_facts({"type": "zsre", "path": write(tmp_path, "z.json",
                                                     [zsre_case(), no_subject, alt_is_true, no_rephrase])}, stats)
    assert recs[0] == {
        "case_id": "0", "relation": "template:Which family does {} belong to?", "subject": "Ramalinaceae",
        "prompt": "Which family does {} belong to?", "target_true": "Lecanorales", "target_new": "Lamiinae",
        "paraphrase_prompts": ["What family are {}?"],
        "neighborhood_prompts": [{"prompt": "nq question: types of skiing in the winter olympics 2018?",
                                  "target": "Downhill"}],
        "source": "zsre:z.json",
    }
    # case ids are row indices: dropping rows 1 and 2 does not renumber row 3
    assert recs[1]["case_id"] == "3" and recs[1]["target_true"] == "Pinales"
    assert recs[1]["paraphrase_prompts"] == [] and recs[1]["neighborhood_prompts"] == []
    assert stats["dropped"] == {"subject_not_in_prompt": ["1"], "target_new_is_true": ["2"]}
    assert stats["removed"] == {"paraphrase_without_subject": ["3"], "neighbour_answers_target_new": ["3"]}
    assert stats["n_rows"] == 4 and stats["n_records"] == 2
    with pytest.raises(InputError, match=r"record 1: field 'src'.*subject_not_in_prompt.*bad_records: error"):
        load_facts({"type": "zsre", "path": str(tmp_path / "z.json"), "bad_records": "error"})


@pytest.mark.parametrize("breakage, field", [
    (lambda c: c.pop("loc_ans"), "loc_ans"),
    (lambda c: c.update(answers=[]), "answers"),
    (lambda c: c.update(answers=[""]), "answers[0]"),
    (lambda c: c.update(alt=""), "alt"),
    (lambda c: c.update(subject=None), "subject"),
])
def test_zsre_bad_record_names_file_record_and_field(tmp_path, breakage, field):
    bad = zsre_case()
    breakage(bad)
    path = write(tmp_path, "z.json", [zsre_case(), bad])
    raises_naming({"type": "zsre", "path": path}, path, "record 1", f"'{field}'")


def test_zsre_real_file():
    path = real("zsre/zsre_mend_eval_1037.json")
    raw = json.loads(path.read_text())
    stats = {}
    recs = load_facts({"type": "zsre", "path": str(path)}, stats)
    alt_true = [str(i) for i, c in enumerate(raw)
                if c["alt"].strip().lower() in {a.strip().lower() for a in c["answers"]}]
    assert stats["dropped"]["target_new_is_true"] == alt_true and alt_true
    no_subject = stats["dropped"].get("subject_not_in_prompt", [])
    assert len(no_subject) == sum(c["subject"] not in c["src"] for c in raw)
    assert len(recs) == len(raw) - len(alt_true) - len(no_subject) >= 1000
    for rec in recs:
        case = raw[int(rec["case_id"])]
        assert fill(rec["prompt"], rec["subject"]) == case["src"]
        assert (rec["target_true"], rec["target_new"]) == (case["answers"][0].strip(), case["alt"].strip())
        assert [fill(t, rec["subject"]) for t in rec["paraphrase_prompts"]] == [case["rephrase"]]
        assert rec["neighborhood_prompts"] == [{"prompt": case["loc"] + "?", "target": case["loc_ans"]}]


# ---------------------------------------------------------------- knowedit

def ke_zsre(subject="Epaspidoceras", **kw):
    """A KnowEdit ZsRE case, every field of the schema."""
    case = {"subject": subject, "target_new": "Noctuidae", "prompt": f"Which family does {subject} belong to?",
            "ground_truth": ["Aspidoceratidae"], "rephrase_prompt": f"What family are {subject}?",
            "cond": "Aspidoceratidae >> Noctuidae || Which family does it belong to?",
            "locality": {"Relation_Specificity": [{"prompt": f"The taxon rank of {subject} is",
                                                   "ground_truth": ["genus"]},
                                                  {"prompt": f"{subject} is a kind of", "ground_truth": ["Noctuidae"]}]},
            "portability": {"Reasoning": [{"prompt": f"What is the common name of the family {subject} belongs to?",
                                           "ground_truth": "owlet moths"}],
                            "Subject_Aliasing": [{"prompt": "Which family does Epaspi belong to?",
                                                  "ground_truth": [["Noctuidae", "owlet moths"]]}]}}
    case.update(kw)
    return case


def ke_counterfact(subject="Leonardo DiCaprio"):
    """A KnowEdit WikiData_counterfact case (string ground truth, alias lists, Forgetfulness)."""
    return {"subject": subject, "prompt": f"The name of the country of citizenship of {subject} is",
            "target_new": "Syria", "ground_truth": "United States of America",
            "rephrase_prompt": f"{subject} is a citizen of",
            "locality": {"Relation_Specificity": [{"prompt": f"The name of the mother of {subject} is",
                                                   "ground_truth": [["Irmelin DiCaprio", "Irmelin Indenbirken"]]}],
                         "Forgetfulness": [{"prompt": "x", "ground_truth": ["y"]}]},
            "portability": {"Logical_Generalization": [{"prompt": f"Is {subject} a citizen of Syria?",
                                                        "ground_truth": ["yes"]}]}}


def test_knowedit_conversion_zsre_and_counterfact_style(tmp_path):
    rows = [ke_zsre(), ke_counterfact(),
            ke_zsre("Pinaceae", prompt="Which family does it belong to?"),          # dropped: no subject
            ke_zsre("Lamiaceae", target_new="aspidoceratidae"),                     # dropped: no counterfactual
            ke_zsre("Abies", ground_truth=[], rephrase_prompt=None, locality=None)]  # dropped: no true object
    stats = {}
    recs = load_facts({"type": "knowedit", "path": write(tmp_path, "ke.json", rows)}, stats)
    assert recs[0] == {
        "case_id": "0", "relation": "template:Which family does {} belong to?", "subject": "Epaspidoceras",
        "prompt": "Which family does {} belong to?", "target_true": "Aspidoceratidae", "target_new": "Noctuidae",
        "paraphrase_prompts": ["What family are {}?"],
        "neighborhood_prompts": [{"prompt": "The taxon rank of Epaspidoceras is", "target": "genus"}],
        "portability_prompts": [
            {"kind": "reasoning", "prompt": "What is the common name of the family Epaspidoceras belongs to?",
             "target": "owlet moths"},
            {"kind": "subject_aliasing", "prompt": "Which family does Epaspi belong to?", "target": "Noctuidae"}],
        "source": "knowedit:ke.json",
    }
    cf = recs[1]
    assert (cf["case_id"], cf["prompt"], cf["target_true"]) == (
        "1", "The name of the country of citizenship of {} is", "United States of America")
    assert cf["relation"] == "template:The name of the country of citizenship of {} is"
    assert cf["paraphrase_prompts"] == ["{} is a citizen of"]
    assert cf["neighborhood_prompts"] == [{"prompt": "The name of the mother of Leonardo DiCaprio is",
                                           "target": "Irmelin DiCaprio"}]
    assert cf["portability_prompts"] == [{"kind": "logical_generalization",
                                          "prompt": "Is Leonardo DiCaprio a citizen of Syria?", "target": "yes"}]
    assert stats["dropped"] == {"subject_not_in_prompt": ["2"], "target_new_is_true": ["3"], "no_target_true": ["4"]}
    assert stats["removed"] == {"neighbour_answers_target_new": ["0"]}
    assert stats["n_portability_prompts"] == {"logical_generalization": 1, "reasoning": 1, "subject_aliasing": 1}
    # records with the extra field round-trip through the record schema and a JSONL file
    out = tmp_path / "records.jsonl"
    write_jsonl(out, recs)
    assert load_facts({"type": "jsonl", "path": str(out)}) == recs
    split_paraphrases(recs, n_eval=1)


def test_knowedit_file_written_from_easyedit_loads_as_the_easyedit_file(tmp_path):
    """scripts/knowedit_from_easyedit.py: the KnowEdit-schema file it writes loads, through
    the knowedit loader, to the facts the counterfact_easyedit loader makes of the source
    (same case ids, prompts, objects, rephrasings and locality prompt), and a case without
    a required field stops the script naming the record."""
    cases = [ee_case(), ee_case(42, "Arun Nehru") | {"prompt": "The profession of Arun Nehru is",
                                                      "ground_truth": "politician", "target_new": "actor",
                                                      "rephrase_prompt": "Arun Nehru works as a",
                                                      "locality_prompt": "The profession of Sonia Gandhi is",
                                                      "locality_ground_truth": "politician"}]
    src = write(tmp_path, "ee.json", cases)
    dst = tmp_path / "knowedit" / "cf.json"
    script = ROOT / "scripts" / "knowedit_from_easyedit.py"
    run = subprocess.run([sys.executable, str(script), src, str(dst)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    via_knowedit = load_facts({"type": "knowedit", "path": str(dst)})
    direct = load_facts({"type": "counterfact_easyedit", "path": src, "rephrase_filter": "none"})
    keys = ("case_id", "relation", "subject", "prompt", "target_true", "target_new", "paraphrase_prompts",
            "neighborhood_prompts")
    assert [{k: r[k] for k in keys} for r in via_knowedit] == [{k: r[k] for k in keys} for r in direct]
    assert via_knowedit[1]["neighborhood_prompts"] == [{"prompt": "The profession of Sonia Gandhi is",
                                                        "target": "politician"}]
    broken = write(tmp_path, "broken.json", [ee_case(), {"case_id": 3, "prompt": "x"}])
    run = subprocess.run([sys.executable, str(script), broken, str(tmp_path / "out.json")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "broken.json: record 1: missing field 'subject'" in run.stderr
    assert not (tmp_path / "out.json").exists()


def test_knowedit_relation_field_and_errors(tmp_path):
    recs = load_facts({"type": "knowedit", "path": write(tmp_path, "ke.json", [ke_zsre(relation="P171", case_id=7)])})
    assert recs[0]["relation"] == "P171" and recs[0]["case_id"] == "7"
    for breakage, name in ((lambda c: c.pop("target_new"), "'target_new'"),
                           (lambda c: c.update(ground_truth=3), "'ground_truth'"),
                           (lambda c: c["locality"]["Relation_Specificity"][0].pop("ground_truth"),
                            "'locality.Relation_Specificity[0].ground_truth'"),
                           (lambda c: c.update(portability={"Reasoning": ["x"]}), "'portability.Reasoning[0]'")):
        bad = ke_zsre()
        breakage(bad)
        path = write(tmp_path, "bad.json", [ke_zsre(), bad])
        raises_naming({"type": "knowedit", "path": path}, path, "record 1", name)
    path = write(tmp_path, "drop.json", [ke_zsre(), ke_zsre("X", prompt="no subject?")])
    raises_naming({"type": "knowedit", "path": path, "bad_records": "error"}, "record 1", "subject_not_in_prompt")


# ---------------------------------------------------------------- pararel

def _plain_jsonl(path: Path, rows: list) -> None:
    """A downloaded data file: plain JSONL, no checksum sidecar (a file of the user's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_pararel(root: Path, patterns: dict, facts: dict) -> str:
    for rel, pats in patterns.items():
        _plain_jsonl(root / "patterns" / f"{rel}.jsonl", [{"pattern": p} for p in pats])
    for rel, pairs in facts.items():
        _plain_jsonl(root / "trex" / f"{rel}.jsonl", [{"sub_label": s, "obj_label": o, "uuid": str(i)}
                                                     for i, (s, o) in enumerate(pairs)])
    return str(root)


PATTERNS = {"P36": ["The capital of [X] is [Y] .", "[Y] is the capital of [X].", "[X]'s capital is [Y]",
                    "The capital of [X] is [Y] ."],
            "P30": ["[X] is located in [Y] ."]}
FACTS = {"P36": [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Peru", "Lima"),
                 ("Chile", "Santiago"), ("Luxembourg", "Luxembourg"), ("Georgia", "Tbilisi"),
                 ("Georgia", "Atlanta"), ("France", "Paris")],
         "P30": [("Ghana", "Africa"), ("Kenya", "Africa"), ("Mali", "Africa"), ("Chad", "Africa"),
                 ("Peru", "South America"), ("Laos", "Asia")],
         "P31": [("Paris", "city")]}


def test_pattern_template():
    assert pattern_template("The capital of [X] is [Y] .") == "The capital of {} is"
    assert pattern_template("[X] works as [Y].") == "{} works as"
    assert pattern_template("[Y] is the capital of [X].") is None
    assert pattern_template("[X] [Y]") is None


def test_pararel_conversion(tmp_path):
    root = write_pararel(tmp_path / "pararel", PATTERNS, FACTS)
    stats = {}
    recs = load_facts({"type": "pararel", "path": root, "seed": 0}, stats)
    rels = Counter(r["relation"] for r in recs)
    assert list(rels) == ["P30", "P36"] and rels == {"P30": 6, "P36": 5}  # P31: no patterns
    assert stats["dropped"] == {"ambiguous_subject": ["P36-Georgia"],              # Tbilisi or Atlanta
                                "subject_has_object": ["P36-Luxembourg"]}          # Luxembourg -> Luxembourg
    truth = {(r["relation"], r["subject"]): r["target_true"] for r in recs}
    for r in recs:
        if r["relation"] == "P36":
            assert r["prompt"] == "The capital of {} is" and r["paraphrase_prompts"] == ["{}'s capital is"]
        else:
            assert r["prompt"] == "{} is located in" and r["paraphrase_prompts"] == []
        assert r["case_id"] == f"{r['relation']}-{r['subject']}" and r["source"] == f"pararel:{r['relation']}"
        objects = {o for (rel, _), o in truth.items() if rel == r["relation"]}
        assert r["target_new"] in objects - {r["target_true"]}
        assert len(r["neighborhood_prompts"]) == 3
        for n in r["neighborhood_prompts"]:
            subj = next(s for (rel, s) in truth if rel == r["relation"] and fill(r["prompt"], s) == n["prompt"])
            assert subj != r["subject"] and n["target"] == truth[(r["relation"], subj)] != r["target_new"]
    ghana = next(r for r in recs if r["subject"] == "Ghana")
    assert [n["target"] for n in ghana["neighborhood_prompts"]] == ["Africa"] * 3  # sharers first
    # options: relations in the given order, per_relation, seed, min_paraphrases
    again = load_facts({"type": "pararel", "path": root, "relations": ["P36", "P30"], "per_relation": 2, "seed": 0})
    assert [r["relation"] for r in again] == ["P36", "P36", "P30", "P30"]
    assert load_facts({"type": "pararel", "path": root, "seed": 0}) == recs
    assert load_facts({"type": "pararel", "path": root, "seed": 1}) != recs
    stats = {}
    assert {r["relation"] for r in load_facts({"type": "pararel", "path": root, "min_paraphrases": 1}, stats)} == {"P36"}
    assert sorted(stats["dropped"]["min_paraphrases"]) == sorted(f"P30-{s}" for s in ("Ghana", "Kenya", "Mali", "Chad", "Peru", "Laos"))


def test_pararel_errors(tmp_path):
    root = write_pararel(tmp_path / "pararel", PATTERNS, FACTS)
    raises_naming({"type": "pararel", "path": root, "relations": ["P31"]}, "'relations'", "P31", "patterns")
    raises_naming({"type": "pararel", "path": root, "per_relation": 0}, "'per_relation'")
    raises_naming({"type": "pararel", "path": str(tmp_path / "nowhere")}, "no such directory")
    raises_naming({"type": "pararel", "path": root, "hf": "x/y"}, "unknown key 'hf'")
    trex = Path(root) / "trex" / "P30.jsonl"
    trex.write_text(trex.read_text() + json.dumps({"sub_label": "Togo"}) + "\n")
    raises_naming({"type": "pararel", "path": root}, str(trex), "record 6", "'obj_label'")


def test_pararel_real_folder():
    root = real("pararel")
    stats = {}
    recs = load_facts({"type": "pararel", "path": str(root), "relations": ["P36", "P30", "P19", "P101"],
                       "per_relation": 40, "seed": 0, "min_paraphrases": 2}, stats)
    assert Counter(r["relation"] for r in recs) == {"P36": 40, "P30": 40, "P19": 40, "P101": 40}
    capital = next(r for r in recs if r["relation"] == "P36")
    assert capital["prompt"] == "The capital of {} is" and "The capital city of {} is" in capital["paraphrase_prompts"]
    split_paraphrases(recs, n_eval=1)  # every record is usable by the paraphrase stage
    n_sharing = sum(any(n["target"] == r["target_true"] for n in r["neighborhood_prompts"]) for r in recs)
    assert n_sharing > len(recs) / 2


# ---------------------------------------------------------------- hub branch

@pytest.fixture()
def fake_hub(monkeypatch):
    """A stand-in `datasets` module: records load_dataset's calls, returns canned rows."""
    calls, rows = [], {}

    def load_dataset(path, split=None, revision=None, **kw):
        calls.append({"path": path, "split": split, "revision": revision, **kw})
        return rows[path]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls, rows


def test_hub_branch_builds_the_right_call(fake_hub, tmp_path):
    calls, rows = fake_hub
    rows["owner/zsre"] = [zsre_case()]
    rows["owner/cf"] = [ee_case()]
    recs = load_facts({"type": "zsre", "hf": "owner/zsre"})
    assert calls == [{"path": "owner/zsre", "split": "train", "revision": None}]
    assert recs[0]["source"] == "zsre:hf:owner/zsre" and recs[0]["target_new"] == "Lamiinae"
    load_facts({"type": "counterfact_easyedit", "hf": "owner/cf", "split": "validation", "revision": "abc123"})
    assert calls[-1] == {"path": "owner/cf", "split": "validation", "revision": "abc123"}
    raises_naming({"type": "zsre", "hf": "owner/zsre", "path": "x.json"}, "exactly one of 'path'", "'hf'")
    raises_naming({"type": "zsre", "path": write(tmp_path, "z.json", [zsre_case()]), "revision": "abc"},
                  "'revision' only goes with 'hf'")
    raises_naming({"type": "zsre", "hf": ""}, "'hf' must be a non-empty string")
    assert len(calls) == 2


# ---------------------------------------------------------------- data root

def test_resolve_data_root():
    assert resolve_data_root("${data_root}/cf/x.json", "../shared/datasets/") == "../shared/datasets/cf/x.json"
    assert resolve_data_root("${data_root}", "/data") == "/data"
    assert resolve_data_root("${data_root}/x", "/") == "/x"
    assert resolve_data_root("sources/x.json", None) == "sources/x.json"
    with pytest.raises(InputError, match="no data root is set"):
        resolve_data_root("${data_root}/x", None)
    with pytest.raises(InputError, match="may only start a path"):
        resolve_data_root("sources/${data_root}/x", "/data")
    src = {"type": "zsre", "path": "${data_root}/z.json"}
    assert resolve_source(src, "d") == {"type": "zsre", "path": "d/z.json"} and src["path"] == "${data_root}/z.json"
    assert resolve_source({"type": "builtin"}, None) == {"type": "builtin"}


def test_loaders_and_source_files_use_the_data_root(tmp_path):
    write(tmp_path, "z.json", [zsre_case()])
    src = {"type": "zsre", "path": "${data_root}/z.json"}
    assert load_facts(src, data_root=str(tmp_path))[0]["source"] == "zsre:z.json"
    raises_naming(src, "uses ${data_root}", "no data root is set")
    assert source_files(src, str(tmp_path)) == [str(tmp_path / "z.json")]
    root = write_pararel(tmp_path / "pararel", PATTERNS, FACTS)
    assert source_files({"type": "pararel", "path": "${data_root}/pararel"}, str(tmp_path)) == sorted(
        str(p) for p in Path(root).rglob("*.jsonl"))
    assert source_files({"type": "builtin"}) == [] and source_files({"type": "zsre", "hf": "a/b"}) == []


def merged(*configs):
    """Snakemake's merge of config files (later ones update earlier ones, recursively)."""
    out: dict = {}

    def update(a, b):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                update(a[k], v)
            else:
                a[k] = copy.deepcopy(v)
    for c in configs:
        update(out, c)
    return out


@pytest.fixture()
def realdata():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merged(base, yaml.safe_load((ROOT / "workflow/config/realdata.yaml").read_text()))


def test_realdata_config_is_valid_and_names_files_under_the_data_root(realdata):
    check_study(realdata, where="realdata.yaml")
    if DATASETS.exists():
        check_source_files(realdata, where="realdata.yaml")
    assert realdata["data_root"] == "../shared/datasets"
    assert {f: s["source"]["type"] for f, s in realdata["facts"].items() if f != "builtin"} == {
        "counterfact-easyedit": "counterfact_easyedit", "counterfact": "counterfact", "zsre": "zsre",
        "trex": "pararel", "knowedit": "knowedit"}
    assert realdata["grid"]["facts"] == "counterfact-easyedit"
    for name in ("counterfact-easyedit", "counterfact", "zsre", "trex", "knowedit"):
        assert realdata["facts"][name]["source"]["path"].startswith("${data_root}/")
    broken = copy.deepcopy(realdata)
    del broken["data_root"]
    with pytest.raises(InputError, match=r"realdata.yaml: facts.counterfact.*source: path: .*no data root is set"):
        check_study(broken, where="realdata.yaml")


def test_realdata_files_exist_and_load(realdata):
    real("counterfact")
    data_root = os.environ.get("EDIT_RETENTION_DATASETS") or str(ROOT / realdata["data_root"])
    for name in ("counterfact-easyedit", "counterfact", "zsre"):
        source = realdata["facts"][name]["source"]
        files = source_files(source, data_root)
        assert len(files) == 1 and Path(files[0]).resolve().is_relative_to(DATASETS.resolve())
        assert len(load_facts(source, data_root=data_root, stats={})) >= 500


def test_snakemake_resolves_the_data_root_and_watches_the_data_file(tmp_path):
    """The whole realdata study plans (nothing in it chokes on "${data_root}"); prepare_facts
    gets the resolved file as input and in its source; a changed data file reruns it (one
    dry run: the output exists but is older than the data file)."""
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    for name in ("Snakefile", "params.yaml", "workflow", "src"):
        (work / name).symlink_to(ROOT / name)
    out = work / "data" / "facts" / "counterfact" / "records.jsonl"
    out.parent.mkdir(parents=True)
    out.write_text("")
    cf = data / "counterfact" / "counterfact_500.json"
    cf.parent.mkdir(parents=True)
    cf.write_text("[]")
    stamp = out.stat().st_mtime + 10
    os.utime(cf, (stamp, stamp))
    exe = Path(sys.executable).parent / "snakemake"
    (work / "cf.yaml").write_text("grid: {facts: counterfact}\n")   # the original-schema file
    r = subprocess.run([str(exe), "-n", "-p", "--cores", "1", "--configfile", "workflow/config/realdata.yaml",
                        "cf.yaml", "--config", f"data_root={data}"],
                       cwd=work, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    block = next(b for b in r.stdout.split("\n\n") if "rule prepare_facts:" in b)
    inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
    assert str(cf) in inputs and "Updated input files" in block, block
    assert json.dumps({"min_paraphrases": 1, "path": str(cf), "type": "counterfact"}, sort_keys=True) in block, block
    assert "rule report:" in r.stdout  # its params hold the whole config, "${data_root}" included


def test_realdata_easyedit_source_drops_the_case_without_a_paraphrase(realdata):
    """Case 20664's only rephrasing is its prompt: the realdata config's min_paraphrases: 1
    drops it at load time, so the paraphrase split (which needs one held-out template per
    fact) runs, where without it it stops naming the case and the setting."""
    from edit_retention.paraphrase import split_paraphrases
    real("counterfact/counterfact_easyedit_val.json")
    source = realdata["facts"]["counterfact-easyedit"]["source"]
    stats = {}
    recs = load_facts(source, stats, data_root=str(DATASETS))
    assert len(recs) == 1918 and stats["dropped"] == {"min_paraphrases": ["20664"]}
    assert "20664" not in {r["case_id"] for r in recs}
    assert len(split_paraphrases(recs, n_eval=realdata["paraphrase"]["n_eval"])) == 1918
    unfiltered = load_facts({k: v for k, v in source.items() if k != "min_paraphrases"}, data_root=str(DATASETS))
    with pytest.raises(InputError, match="'20664'.*min_paraphrases: 1"):
        split_paraphrases(unfiltered, n_eval=1)
