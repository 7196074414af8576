"""What to change when a cluster scheduler refuses the study's jobs.

Snakemake's SLURM executor reports sbatch's own message ("invalid partition specified:
gpu") with the sbatch call; ``scheduler_hints`` reads a run's log and adds which profile
setting that message is about. The Snakefile's ``onerror`` handler prints them
(workflow/rules/cluster.smk).
"""
from __future__ import annotations

import re

PROFILE_HINT = "in your profile (workflow/profiles/<name>/config.yaml: default-resources, or set-resources RULE:KEY=VALUE)"


def scheduler_hints(text: str) -> list[str]:
    """Hints for the scheduler errors found in a Snakemake log's text (none: [])."""
    hints = []
    for part in sorted(set(re.findall(r"invalid partition specified: (\S+)", text))):
        hints.append(f"SLURM has no partition {part!r}: set slurm_partition {PROFILE_HINT}; "
                     "`sinfo -s` lists this cluster's partitions.")
    if re.search(r"Invalid account|account .* appears to be invalid", text):
        hints.append(f"SLURM refused the account: set slurm_account {PROFILE_HINT} to one of yours; "
                     "`sacctmgr show assoc user=$USER format=account,partition` lists them.")
    elif "Unable to test the validity of the given or guessed SLURM account" in text:
        hints.append("SLURM could not list your accounts (a cluster without an accounting database?): "
                     f"remove slurm_account {PROFILE_HINT} where the site needs none.")
    if re.search(r"accounting storage is disabled", text, re.I):
        hints.append("This cluster keeps no job accounting, so sacct cannot report job states: "
                     "set slurm-status-command: squeue in your profile (and a MinJobAge of a few "
                     "minutes or more in slurm.conf, so that squeue still lists finished jobs).")
    return hints
