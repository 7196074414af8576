"""The study beyond one process, for real: the smoke study on a SLURM cluster started on
this machine (scripts/slurm_local.sh), and its artifacts through a DVC remote over SSH to
an sshd started on 127.0.0.1.

One module-scoped local build (``dvc repro`` on the smoke config) is the reference: the
SLURM run must reproduce its ``summary.csv`` byte for byte, and it is what goes through the
SSH remote. The SLURM run starts with one bad input (a fact record without its fields: valid
JSON, so it passes the file check before any job, and only the loader in its job finds it),
so that the failing SLURM job, its log path and the resumed rerun are checked on the way.

Needs root and apt (the cluster's Debian packages are installed when missing: munge,
slurmctld, slurmd, slurm-client; openssh-server); where that is impossible the tests skip
with the reason. Every daemon is started by these fixtures, bound to 127.0.0.1, and stopped
by its PID at the end, whatever the outcome.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import deep_merge

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SLURM_SCRIPT = ROOT / "scripts/slurm_local.sh"
PROFILE = ROOT / "workflow/profiles/slurm-local"
pytestmark = pytest.mark.slow



def base_env(**extra) -> dict:
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    env.update(extra)
    return env


def run(cmd, cwd, env=None, check=True, timeout=1800):
    r = subprocess.run(cmd, cwd=cwd, env=env or base_env(), capture_output=True, text=True,
                       shell=isinstance(cmd, str), timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def planned_jobs(cwd, env=None, *targets: str) -> dict[str, int]:
    out = run(["snakemake", "-n", "--cores", "1", "--", *targets], cwd, env).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def job_stats(output: str) -> dict[str, int]:
    """Jobs a (real) Snakemake run announced, per rule."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


# --- the reference: the smoke study built locally --------------------------------------

# The smoke study's DAG (every rule, the summary and the figures) on a smaller grid: one
# editor, two remedies. What runs on the cluster is what test_pipeline builds locally; the
# whole smoke grid here would only repeat its fine-tunings as more SLURM jobs.
CLUSTER_GRID = {"grid": {"editors": ["rome"], "remedies": ["none", "freeze"]}}

@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A throw-away copy of the repository set up for the smoke study (fact set from a file,
    so that it can be corrupted), without any artifact."""
    d = tmp_path_factory.mktemp("template")
    for name in ("Snakefile", "dvc.yaml", "workflow", "sources", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    cfg = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                     yaml.safe_load((ROOT / "workflow/config/smoke.yaml").read_text()))
    cfg = deep_merge(cfg, CLUSTER_GRID)
    run([sys.executable, "-m", "edit_retention", "prepare-facts", "--source",
         json.dumps(cfg["facts"]["builtin-small"]["source"]), "--out", "sources/facts.jsonl"], d)
    cfg["facts"]["builtin-small"]["source"] = {"type": "jsonl", "path": "sources/facts.jsonl"}
    (d / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d


def copy_study(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def local_study(template, tmp_path_factory) -> dict:
    """The smoke study built on this machine (``dvc repro``, which runs Snakemake), timed."""
    d = copy_study(template, tmp_path_factory.mktemp("local") / "study")
    run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm init", d)
    run("dvc init -q && dvc config core.analytics false", d)
    t0 = time.time()
    run("dvc repro", d)
    return {"dir": d, "seconds": time.time() - t0}


# --- a SLURM cluster --------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node SLURM cluster from scripts/slurm_local.sh; yields the environment that
    reaches it. Skips with the script's reason where the packages cannot be installed."""
    d = tmp_path_factory.mktemp("slurm")
    r = subprocess.run(["bash", str(SLURM_SCRIPT), "start", str(d)], capture_output=True, text=True)
    try:
        if r.returncode == 3:
            pytest.skip(f"no SLURM cluster on this machine: {r.stderr.strip().splitlines()[-1]}")
        assert r.returncode == 0, f"slurm_local.sh start failed:\n{r.stdout}\n{r.stderr[-4000:]}"
        env = base_env(SLURM_CONF=str(d / "slurm.conf"))
        env["PATH"] = f"{d / 'bin'}:{env['PATH']}"
        yield {"dir": d, "env": env}
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop", str(d)], capture_output=True, text=True)


def slurm_snakemake(cwd, cluster, *args, check=True):
    return run(["snakemake", "--profile", str(PROFILE), *args], cwd, cluster["env"], check=check)


def test_cluster_answers(cluster):
    out = run("srun -N1 hostname", ROOT, cluster["env"]).stdout.strip()
    assert out == socket.gethostname()
    assert "cpu" in run("sinfo -h -o %P", ROOT, cluster["env"]).stdout


@pytest.fixture(scope="module")
def slurm_study(template, cluster, tmp_path_factory) -> dict:
    """The smoke study through the SLURM executor: first with a fact record that lacks its
    fields (the prepare_facts job fails; --keep-going lets the independent jobs finish), then
    with the file restored (the rerun resumes from what the first run built)."""
    d = copy_study(template, tmp_path_factory.mktemp("slurm-study") / "study")
    facts = d / "sources/facts.jsonl"
    good = facts.read_text()
    facts.write_text(good + '{"case_id": "P0-broken"}\n')
    t0 = time.time()
    failed = slurm_snakemake(d, cluster, "--keep-going", check=False)
    failed_rule_log = (d / "logs/prepare_facts/builtin-small.log").read_text()
    facts.write_text(good)
    resumed = slurm_snakemake(d, cluster)
    return {"dir": d, "failed": failed, "failed_rule_log": failed_rule_log, "resumed": resumed,
            "seconds": time.time() - t0}


def test_failing_slurm_job_reports_state_and_log(slurm_study):
    r = slurm_study["failed"]
    out = r.stdout + r.stderr
    assert r.returncode != 0
    m = re.search(r"Error in rule prepare_facts:\n\s+message: SLURM-job '(\d+)' failed, SLURM status is: 'FAILED'", out)
    assert m, out[-4000:]
    logs = re.search(r"log: logs/prepare_facts/builtin-small.log, (\S+\.log)", out)
    assert logs, out[-4000:]
    slurm_log = Path(logs.group(1))
    assert slurm_log.is_file() and slurm_log.name == f"{m.group(1)}.log"
    assert "Error in rule prepare_facts" in slurm_log.read_text()
    assert "sources/facts.jsonl" in slurm_study["failed_rule_log"]    # the stage names the bad file
    # --keep-going: the jobs that do not need the facts ran on the cluster.
    assert (slurm_study["dir"] / "data/models/tiny-llama/base").is_dir()


def test_rerun_resumes_and_matches_local_byte_for_byte(slurm_study, local_study):
    ran = job_stats(slurm_study["resumed"].stdout + slurm_study["resumed"].stderr)
    assert ran.get("prepare_facts") == 1 and "prepare_model" not in ran, ran
    local, remote = local_study["dir"], slurm_study["dir"]
    assert (remote / "data/results/summary.csv").read_bytes() == (local / "data/results/summary.csv").read_bytes()
    for f in ("data/results/cells.csv", "data/results/facts.csv", "data/results/claims.csv"):
        assert (remote / f).read_bytes() == (local / f).read_bytes(), f
    assert planned_jobs(remote) == {}
    print(f"\nsmoke study: local {local_study['seconds']:.0f} s, SLURM {slurm_study['seconds']:.0f} s "
          "(including the failed first run)")


CELL = "tiny-llama/builtin-small/rome/none/text/s0"


def test_cancelled_slurm_job_is_rebuilt(slurm_study, cluster):
    """scancel a running fine-tuning job: Snakemake reports the CANCELLED job, the outputs
    built before the run come back, and a forced rerun rebuilds them identically."""
    d = slurm_study["dir"]
    target = f"data/finetuned/{CELL}/metrics.json"
    before = (d / target).read_bytes()
    proc = subprocess.Popen(["snakemake", "--profile", str(PROFILE), "--forcerun", "finetune", "--", target],
                            cwd=d, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        job = None
        deadline = time.time() + 300
        while job is None and time.time() < deadline and proc.poll() is None:
            rows = run("squeue -h -t running -o %i", d, cluster["env"]).stdout.split()
            job = rows[0] if rows else None
            time.sleep(0.3)
        assert job, "the fine-tuning job never ran"
        time.sleep(2)                                    # well inside the job
        run(["scancel", job], d, cluster["env"])
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    assert proc.returncode != 0
    states = dict(re.findall(r"SLURM-job '(\d+)' failed, SLURM status is: '(\w+)'", out))
    assert states.get(job) == "CANCELLED", (job, states, out[-3000:])
    # Nothing half-written is taken as built: the forced job's old outputs, complete before
    # the run, are put back (keep_built) with their metadata, so nothing is planned ...
    assert "restored" in out and (d / target).read_bytes() == before, out[-3000:]
    assert "finetune" not in planned_jobs(d, None, target)
    # ... and a forced rerun on the cluster rebuilds them identically.
    slurm_snakemake(d, cluster, "--forcerun", "finetune", "--", target)
    assert (d / target).read_bytes() == before


def test_missing_partition_names_the_setting(slurm_study, cluster):
    d = slurm_study["dir"]
    target = f"data/finetuned/{CELL}/metrics.json"
    r = slurm_snakemake(d, cluster, "--forcerun", "finetune", "--set-resources", "finetune:slurm_partition=gpu",
                        "--", target, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "invalid partition specified: gpu" in out              # the scheduler's own words
    assert "slurm_partition" in out and "sinfo" in out, out[-3000:]  # and what to change


# --- a DVC remote over SSH --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_sshd() -> str:
    """Path of sshd, installing Debian's openssh-server when missing (root and apt only)."""
    for p in (shutil.which("sshd"), "/usr/sbin/sshd"):
        if p and os.access(p, os.X_OK):
            return p
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no sshd, and openssh-server cannot be installed here (needs root and apt-get)")
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    if added:       # keep Debian's maintainer scripts from starting a system sshd on port 22
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        r = subprocess.run("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                           "--no-install-recommends openssh-server", shell=True, capture_output=True, text=True)
    finally:
        if added:
            policy.unlink()
    if r.returncode != 0 or not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.skip(f"openssh-server could not be installed: {r.stderr.strip()[-300:]}")
    return "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """sshd on 127.0.0.1 (a free port) with a throw-away host key and client key; yields
    (port, client key, a HOME whose known_hosts holds the host key)."""
    exe = ensure_sshd()
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], d)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)      # sshd's privilege-separation directory
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "w"))
    try:
        deadline = time.time() + 20
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sshd could not start: {(d / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.skip(f"sshd did not listen on 127.0.0.1:{port}")
                time.sleep(0.2)
        home = d / "home"
        (home / ".ssh").mkdir(parents=True)
        host_key = " ".join((d / "host_key.pub").read_text().split()[:2])
        (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
        yield {"port": port, "key": d / "client_key", "home": home, "dir": d}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dvc_remote_over_ssh_round_trip(local_study, sshd, tmp_path):
    """dvc push to an ssh:// remote, wipe the artifacts, dvc pull, and Snakemake plans nothing."""
    d = local_study["dir"]
    env = base_env(HOME=str(sshd["home"]))          # known_hosts with the throw-away host key
    remote = tmp_path / "ssh-remote"
    run(f"dvc remote add -f ssh-test ssh://root@127.0.0.1:{sshd['port']}{remote}", d, env)
    run(f"dvc remote modify --local ssh-test keyfile {sshd['key']}", d, env)
    before = (d / "data/results/summary.csv").read_bytes()
    run("dvc push -r ssh-test", d, env)
    assert any(p.is_file() for p in remote.rglob("*")), "nothing arrived over SSH"
    shutil.rmtree(d / "data")
    # The PNGs are versioned by git (dvc.yaml: cache: false), the PDFs by the remote.
    for pdf in (d / "figures").glob("*.pdf"):
        pdf.unlink()
    run("dvc pull -r ssh-test", d, env)
    assert (d / "data/results/summary.csv").read_bytes() == before
    # DVC restores files with fresh, unordered mtimes; --touch records them as current (make pull).
    run("snakemake --cores 1 --touch", d, env)
    assert planned_jobs(d, env) == {}
    assert "up to date" in run("dvc status", d, env).stdout
