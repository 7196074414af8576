"""Scheduler refusals name the profile setting to change (edit_retention.cluster); no cluster needed."""
from edit_retention.cluster import scheduler_hints


def test_unknown_partition_names_slurm_partition_and_sinfo():
    log = ("SLURM sbatch failed. The error message was 'sbatch: error: invalid partition specified: gpu\n"
           "sbatch: error: Batch job submission failed: Invalid partition name specified'.")
    (hint,) = scheduler_hints(log)
    assert "'gpu'" in hint and "slurm_partition" in hint and "sinfo" in hint


def test_refused_and_unlisted_accounts():
    (refused,) = scheduler_hints("sbatch: error: Batch job submission failed: Invalid account or "
                                 "account/partition combination specified")
    assert "slurm_account" in refused and "sacctmgr" in refused
    (unlisted,) = scheduler_hints("Unable to test the validity of the given or guessed SLURM account 'x' "
                                  "with sacctmgr: sacctmgr: error: ...")
    assert "remove slurm_account" in unlisted


def test_no_accounting_points_at_squeue_status():
    (hint,) = scheduler_hints("sacct: error: Slurm accounting storage is disabled")
    assert "slurm-status-command: squeue" in hint and "MinJobAge" in hint


def test_other_failures_give_no_hint():
    assert scheduler_hints("Error in rule finetune:\n    message: SLURM-job '7' failed") == []
