# When a run fails because the cluster's scheduler refused a job (an unknown partition or
# account, no job accounting), name the profile setting to change (edit_retention.cluster).
import sys

from edit_retention.cluster import scheduler_hints


def print_scheduler_hints(log):
    """Called by common.smk's onerror (a workflow has one onerror handler)."""
    from pathlib import Path

    # Snakemake passes the run's log file (a list of them in Snakemake 9).
    for _log in log if isinstance(log, (list, tuple)) else [log]:
        if _log and Path(_log).is_file():
            for _hint in scheduler_hints(Path(_log).read_text(errors="replace")):
                print(f"Hint: {_hint}", file=sys.stderr)
