"""The critical path and the idle cores of a Snakemake run, from its own log (issue 16 item 6).

Snakemake prints, for every job, the time it started (a ``[date]`` line before
``rule X:``/``localrule X:``, with ``input:``, ``output:``, ``jobid:`` and, above one,
``threads:``) and the time it finished (``Finished jobid: N``). From those this script
rebuilds each job's interval and its dependencies (a job depends on the jobs whose outputs
it reads), then prints:

* the critical path: from the job that finished last, back through the dependency that
  finished last each time; each row's wait is the time between its last dependency
  finishing and its own start (scheduling, or no free core);
* core use: thread-seconds the jobs held against cores x wall time, and the share of the
  wall time during which fewer threads than cores were busy;
* the busiest rules by summed job time.

Usage::

    snakemake --cores all 2>&1 | tee run.log
    python benchmarks/critical_path.py run.log [--cores 2]
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\S+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


@dataclass
class Job:
    jobid: int
    rule: str
    start: datetime
    end: datetime | None = None
    threads: int = 1
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    deps: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.end else float("nan")


def parse(text: str) -> tuple[dict[int, Job], int | None]:
    jobs: dict[int, Job] = {}
    cores = None
    stamp = None
    current: dict | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Provided cores:"):
            cores = int(line.split(":")[1])
        m = STAMP.match(line)
        if m:
            stamp = datetime.strptime(" ".join(m[1].split()), "%a %b %d %H:%M:%S %Y")
            current = None
            continue
        m = START.match(line)
        if m and stamp is not None:
            current = {"rule": m[1], "start": stamp, "threads": 1, "inputs": [], "outputs": []}
            continue
        if current is not None and ":" in line:
            key, _, value = line.partition(":")
            items = [v.strip() for v in value.split(",") if v.strip()]
            if key == "input":
                current["inputs"] = items
            elif key == "output":
                current["outputs"] = items
            elif key == "threads":
                current["threads"] = int(items[0])
            elif key == "jobid":
                jid = int(items[0])
                jobs[jid] = Job(jid, current["rule"], current["start"], threads=current["threads"],
                                inputs=current["inputs"], outputs=current["outputs"])
                current["jobid"] = jid
            if key == "threads" and "jobid" in current:
                jobs[current["jobid"]].threads = int(items[0])
        m = FINISHED.match(line)
        if m and stamp is not None and int(m[1]) in jobs:
            jobs[int(m[1])].end = stamp
    producer = {out: j.jobid for j in jobs.values() for out in j.outputs}
    for j in jobs.values():
        j.deps = sorted({producer[i] for i in j.inputs if i in producer and producer[i] != j.jobid})
    return jobs, cores


def critical_path(jobs: dict[int, Job]) -> list[Job]:
    done = [j for j in jobs.values() if j.end]
    if not done:
        return []
    path = [max(done, key=lambda j: j.end)]
    while path[-1].deps:
        path.append(max((jobs[d] for d in path[-1].deps), key=lambda j: j.end or j.start))
    return path[::-1]


def core_use(jobs: dict[int, Job], cores: int) -> tuple[float, float, float]:
    """(wall seconds, thread-seconds / (cores x wall), share of wall time with a free core)."""
    done = [j for j in jobs.values() if j.end]
    t0, t1 = min(j.start for j in done), max(j.end for j in done)
    wall = (t1 - t0).total_seconds()
    events = sorted([(j.start, j.threads) for j in done] + [(j.end, -j.threads) for j in done])
    busy, last, idle, held = 0, t0, 0.0, 0.0
    for t, d in events:
        span = (t - last).total_seconds()
        held += min(busy, cores) * span
        if busy < cores:
            idle += span
        busy, last = busy + d, t
    return wall, held / (cores * wall) if wall else float("nan"), idle / wall if wall else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--cores", type=int, default=None, help="default: the log's 'Provided cores'")
    a = ap.parse_args()
    jobs, cores = parse(Path(a.log).read_text())
    cores = a.cores or cores or 1
    path = critical_path(jobs)
    print(f"{len(jobs)} jobs, {cores} cores")
    print("\ncritical path (rule, start, seconds, wait after its last dependency):")
    for j in path:
        ends = [jobs[d].end for d in j.deps if jobs[d].end]
        wait = (j.start - max(ends)).total_seconds() if ends else 0.0
        print(f"  {j.rule:32s} {j.start:%H:%M:%S} {j.seconds:8.0f} s  wait {wait:5.0f} s  threads {j.threads}")
    wall, use, free = core_use(jobs, cores)
    on_path = sum(j.seconds for j in path)
    print(f"\nwall {wall:.0f} s; critical path {on_path:.0f} s of jobs; cores held {use:.0%} of "
          f"{cores} x wall; a core free during {free:.0%} of the wall time")
    by_rule: dict[str, float] = {}
    for j in jobs.values():
        if j.end:
            by_rule[j.rule] = by_rule.get(j.rule, 0.0) + j.seconds * j.threads
    print("\nthread-seconds by rule:")
    for rule, s in sorted(by_rule.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {rule:32s} {s:8.0f}")


if __name__ == "__main__":
    main()
