"""benchmarks/critical_path.py rebuilds job intervals, dependencies, the critical path and
core use from a Snakemake log (hand-built here in Snakemake 9's format)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from critical_path import core_use, critical_path, parse  # noqa: E402

LOG = """Provided cores: 2
[Thu Dec  3 07:00:00 2026]
localrule model:
    input: src/a.py
    output: data/m
    jobid: 1
    resources: tmpdir=/tmp
[Thu Dec  3 07:00:00 2026]
localrule facts:
    output: data/f.jsonl
    jobid: 2
[Thu Dec  3 07:00:10 2026]
Finished jobid: 2 (Rule: facts)
[Thu Dec  3 07:01:00 2026]
Finished jobid: 1 (Rule: model)
[Thu Dec  3 07:01:00 2026]
localrule health:
    input: data/m, data/f.jsonl
    output: data/h.json
    jobid: 3
[Thu Dec  3 07:01:00 2026]
rule finetune:
    input: data/m, data/f.jsonl
    output: data/ft
    jobid: 4
    threads: 2
[Thu Dec  3 07:03:00 2026]
Finished jobid: 3 (Rule: health)
[Thu Dec  3 07:05:00 2026]
Finished jobid: 4 (Rule: finetune)
"""


def test_parse_critical_path_and_core_use():
    jobs, cores = parse(LOG)
    assert cores == 2 and sorted(jobs) == [1, 2, 3, 4]
    assert jobs[4].deps == [1, 2] and jobs[4].threads == 2 and jobs[4].seconds == 240
    assert [j.rule for j in critical_path(jobs)] == ["model", "finetune"]
    wall, held, free = core_use(jobs, cores)
    # 0-10 s: 2 threads; 10-60 s: 1; 60-180 s: 3 asked, 2 held; 180-300 s: 2
    assert wall == 300
    assert held == (2 * 10 + 1 * 50 + 2 * 120 + 2 * 120) / (2 * 300)
    assert free == 50 / 300
