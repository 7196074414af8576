"""MEND through the CLI: train-mend on the facts outside the study's sets, then the edit
stage uses the hypernetwork it wrote; and the DAG puts train_mend before MEND's edits."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edit_retention import cli
from edit_retention.stages.train_mend import mend_train_requests
from edit_retention.facts.builtin import build_builtin
from edit_retention.io import InputError, read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def test_train_mend_then_edit(tiny_model_dir, tmp_path):
    recs = build_builtin(per_relation=3, seed=0)
    write_jsonl(tmp_path / "records.jsonl", recs)
    write_jsonl(tmp_path / "edit.jsonl", recs[:2])
    write_jsonl(tmp_path / "control.jsonl", recs[2:4])
    write_jsonl(tmp_path / "para.jsonl", [{"case_id": r["case_id"], "augment": r["paraphrase_prompts"][:1],
                                           "evaluate": r["paraphrase_prompts"][1:2]} for r in recs])
    fast = json.dumps({"train_steps": 2, "accumulate": 1, "norm_batches": 2})
    hn = tmp_path / "hypernet"
    assert cli.main(["train-mend", "--model", str(tiny_model_dir), "--records", str(tmp_path / "records.jsonl"),
                     "--exclude", str(tmp_path / "edit.jsonl"), str(tmp_path / "control.jsonl"),
                     "--hparams", fast, "--hparams-set", "tiny", "--n-val", "2", "--out", str(hn)]) == 0
    config = json.loads((hn / "config.json").read_text())
    assert config["train"]["n_train_requests"] == len(recs) - 4 - 2 and config["layers"] == [1, 2, 3]
    out = tmp_path / "edit"
    assert cli.main(["edit", "--model", str(tiny_model_dir), "--editor", "mend", "--hparams-set", "tiny",
                     "--hparams", json.dumps({"hypernet": str(hn)}), "--requests", str(tmp_path / "edit.jsonl"),
                     "--paraphrases", str(tmp_path / "para.jsonl"), "--k", "1", "--out", str(out)]) == 0
    log = json.loads((out / "log.json").read_text())
    assert log["editor"] == "mend" and log["edited_layers"] == [1, 2, 3] and len(log["cases"]) == 2
    assert (out / "delta.safetensors").stat().st_size > 0


def test_training_split_excludes_study_facts():
    recs = build_builtin(per_relation=6, seed=0)
    reqs = mend_train_requests(recs, {recs[0]["case_id"]})
    assert [r["case_id"] for r in reqs] == [r["case_id"] for r in recs[1:]]
    by_id = {r["case_id"]: r for r in recs}
    assert all(r["locality_prompts"] == [n["prompt"] for n in by_id[r["case_id"]]["neighborhood_prompts"]]
               for r in reqs)
    assert any(r["locality_prompts"] for r in reqs)
    with pytest.raises(InputError, match="no facts are left"):
        mend_train_requests(recs, {r["case_id"] for r in recs})


def test_dag_trains_mend_before_its_edits(tmp_path):
    (tmp_path / "mend.yaml").write_text("grid: {models: [smollm2-135m], facts: builtin, corpus: pydocs, "
                                        "editors: [mend, rome], tasks: [text], remedies: [none], seeds: [0]}\n")
    exe = Path(sys.executable).parent / "snakemake"
    r = subprocess.run([str(exe), "-n", "-p", "--forceall", "--cores", "1", "--configfile", str(tmp_path / "mend.yaml")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    blocks = r.stdout.split("\n\n")
    train = [b for b in blocks if "rule train_mend:" in b]
    edit = next(b for b in blocks if "rule apply_edits:" in b and "/mend/k0" in b)
    assert len(train) == 1 and "data/edits/smollm2-135m/builtin/_mend/hypernet" in edit
    assert '"hypernet": "data/edits/smollm2-135m/builtin/_mend/hypernet"' in edit
    assert not any("_mend/hypernet" in b for b in blocks if "rule apply_edits:" in b and "/rome/k0" in b)
