"""The whole smoke DAG through DVC and Snakemake, in a throw-away copy of the repo.

One module-scoped build (``dvc repro`` on the smoke config, which runs every Snakemake
stage) is shared by the checks below, which run in file order: nothing to do on a second
run, a clean ``dvc status``, partial reruns after a parameter or a fact-file change,
metrics/plots/dag, and last the remote round trip (push, delete, pull).
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run(cmd, cwd, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def planned_rules(cwd) -> dict[str, int]:
    """Jobs a Snakemake dry run would execute, per rule."""
    out = run("snakemake -n --cores 1", cwd).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    for name in ("Snakefile", "dvc.yaml", "workflow", "sources", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    smoke = yaml.safe_load((ROOT / "workflow/config/smoke.yaml").read_text())
    cfg = deep_merge(params, smoke)
    # The fact set comes from a file, so that editing it can be tested.
    run([sys.executable, "-m", "edit_retention", "prepare-facts", "--source",
         json.dumps(cfg["facts"]["builtin-small"]["source"]), "--out", "sources/facts.jsonl"], d)
    cfg["facts"]["builtin-small"]["source"] = {"type": "jsonl", "path": "sources/facts.jsonl"}
    (d / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm init", d)
    run("dvc init -q && dvc config core.analytics false", d)
    run("dvc repro", d)
    return d


def test_smoke_study_builds_every_stage(repo):
    summary = pd.read_csv(repo / "data/results/summary.csv")
    assert list(summary.columns) == ["model", "editor", "task", "remedy", "seed", "knowledge",
                                     "phase", "metric", "value", "n"]
    assert set(summary.editor) == {"rome", "ft_l"}
    assert set(summary.remedy) == {"none", "paraphrase", "freeze"}
    assert {"base", "edited", "finetuned"} <= set(summary.phase)
    assert {"edited", "intrinsic"} <= set(summary.knowledge)
    es = summary.query("knowledge == 'edited' and metric == 'rewrite_success' and phase == 'edited'")
    assert len(es) == 6 and es.value.between(0, 1).all()
    metrics = json.loads((repo / "data/results/metrics.json").read_text())
    assert set(metrics) == {"rome", "ft_l"}
    for name in ("retention_by_editor", "remedies", "phases"):
        for ext in ("png", "pdf"):
            assert (repo / f"figures/{name}.{ext}").stat().st_size > 1000
    # Edits are deltas, not model copies; fine-tuned weights were temporary.
    edit_dirs = list((repo / "data/edits").glob("*/*/*/k*"))
    assert len(edit_dirs) == 4 and all((e / "delta.safetensors").exists() for e in edit_dirs)
    assert not list((repo / "data/finetuned").glob("**/model"))
    assert (repo / "logs/finetune").exists()


def test_second_run_has_nothing_to_do(repo):
    assert planned_rules(repo) == {}
    assert "up to date" in run("dvc status", repo).stdout


def test_dvc_reports_dag_metrics_and_plots(repo):
    dag = run("dvc dag", repo).stdout
    for stage in ("models", "facts", "intrinsic", "edits", "finetune_evaluate", "summarize", "figures"):
        assert stage in dag
    assert "edited_retention" in run("dvc metrics show --json", repo).stdout
    run("dvc plots show -o plots_html", repo)
    assert (repo / "plots_html/index.html").exists()


def test_changed_learning_rate_reruns_only_downstream(repo):
    p = repo / "params.yaml"
    original = p.read_text()
    cfg = yaml.safe_load(original)
    cfg["tasks"]["text"]["params"]["lr"] = 2.0e-3
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        assert planned_rules(repo) == {"finetune": 6, "evaluate_finetuned": 6, "summarize": 1,
                                       "figures": 1, "all": 1}
        dry = run("dvc repro --dry", repo).stdout
        assert "Running stage 'finetune_evaluate'" in dry and "Running stage 'edits'" not in dry
    finally:
        p.write_text(original)
    assert planned_rules(repo) == {}


def test_edited_fact_file_reruns_only_invalidated_stages(repo):
    f = repo / "sources/facts.jsonl"
    original = f.read_text()
    rows = [json.loads(line) for line in original.splitlines()]
    rows[0]["target_new"] = rows[1]["target_true"] if rows[1]["target_true"] != rows[0]["target_true"] else "Atlantis"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        plan = planned_rules(repo)
        assert "prepare_model" not in plan and plan["prepare_facts"] == 1 and plan["apply_edits"] == 4
        dry = run("dvc repro --dry", repo).stdout
        assert "Running stage 'facts'" in dry and "Running stage 'models'" not in dry
    finally:
        f.write_text(original)
        run("touch -d '2000-01-01' sources/facts.jsonl", repo)


def test_remote_round_trip(repo, tmp_path):
    run(f"dvc remote add -d local {tmp_path / 'remote'}", repo)
    run("dvc push", repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / "figures")
    run("dvc pull", repo)
    assert (repo / "data/results/summary.csv").exists()
    # DVC restores files with fresh, unordered mtimes; --touch (no job runs) records that
    # the pulled outputs are current, in DAG order. This is `make pull`.
    before = (repo / "data/results/summary.csv").read_bytes()
    run("snakemake --cores 1 --touch", repo)
    assert planned_rules(repo) == {}
    assert (repo / "data/results/summary.csv").read_bytes() == before
    assert "up to date" in run("dvc status", repo).stdout
