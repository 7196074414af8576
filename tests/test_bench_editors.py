"""benchmarks/bench_editors.py reruns the editor table on a fact file of the user's (the
record schema), not only on its 16 inline capitals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_record
from edit_retention.io import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def test_bench_editors_takes_a_facts_file(tiny_model_dir, tmp_path):
    recs = [make_record(i, subject=s, true=t, new=n) | {"relation": "P36", "prompt": p}
            for i, (s, t, n, p) in enumerate([("France", "Paris", "Rome", "The capital of {} is"),
                                               ("Peru", "Lima", "Oslo", "{} has its capital in"),
                                               ("Chad", "Africa", "Asia", "{} is located in the continent of"),
                                               ("Laos", "Asia", "Europe", "{} is located in the continent of")])]
    facts = tmp_path / "edit.jsonl"
    write_jsonl(facts, recs)
    out = tmp_path / "table.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_editors.py"), "--model", str(tiny_model_dir),
                        "--editors", "ft", "--layers", "1", "--no-stats", "--facts", str(facts), "--n", "2",
                        "--n-control", "2", "--hp", json.dumps({"num_steps": 2}), "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    row = json.loads(out.read_text())[0]
    assert row["editor"] == "ft" and row["n"] == 2
    assert all(0 <= row[k] <= 1 for k in ("ES", "PS", "NS"))
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_editors.py"), "--model", str(tiny_model_dir),
                          "--editors", "ft", "--no-stats", "--facts", str(facts), "--n", "4"],
                         capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert bad.returncode != 0 and "fewer than --n 4 + --n-control 8" in bad.stderr
