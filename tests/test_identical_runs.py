"""Issue 14 item 8: artifacts hold no wall-clock timings, so two identical runs write
byte-identical artifacts; the timings are in the job's log (stderr, logs/<rule>/...)."""
from __future__ import annotations

import json
import logging

from safetensors import safe_open

from conftest import make_record
from edit_retention.cli import main
from edit_retention.io import TIMING_KEYS, split_timings, write_jsonl


def _stats_and_edit(tmp_path, model_dir, run: str, monkeypatch) -> dict[str, bytes]:
    """The stats stage (layer 1) then a ROME edit on two facts that reads it, through the
    CLI as the rules call it (relative paths, from the run's folder as from the repository
    root); every file the two stages wrote, as bytes."""
    d = tmp_path / run
    d.mkdir()
    monkeypatch.chdir(d)
    write_jsonl("corpus.jsonl", [{"text": f"Passage {i} about the weather and the sea, nothing else."} for i in range(8)])
    records = [make_record(0), make_record(1, subject="Sylvania", true="Lyon", new="Oslo")]
    write_jsonl("edit.jsonl", records)
    write_jsonl("paraphrases.jsonl", [{"case_id": r["case_id"], "augment": r["paraphrase_prompts"][:1]} for r in records])
    inputs = {p.name for p in d.iterdir()}
    assert main(["stats", "--model", str(model_dir), "--corpus", "corpus.jsonl", "--layers", "1",
                 "--n-samples", "8", "--max-len", "16", "--out-dir", "stats"]) == 0
    assert main(["edit", "--model", str(model_dir), "--editor", "rome", "--hparams-set", "tiny",
                 "--hparams", json.dumps({"v_steps": 3}), "--requests", "edit.jsonl",
                 "--paraphrases", "paraphrases.jsonl", "--k", "1", "--stats", "stats/layer1.safetensors",
                 "--out", "edit"]) == 0
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and str(p.relative_to(d)) not in inputs}


def test_two_identical_runs_write_identical_artifacts(tiny_model_dir, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="edit_retention.timings")
    first = _stats_and_edit(tmp_path, tiny_model_dir, "a", monkeypatch)
    second = _stats_and_edit(tmp_path, tiny_model_dir, "b", monkeypatch)
    assert set(first) == {"stats/layer1.safetensors", "stats/MANIFEST.sha256", "edit/delta.safetensors",
                          "edit/log.json", "edit/MANIFEST.sha256"}
    assert first == second, [f for f in first if first[f] != second[f]]
    with safe_open(str(tmp_path / "a/stats/layer1.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    assert meta["layer"] == 1 and not TIMING_KEYS & set(meta)
    log = json.loads(first["edit/log.json"])
    assert log["n_requests"] == 2 and "passes" in log and not TIMING_KEYS & set(log)
    # ... and the timings are in the job's log, one line per artifact
    lines = [r.getMessage() for r in caplog.records if r.name == "edit_retention.timings"]
    assert any(m.startswith("timings of statistics ") and '"seconds"' in m for m in lines), lines
    assert any(m.startswith("timings of edit ") and '"seconds_per_request"' in m for m in lines), lines


def test_split_timings_at_any_depth():
    """The training logs nest them: MEND's config under "train", the single regime's runs in a list."""
    log = {"regime": "single", "seconds": 3.0, "runs": [{"case_id": "c0", "train_seconds": 1.0, "loss": [1, 2]}],
           "train": {"s_per_step": 0.1, "steps": 4, "batch_seconds": [0.5, 0.5]}}
    clean, timings = split_timings(log)
    assert clean == {"regime": "single", "runs": [{"case_id": "c0", "loss": [1, 2]}], "train": {"steps": 4}}
    assert timings == {"seconds": 3.0, "runs.0.train_seconds": 1.0, "train.s_per_step": 0.1,
                       "train.batch_seconds": [0.5, 0.5]}
