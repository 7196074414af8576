"""What the benchmark scripts share: peak memory, and running one measurement per fresh
subprocess (so that each peak is its own) with a table of the rows at the end."""
from __future__ import annotations

import json
import resource
import subprocess
import sys


def rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_rows(script: str, runs: dict[str, list[str]], cols: list[str]) -> list[dict]:
    """Run ``script`` once per entry of ``runs`` (label -> its arguments); each run prints
    its row as the last line of JSON. Prints every row, then a table of ``cols``."""
    rows = []
    for label, args in runs.items():
        r = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{label} failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("\n" + " | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    return rows
