"""Execution profiles (workflow/profiles/*): each one parses, plans the whole study, and
hands the heavy rules the resources and device it promises. Dry runs only (-n), so no
GPU or SLURM cluster is needed; the SLURM executor plugin must be installed."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("select_intrinsic", "layer_stats", "apply_edits", "finetune", "evaluate_edited", "evaluate_finetuned")


def dry_run(profile: str, *extra: str) -> dict[str, list[str]]:
    """Job blocks of a forced dry run, per rule (each block: its printed lines)."""
    exe = Path(sys.executable).parent / "snakemake"
    r = subprocess.run([str(exe), "-n", "-p", "--forceall", "--profile", f"workflow/profiles/{profile}", *extra],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    blocks: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", r.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            blocks.setdefault(m.group(1), []).append(block)
    return blocks


@pytest.mark.parametrize("profile", ["gpu", "slurm"])
def test_gpu_profiles_claim_gpus_and_cuda(profile):
    blocks = dry_run(profile)
    assert {"apply_edits", "finetune", "summarize", "figure_retention_by_editor", "report"} <= set(blocks)
    for rule in HEAVY:
        for b in blocks[rule]:
            assert re.search(r"resources:.*\bgpu=1\b", b), (rule, b)
            assert "--device cuda" in b, (rule, b)
    if profile == "slurm":
        ft = blocks["finetune"][0]
        assert "runtime=240" in ft and "mem_mb=64000" in ft and "slurm_partition=gpu" in ft
        assert "--mem-mb 64000" in ft            # the job fits its auto batch sizes into its reservation
        assert all("mem_mb=32000" in b for b in blocks["evaluate_edited"])
    for b in blocks["summarize"]:
        assert not re.search(r"\bgpu=", b)


def test_local_profile_runs_on_cpu():
    blocks = dry_run("local")
    for b in blocks["finetune"]:
        assert "--device cpu" in b and not re.search(r"\bgpu=", b)
        assert "--mem-mb 0" in b                 # unreserved: auto batch sizes use the machine's memory


def test_config_mem_mb_is_the_jobs_reservation_and_its_budget():
    blocks = dry_run("local", "--config", "mem_mb=3000")
    for rule in ("select_intrinsic", "layer_stats", "finetune", "evaluate_finetuned"):
        for b in blocks[rule]:
            assert re.search(r"resources:.*\bmem_mb=3000\b", b) and "--mem-mb 3000" in b, (rule, b)


def test_default_profile_is_picked_up_and_reruns_incomplete(monkeypatch):
    """profiles/default/ (next to the Snakefile) applies to a plain `snakemake` here."""
    from snakemake.cli import parse_args

    monkeypatch.chdir(ROOT)
    _, args = parse_args(["--cores", "1", "-n"])
    assert args.rerun_incomplete is True
    _, args = parse_args(["--cores", "1", "-n", "--workflow-profile", "none"])
    assert args.rerun_incomplete is False


KILLED = '''
rule two_outputs:
    output: "first.txt", "second.txt"
    shell: "echo 1 > first.txt; if [ -e hang ]; then sleep 120; fi; echo 2 > second.txt"
'''


def test_after_kill_9_unlock_and_a_plain_rerun_rebuild(tmp_path):
    """README, "Determinism and interruption", the documented sequence: a run killed with
    SIGKILL mid-job (one of the job's outputs written, so Snakemake marks it incomplete),
    `snakemake --unlock`, then a plain `snakemake --cores ...` rebuilds the job. A workflow
    laid out as this one (Snakefile at the root, this repository's profiles/default/)."""
    import os
    import shutil
    import signal
    import time

    (tmp_path / "Snakefile").write_text(KILLED)
    (tmp_path / "profiles/default").mkdir(parents=True)
    shutil.copy(ROOT / "profiles/default/config.yaml", tmp_path / "profiles/default/config.yaml")
    (tmp_path / "hang").write_text("")
    exe = str(Path(sys.executable).parent / "snakemake")

    def snakemake(*args):
        return subprocess.run([exe, *args], cwd=tmp_path, capture_output=True, text=True)

    proc = subprocess.Popen([exe, "--cores", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while not (tmp_path / "first.txt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert (tmp_path / "first.txt").exists(), "the job did not start"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (tmp_path / "hang").unlink()
    locked = snakemake("--cores", "1")
    assert locked.returncode != 0 and "cannot be locked" in locked.stderr + locked.stdout
    assert snakemake("--unlock").returncode == 0
    # without the profile Snakemake stops at the incomplete output ...
    bare = snakemake("--cores", "1", "--workflow-profile", "none")
    assert bare.returncode != 0 and "IncompleteFilesException" in bare.stderr + bare.stdout
    # ... with it (a plain rerun) the job is rebuilt
    rerun = snakemake("--cores", "1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Using workflow specific profile profiles/default" in rerun.stderr
    assert (tmp_path / "second.txt").read_text() == "2\n"
