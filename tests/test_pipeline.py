"""The whole smoke DAG through DVC and Snakemake, in a throw-away copy of the repo.

One module-scoped build (``dvc repro`` on the smoke config, which runs every Snakemake
stage) is shared by the checks below, which run in file order: nothing to do on a second
run, a clean ``dvc status``, partial reruns after a parameter or a fact-file change,
metrics/plots/dag, and last the remote round trip (push, delete, pull).
"""
from __future__ import annotations

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

from conftest import deep_merge
from edit_retention.plots import FIGURES

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow



def run(cmd, cwd, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


# Jobs downstream of the summary: statistics, one rule per figure, results.md.
RESULT_RULES = {"claims": 1, "report": 1, "figure_retention_by_editor": 1, "figure_retention_vs_steps": 1,
                "figure_retention_vs_k": 1, "figure_freezing": 1, "figure_methods": 1,
                "figure_retention_vs_edit_size": 1, "figure_retention_vs_tokens": 1}


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
    for name in ("Snakefile", "dvc.yaml", "profiles", "workflow", "sources", "src"):
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
    assert set(summary.remedy) == {"none", "paraphrase", "freeze", "lora"}
    assert set(summary.task) == {"text"}
    assert {"base", "edited", "finetuned"} <= set(summary.phase)
    assert {"edited", "intrinsic"} <= set(summary.knowledge)
    es = summary.query("knowledge == 'edited' and metric == 'rewrite_success' and phase == 'edited'")
    # 2 editors x 1 task x 4 remedies (none, paraphrase, freeze, lora)
    assert len(es) == 8 and es.value.between(0, 1).all()
    assert "step-2" in set(summary.phase)           # the text task's checkpoint
    # Every protocol end to end: scores -> summary (every phase, both kinds) -> claims -> results.md.
    for p in ("first_token", "generation_contains"):
        got = summary[summary.metric == f"rewrite_success@{p}"]
        assert {"base", "edited", "step-2", "finetuned"} <= set(got.phase), p
        assert set(got.knowledge) == {"edited", "intrinsic"}, p
        assert f"retention_rewrite@{p}" in set(summary[summary.phase == "finetuned"].metric), p
    base = next((repo / "data/scores").glob("*/*/base.jsonl"))
    scores = [json.loads(x) for x in base.read_text().splitlines()]
    assert all(("generation" in r) == (r["kind"] != "neighborhood") for r in scores)
    claims = pd.read_csv(repo / "data/results/claims.csv")
    assert set(claims.protocol) == {"probability", "first_token", "generation_contains", "reference_pairing"}
    assert "### Claims under each success protocol" in (repo / "results.md").read_text()
    metrics = json.loads((repo / "data/results/metrics.json").read_text())
    assert set(metrics) == {"rome", "ft_l"}
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (repo / f"figures/{name}.{ext}").stat().st_size > 1000
    # Edits are deltas, not model copies; fine-tuned weights were temporary.
    edit_dirs = [e for e in (repo / "data/edits").glob("*/*/*/k*") if e.is_dir()]
    assert len(edit_dirs) == 4 and all((e / "delta.safetensors").exists() for e in edit_dirs)
    # Every edit's health beside it, and the gate's table in the results.
    assert all(e.with_name(e.name + ".health.json").is_file() for e in edit_dirs)
    health = pd.read_csv(repo / "data/results/health.csv")
    assert len(health) == 4 and set(health.editor) == {"rome", "ft_l"}
    assert "## Edit health" in (repo / "results.md").read_text()
    assert not list((repo / "data/finetuned").glob("**/model"))
    assert (repo / "logs/finetune").exists()


def test_second_run_has_nothing_to_do(repo):
    assert planned_rules(repo) == {}
    assert "up to date" in run("dvc status", repo).stdout


def test_dvc_reports_dag_metrics_and_plots(repo):
    dag = run("dvc dag", repo).stdout
    for stage in ("models", "facts", "intrinsic", "edits", "finetune_evaluate", "summarize", "figures", "report"):
        assert stage in dag
    assert "edited_retention" in run("dvc metrics show --json", repo).stdout
    run("dvc plots show -o plots_html", repo)
    assert (repo / "plots_html/index.html").exists()


def test_snakemake_report_holds_figures_claims_and_config(repo, tmp_path):
    """``snakemake --report``: Snakemake's own report with every figure (captioned), the
    pipeline's results.md (claims table) and the study config."""
    out = tmp_path / "report.html"
    run(f"snakemake --report {out}", repo)
    html = out.read_text(errors="replace")
    for name in FIGURES:
        assert f"{name}.png" in html, name
    assert "results.md" in html and "study_config.json" in html and "claims.csv" in html
    assert planned_rules(repo) == {}                  # writing the report reran nothing


def test_changed_learning_rate_reruns_only_downstream(repo):
    p = repo / "params.yaml"
    original = p.read_text()
    cfg = yaml.safe_load(original)
    cfg["tasks"]["text"]["params"]["lr"] = 2.0e-3
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        # the text task's cells only: 2 editors x 4 remedies (the sst task is untouched)
        assert planned_rules(repo) == {"finetune": 8, "evaluate_finetuned": 8, "summarize": 1,
                                       **RESULT_RULES, "all": 1}
        dry = run("dvc repro --dry", repo).stdout
        assert "Running stage 'finetune_evaluate'" in dry and "Running stage 'edits'" not in dry
    finally:
        p.write_text(original)
    assert planned_rules(repo) == {}


def test_changed_stage_code_reruns_only_its_dependants(repo):
    """Stage code is an input of its rules: a changed file reruns its stage and dependants
    (Snakemake compares checksums, so a mere touch does not)."""
    f = repo / "src/edit_retention/finetune.py"
    original = f.read_text()
    os.utime(f)
    assert planned_rules(repo) == {}
    f.write_text(original + "\n# a changed line\n")
    try:
        # every fine-tune: 2 editors x 2 tasks x 4 remedies (task data and edits are not redone)
        assert planned_rules(repo) == {"finetune": 8, "evaluate_finetuned": 8, "summarize": 1,
                                       **RESULT_RULES, "all": 1}
    finally:
        f.write_text(original)
    assert planned_rules(repo) == {}


def _plan_after_change(repo, rel: str) -> dict[str, int]:
    """The dry-run plan after a one-line change to a package file (restored after)."""
    f = repo / rel
    original = f.read_text()
    f.write_text(original + "\n# a changed line\n")
    try:
        return planned_rules(repo)
    finally:
        f.write_text(original)


def test_changed_module_plans_exactly_its_importers(repo):
    """Code inputs come from the imports (edit_retention.codeinputs): a changed module replans
    the rules whose stage imports it, and their dependants, and nothing else."""
    plan = _plan_after_change(repo, "src/edit_retention/metrics.py")   # select, summary, claims import it
    assert {"select_intrinsic", "summarize", "claims", "report"} <= set(plan)
    assert not {"prepare_model", "prepare_facts", "build_corpus", "generate_paraphrases", "layer_stats"} & set(plan)
    assert _plan_after_change(repo, "src/edit_retention/plots/freezing.py") == {"figure_freezing": 1, "all": 1}
    assert _plan_after_change(repo, "src/edit_retention/stages/report.py") == {"report": 1, "all": 1}
    plan = _plan_after_change(repo, "src/edit_retention/claims.py")
    assert plan == {"claims": 1, "report": 1, "figure_retention_vs_steps": 1, "figure_retention_vs_k": 1,
                    "figure_retention_vs_edit_size": 1, "all": 1}
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
    # The PNGs are versioned by git (dvc.yaml: cache: false), the PDFs by the remote.
    for pdf in (repo / "figures").glob("*.pdf"):
        pdf.unlink()
    run("dvc pull", repo)
    assert (repo / "data/results/summary.csv").exists()
    # DVC restores files with fresh, unordered mtimes; --touch (no job runs) records that
    # the pulled outputs are current, in DAG order. This is `make pull`.
    before = (repo / "data/results/summary.csv").read_bytes()
    run("snakemake --cores 1 --touch", repo)
    assert planned_rules(repo) == {}
    assert (repo / "data/results/summary.csv").read_bytes() == before
    assert "up to date" in run("dvc status", repo).stdout


def test_dvc_experiments_as_the_readme_runs_them(repo):
    """README, "Reproducibility": two ``dvc exp run -S`` experiments on the learning rate (the
    committed 1e-3, where nothing reruns, and 1e-4, which reruns fine-tuning and what follows),
    ``dvc exp show``, ``dvc metrics diff`` and ``dvc plots diff`` between them (retention curves
    and claim effects from their CSV data), then back to a clean baseline workspace."""
    import csv
    import io

    # Experiments are recorded against a commit. Ignored as in the repository: DVC's outputs
    # (the per-output .gitignore files DVC wrote went with data/ in the remote round trip),
    # Snakemake's state, the logs; and the rendered plots.
    with open(repo / ".gitignore", "a") as f:
        f.write((ROOT / ".gitignore").read_text() + "/plots_html/\n/dvc_plots/\n")
    run("git add -A && git -c user.email=t@t -c user.name=t commit -qm baseline", repo)
    baseline = (repo / "data/results/metrics.json").read_bytes()
    out = run("dvc exp run -n lr-1e-3 -S tasks.text.params.lr=1e-3", repo).stdout
    assert "Running stage" not in out                       # the committed value: nothing to do
    out = run("dvc exp run -n lr-1e-4 -S tasks.text.params.lr=1e-4", repo).stdout
    assert "Stage 'edits' didn't change, skipping" in out and "Running stage 'finetune_evaluate'" in out
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(run("dvc exp show --csv", repo).stdout))}
    assert float(rows["lr-1e-3"]["tasks.text.params.lr"]) == 1e-3
    assert float(rows["lr-1e-4"]["tasks.text.params.lr"]) == 1e-4
    diff = json.loads(run("dvc metrics diff --json lr-1e-3 lr-1e-4", repo).stdout)
    changed = [k for k, v in diff.get("data/results/metrics.json", {}).items() if v.get("diff")]
    assert any(k.endswith("_retention") for k in changed), diff
    plots = json.loads(run("dvc plots diff --json lr-1e-3 lr-1e-4", repo).stdout)["data"]
    for name in ("data/results/retention_curves.csv", "data/results/effects.csv"):
        revs = {d["rev"] for d in plots[name][0]["content"]["data"]["values"]}
        assert revs == {"lr-1e-3", "lr-1e-4"}, (name, revs)
    # Back to the baseline: git and DVC restore it, Snakemake records the restored files as current.
    run("git checkout -- . && dvc checkout && snakemake --cores 1 --touch", repo)
    assert run("git status --porcelain", repo).stdout == ""
    assert "up to date" in run("dvc status", repo).stdout
    assert planned_rules(repo) == {}
    assert (repo / "data/results/metrics.json").read_bytes() == baseline
    assert {"lr-1e-3", "lr-1e-4"} <= set(run("dvc exp list --name-only", repo).stdout.split())


def test_killed_run_reruns_to_identical_results(repo):
    """Determinism and interruption: kill a rebuild mid-job (SIGKILL, no clean-up), rerun,
    and every rebuilt file is byte-identical to the first build's."""
    import signal
    import time

    target = "data/scores/tiny-llama/builtin-small/finetuned/rome/none/text/s0.jsonl"
    metrics = "data/finetuned/tiny-llama/builtin-small/rome/none/text/s0/metrics.json"
    before = {f: (repo / f).read_bytes() for f in (target, metrics)}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.Popen(["snakemake", "--cores", "1", "--forcerun", "finetune", "--", target], cwd=repo,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = repo / "logs/finetune/tiny-llama/builtin-small/rome/none/text/s0.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and log.stat().st_mtime > time.time() - 60 and "finetune" in log.read_text():
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # A killed Snakemake leaves its lock; a user unlocks (README) and reruns the same command:
    # the default profile (profiles/default) sets rerun-incomplete.
    locked = run(["snakemake", "--cores", "1", "--", target], repo, check=False)
    assert "cannot be locked" in locked.stdout + locked.stderr
    run(["snakemake", "--unlock"], repo)
    run(["snakemake", "--cores", "2", "--", target, metrics], repo)
    for f, data in before.items():
        assert (repo / f).read_bytes() == data, f
    assert not list((repo / "data").glob("**/*.tmp*"))


def test_one_core_runs_every_fine_tuning_before_health_and_edited_scores(repo):
    """Scheduling (issue 16 item 6): with one free core and the edits done, Snakemake starts
    the fine-tunings (the critical path; rule priority) before edit_health and
    evaluate_edited, which only the summary waits for. Without the priority the four ready
    jobs start in an arbitrary order (three runs here gave three different orders), so this
    fails 5 times in 6 without it. Snakemake's own log gives the order the jobs started in."""
    targets = ["data/edits/tiny-llama/builtin-small/rome/k0.health.json",
               "data/scores/tiny-llama/builtin-small/edited/rome/k0.jsonl",
               *[f"data/finetuned/tiny-llama/builtin-small/rome/{r}/text/s0/metrics.json" for r in ("none", "freeze")]]
    before = {f: (repo / f).read_bytes() for f in targets}
    out = run(["snakemake", "--cores", "1", "--forcerun", "finetune", "edit_health", "evaluate_edited", "--",
               *targets], repo)
    started = re.findall(r"^\s*(?:local)?rule (\w+):", out.stdout + out.stderr, re.M)
    assert sorted(started) == ["edit_health", "evaluate_edited", "finetune", "finetune"], started
    assert started[:2] == ["finetune", "finetune"], started
    for f, data in before.items():
        assert (repo / f).read_bytes() == data, f


def test_single_regime_end_to_end(repo):
    """A fresh model per fact: one delta set per fact, scored per fact, fine-tuned per fact."""
    (repo / "single.yaml").write_text("edit: {regime: single, batch_size: 0}\n")
    target = "data/scores/tiny-llama/builtin-small/finetuned/rome/none/text/s0.jsonl"
    run(["snakemake", "--cores", "2", "--configfile", "single.yaml", "--", target], repo)
    log = json.loads((repo / "data/edits/tiny-llama/builtin-small/rome/k0/log.json").read_text())
    assert log["regime"] == "single" and log["group_case_ids"] and all(len(g) == 1 for g in log["group_case_ids"])
    assert len(log["group_case_ids"]) == 6
    rows = [json.loads(line) for line in (repo / target).read_text().splitlines()]
    assert {r["knowledge"] for r in rows} == {"edited", "intrinsic"}
    assert len({r["case_id"] for r in rows if r["knowledge"] == "edited"}) == 6
    train_log = json.loads((repo / "data/finetuned/tiny-llama/builtin-small/rome/none/text/s0/train_log.json").read_text())
    assert train_log["regime"] == "single" and len(train_log["runs"]) == 6
