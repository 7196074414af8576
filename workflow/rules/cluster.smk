# When a run fails because the cluster's scheduler refused a job (an unknown partition or
# account, no job accounting), name the profile setting to change (edit_retention.cluster).
import sys

from edit_retention.cluster import scheduler_hints


onerror:
    from pathlib import Path

    if log and Path(log).is_file():
        for _hint in scheduler_hints(Path(log).read_text(errors="replace")):
            print(f"Hint: {_hint}", file=sys.stderr)
