"""Issue 14 item 4: a job that fails does not leave the user worse off than before the run.

Snakemake deletes a job's old outputs when it starts and a failed job's outputs after it;
edit_retention.keep_built (the workflow's onstart/onerror/onsuccess hooks) puts the old
ones back, with their times and Snakemake metadata, so the next run decides as before.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# A workflow of its own with the same hooks as workflow/rules/common.smk: a folder output,
# a file output made from it, an independent output, and a job that fails when config["fail"] is set.
SNAKEFILE = '''
import sys
from edit_retention import keep_built
_KEPT = {}
def _err(line): print(line, file=sys.stderr)
onstart:
    _KEPT.update(keep_built.snapshot(workflow, log=_err))
onsuccess:
    keep_built.discard(workflow)
onerror:
    keep_built.restore(workflow, _KEPT, log=_err)

rule all:
    input: "out/model", "out/scores.jsonl", "out/summary.txt"

rule model:
    output: directory("out/model")
    params: v=config.get("ver", 0), fail=config.get("fail", 0), nap=config.get("nap", 0)
    shell: "mkdir -p {output}/sub && echo w{params.v} > {output}/weights && echo c{params.v} > {output}/sub/config && sleep {params.nap} && test {params.fail} = 0"

rule scores:
    input: "out/model"
    output: "out/scores.jsonl"
    params: v=config.get("ver", 0)
    shell: "cat {input}/weights > {output}"

rule other:
    output: "out/summary.txt"
    params: v=config.get("ver", 0)
    shell: "echo s{params.v} > {output}"
'''


def _state(root: Path) -> dict:
    """Every file under out/: bytes and modification time (ns); folders: times too."""
    state = {}
    for p in sorted((root / "out").rglob("*")):
        st = p.stat()
        state[str(p.relative_to(root))] = (p.read_bytes() if p.is_file() else None, st.st_mtime_ns)
    return state


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([*SNAKEMAKE, "--cores", "1", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_failed_job_gets_its_old_outputs_and_metadata_back(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    r = _run(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    before = _state(tmp_path)
    assert (tmp_path / "out/model/sub/config").read_text() == "c0\n"

    # ver=1 changes every rule's params; the model job fails after writing new files.
    r = _run(tmp_path, "--keep-going", "--config", "ver=1", "fail=1")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "restored 1 output(s)" in out and "out/model" in out, out[-3000:]
    after = _state(tmp_path)
    # The folder is back byte for byte with its times; the independent job's new output
    # (it succeeded) is kept as rebuilt; nothing is left aside.
    for path in ("out/model", "out/model/weights", "out/model/sub", "out/model/sub/config",
                 "out/scores.jsonl"):
        assert after[path] == before[path], path
    assert after["out/summary.txt"][0] == b"s1\n"
    assert not (tmp_path / ".snakemake/kept_outputs").exists()

    # The restored metadata is the old one: with the old config, only the job whose own
    # params changed in the failed run (summary, rebuilt with ver=1) is planned; the model
    # and the scores made from it are up to date.
    r = _run(tmp_path, "-n", "--config", "ver=0")
    plan = r.stdout + r.stderr
    assert "rule other:" in plan and "rule model:" not in plan and "rule scores:" not in plan, plan[-3000:]

    # With the new config the model is planned again (its params differ from the restored record).
    r = _run(tmp_path, "-n", "--config", "ver=1")
    assert "rule model:" in r.stdout + r.stderr


def test_interrupted_job_gets_its_old_outputs_back(tmp_path):
    """Ctrl-C while the model job runs: Snakemake keeps the half-written folder, marked
    incomplete; the hook replaces it with the folder built before the run."""
    import signal
    import time

    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    assert _run(tmp_path).returncode == 0
    before = _state(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.Popen([*SNAKEMAKE, "--cores", "1", "--config", "ver=3", "nap=6"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not (tmp_path / "out/model/weights").exists() or (tmp_path / "out/model/weights").read_text() != "w3\n":
        assert time.time() < deadline and p.poll() is None, "the model job never started"
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0
    assert "restored" in out and "out/model" in out, out[-3000:]
    after = _state(tmp_path)
    for path in ("out/model", "out/model/weights", "out/model/sub/config"):
        assert after[path] == before[path], path
    r = _run(tmp_path, "-n", "--config", "ver=0")
    assert "rule model:" not in r.stdout + r.stderr and "Incomplete" not in r.stdout + r.stderr


def test_successful_run_leaves_nothing_aside(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    assert _run(tmp_path).returncode == 0
    r = _run(tmp_path, "--config", "ver=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out/model/weights").read_text() == "w2\n"
    assert not (tmp_path / ".snakemake/kept_outputs").exists()


def test_study_corpus_typo_found_in_the_job_keeps_the_built_corpus(tmp_path):
    """The issue's case: a corpus asked for more passages than its source gives fails inside
    build_corpus; the built corpus is still there byte for byte and still up to date."""
    for name in ("Snakefile", "workflow", "profiles", "params.yaml", "src", "sources"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    target = "data/corpus/pydocs-small/builtin-small/train.jsonl"
    smoke = ["--configfile", "workflow/config/smoke.yaml"]
    r = subprocess.run(["snakemake", "--cores", "1", target, *smoke], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    corpus = tmp_path / "data/corpus/pydocs-small/builtin-small"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in corpus.iterdir()}
    (tmp_path / "big.yaml").write_text(
        "corpora:\n  pydocs-small:\n    source: {type: python_docs}\n    n_train: 100000\n    n_eval: 16\n    seed: 0\n")
    r = subprocess.run(["snakemake", "--cores", "1", target, *smoke, "big.yaml"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    # The stage's own message is on screen (the default profile's show-failed-logs).
    assert "n_train + n_eval = 100016 were asked for" in out, out[-3000:]
    assert "restored 3 output(s)" in out
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in corpus.iterdir()} == before
    r = subprocess.run(["snakemake", "-n", "--cores", "1", target, *smoke], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
