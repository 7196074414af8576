"""results.md and the report / analyze / summarize commands on a synthetic grid."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from _synth import KEEP, REMEDIES, TASKS, make_grid
from edit_retention.cli import main
from edit_retention.io import write_json
from edit_retention.report import results_markdown
from edit_retention.report_provenance import git_commit


def _cell_arg(c):
    kv = {k: c[k] for k in ("model", "editor", "task", "remedy", "seed")}
    kv.update(c["phases"])
    kv["task_metrics"] = c["task_metrics"]
    return ",".join(f"{k}={v}" for k, v in kv.items())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    remedies = {k: REMEDIES[k] for k in ("none", "p3", "freeze")}
    cells, rec = make_grid(tmp, list(remedies), KEEP, n=9)
    # a failed seed: its finetuned scores are missing
    cells[-1]["phases"]["finetuned"] = str(tmp / "gone.jsonl")
    out = tmp / "results"
    args = ["summarize"] + [a for c in cells for a in ("--cell", _cell_arg(c))] + [
        "--out-csv", str(out / "summary.csv"), "--out-metrics", str(out / "metrics.json"),
        "--records", str(rec), "--remedies", json.dumps(remedies), "--tasks", json.dumps(TASKS),
        "--n-boot", "50", "--allow-missing"]
    assert main(args) == 0
    assert main(["analyze", "--cells", str(out / "cells.csv"), "--facts", str(out / "facts.csv"),
                 "--out-claims", str(out / "claims.csv"), "--out-claims-json", str(out / "claims.json"),
                 "--out-elasticity", str(out / "elasticity.json"), "--out-elasticity-csv",
                 str(out / "elasticity.csv"), "--n-boot", "50", "--n-perm", "100", "--n-boot-fit", "20"]) == 0
    model = tmp / "models/m/base"
    model.mkdir(parents=True)
    write_json(model / "source.json", {"type": "random", "seed": 0})
    config = {"grid": {"models": ["m"], "editors": ["rome"], "remedies": list(remedies), "seeds": [0, 1]},
              "remedies": remedies, "tasks": TASKS}
    assert main(["report", "--cells", str(out / "cells.csv"), "--claims", str(out / "claims.csv"),
                 "--elasticity", str(out / "elasticity.json"), "--problems", str(out / "problems.csv"),
                 "--config", json.dumps(config), "--models", str(model), "--facts", str(rec),
                 "--git-dir", str(tmp), "--out", str(tmp / "results.md"),
                 "--out-config", str(out / "study_config.json")]) == 0
    return tmp, out


def test_outputs_exist_and_claims_json_is_dvc_metrics(built):
    tmp, out = built
    for name in ("summary.csv", "metrics.json", "cells.csv", "facts.csv", "problems.csv", "retention.csv",
                 "claims.csv", "claims.json", "elasticity.json", "elasticity.csv", "study_config.json"):
        assert (out / name).stat().st_size > 0, name
    claims = json.loads((out / "claims.json").read_text())
    ids = {"C1", "C2", "C3", "F1", "F2"}
    assert set(claims) == ids | {f"{c}@first_token" for c in ids}   # the synthetic rows have no generations
    assert claims["F2"]["verdict"] == "not in this grid" and claims["F2"]["effect"] is None
    assert claims["F2"]["min_detectable_diff"] is None and claims["C1"]["min_detectable_diff"] > 0
    assert claims["C1"]["verdict"] in ("supports", "contradicts", "cannot tell at this n")


def test_results_md_sections(built):
    tmp, out = built
    md = (tmp / "results.md").read_text()
    for section in ("## Claims", "## Headline numbers (95% CI)", "## Elasticity", "## The grid",
                    "## Versions", "## Problems"):
        assert section in md
    assert "code: git commit `unknown`" in md                 # tmp is not a git repository
    assert '"type": "random"' in md and "records.jsonl`: 18 records" in md
    assert "not in this grid" in md                           # F2: no LoRA remedy
    assert "cell failed" in md and "gone.jsonl" in md         # the failed seed is named
    assert "seed missing" in md
    assert "Too few points to fit" in md                      # edit-set size: one size
    grid = md.split("### Claims under each success protocol")[1].split("##")[0]
    assert "| claim | scope | contrast | probability | first_token |" in grid
    assert "| C1 | all |" in grid and "| C2 | all |" in grid


def test_markdown_with_no_problems_says_none():
    cells = pd.DataFrame(columns=["model", "editor", "task", "remedy", "knowledge", "phase", "metric", "value",
                                  "ci_low", "ci_high", "n", "n_seeds", "seed_std"])
    claims = pd.DataFrame(columns=["claim", "primary", "verdict"])
    md = results_markdown(cells, claims, [], pd.DataFrame(), {"grid": {}})
    assert "None: every cell has n > 0" in md and md.count("not in this grid") >= 5


def test_git_commit_of_this_repository():
    c = git_commit(".")
    assert c == "unknown" or len(c.split("+")[0]) == 40
