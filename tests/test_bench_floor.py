"""benchmarks/bench_scoring.py and bench_floor.py run on a prepared model folder and report
what the README's rows read: the shared-prompt scoring equal to the full sequences with
fewer tokens and FLOPs, and each stage's counted FLOPs against the matmul floor."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_record
from edit_retention.io import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _phase(tmp_path: Path) -> list[str]:
    recs = [make_record(0), make_record(1, subject="Grand Fenwick", true="Berlin", new="Buenos Aires"),
            make_record(2, subject="Ruritania", true="Madrid", new="Tokyo")]
    write_jsonl(tmp_path / "edit.jsonl", recs[:2])
    write_jsonl(tmp_path / "control.jsonl", recs[2:])
    write_jsonl(tmp_path / "para.jsonl", [{"case_id": r["case_id"], "augment": [],
                                           "evaluate": ["{} has its capital in", "The seat of government of {} is"]}
                                          for r in recs])
    return ["--select", str(tmp_path), "--paraphrases", str(tmp_path / "para.jsonl")]


def _run(script: str, *args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_bench_scoring_reports_equal_scores_on_fewer_tokens(tiny_model_dir, tmp_path):
    r = _run("bench_scoring.py", "--model", str(tiny_model_dir), *_phase(tmp_path), "--repeats", "1")
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["items"] == 2 * 4 + 3
    assert row["tokens_shared"] < row["tokens_full"] and row["top1_identical"]
    assert row["max_abs_lp_diff"] < 1e-4 and row["full_s"] > 0 and row["shared_s"] > 0


def test_bench_floor_counts_each_stage_against_the_matmul_floor(tiny_model_dir, tmp_path):
    from edit_retention.models import load_model
    from edit_retention.stats import compute_mom2, save_stats
    model, tok = load_model(str(tiny_model_dir))
    texts = [f"Passage {i} says the river runs past the old mill and the clock tower." * 3 for i in range(24)]
    write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in texts])
    save_stats(tmp_path / "layer1.safetensors", compute_mom2(model, tok, texts[:8], [1], progress=False), {})
    out = tmp_path / "floor.json"
    _run("bench_floor.py", "--model", str(tiny_model_dir), *_phase(tmp_path), "--corpus", str(tmp_path / "corpus.jsonl"),
         "--stats", str(tmp_path / "layer1.safetensors"), "--layer", "1", "--hparams-set", "none",
         "--stats-texts", "4", "--gen-prompts", "4", "--gen-tokens", "3", "--edits", "1", "--ft-steps", "1",
         "--gemm-seconds", "0.2", "--json", str(out))
    got = json.loads(out.read_text())
    stages = {r["stage"]: r for r in got["stages"]}
    assert set(stages) == {"layer statistics", "scoring", "scoring, full sequences", "generation", "ROME edit",
                           "fine-tuning"}
    assert all(r["gflop"] > 0 and r["seconds"] > 0 for r in stages.values())
    assert stages["scoring"]["gflop"] < stages["scoring, full sequences"]["gflop"]
    assert stages["fine-tuning"]["precision"] == "bf16"
    floor = got["attainable"]
    assert floor["fp32"]["best_gflops"] > 0 and floor["bf16"]["best_gflops"] > 0
    r = stages["scoring"]
    assert abs(r["of_fp32_floor"] - r["gflops"] / floor["fp32"]["best_gflops"]) < 1e-2
