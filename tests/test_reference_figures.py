"""The committed figures (figures/*.png) are exactly what their reference data draw with the
current code, and the check names a figure whose code, data or image changed."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edit_retention.plots import FIGURES
from edit_retention.reference_figures import check, sha256, write

ROOT = Path(__file__).resolve().parents[1]


def test_committed_figures_regenerate_byte_for_byte():
    assert check(ROOT / "figures") == []
    manifest = json.loads((ROOT / "figures/reference/manifest.json").read_text())
    assert set(manifest["figures"]) == set(FIGURES)
    # the README shows them and names the run that made them
    readme = (ROOT / "README.md").read_text()
    for name in ("retention_by_editor", "retention_vs_steps", "freezing"):
        assert f"](figures/{name}.png)" in readme
    assert manifest["run_commit"].split("+")[0] in readme


def test_git_tracks_the_pngs_and_dvc_does_not_cache_them():
    tracked = subprocess.run(["git", "ls-files", "figures"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert {f"figures/{n}.png" for n in FIGURES} <= set(tracked)
    assert not [t for t in tracked if t.endswith(".pdf")]
    outs = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["figures"]["outs"]
    spec = {k: v for o in outs for k, v in o.items()}
    assert {f"figures/{n}.png" for n in FIGURES} | {f"figures/{n}.pdf" for n in FIGURES} == set(spec)
    assert all(spec[f"figures/{n}.png"].get("cache") is False for n in FIGURES)
    assert all(spec[f"figures/{n}.pdf"].get("cache", True) for n in FIGURES)


def _halve(src, dst, which) -> int:
    """Copy cells.csv with value and CI of the rows ``which`` selects halved (format kept)."""
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    n = 0
    for r in rows:
        if which(r) and r["value"]:
            n += 1
            for col in ("value", "ci_low", "ci_high"):
                if r[col]:
                    r[col] = repr(float(r[col]) * 0.5)
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return n


@pytest.fixture
def copy(tmp_path):
    figs = tmp_path / "figures"
    shutil.copytree(ROOT / "figures", figs)
    return figs


def test_check_names_a_figure_whose_data_changed(copy):
    assert _halve(copy / "reference/cells.csv", copy / "reference/cells.csv",
                  lambda r: r["metric"] == "retention_rewrite" and r["phase"] == "finetuned") > 0
    problems = check(copy)
    assert len(problems) == 1 and "cells.csv" in problems[0] and "manifest" in problems[0]
    # the manifest updated to the new data: now the images are what differs
    m = json.loads((copy / "reference/manifest.json").read_text())
    m["inputs"]["cells.csv"] = sha256(copy / "reference/cells.csv")
    (copy / "reference/manifest.json").write_text(json.dumps(m))
    problems = check(copy)
    assert any("retention_by_editor.png: differs from a fresh drawing" in p for p in problems)


def test_check_names_an_edited_image(copy):
    png = copy / "freezing.png"
    png.write_bytes(png.read_bytes() + b"\0")
    problems = check(copy)
    assert problems == [f"{png}: differs from a fresh drawing of {copy / 'reference'}/cells.csv "
                        "(the figure's code or the data changed: refresh the reference figures)"]


def test_write_refuses_figures_its_data_do_not_draw_and_keeps_the_old_reference(copy, tmp_path):
    data = tmp_path / "data/results"
    data.mkdir(parents=True)
    _halve(copy / "reference/cells.csv", data / "cells.csv", lambda r: r["knowledge"] in ("edited", "intrinsic"))
    shutil.copy(copy / "reference/elasticity.json", data / "elasticity.json")
    before = {p.name: p.read_bytes() for p in (copy / "reference").iterdir()}
    with pytest.raises(SystemExit, match="not what their data draw"):
        write(tmp_path / "data", copy, tmp_path)
    assert {p.name: p.read_bytes() for p in (copy / "reference").iterdir()} == before
    # drawn from those data, the same write succeeds
    proc = subprocess.run([sys.executable, "-m", "edit_retention", "figure", "retention_by_editor", "--cells",
                           str(data / "cells.csv"), "--fits", str(data / "elasticity.json"),
                           "--out-png", str(copy / "retention_by_editor.png"),
                           "--out-pdf", str(tmp_path / "x.pdf")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in FIGURES:
        if name != "retention_by_editor":
            subprocess.run([sys.executable, "-m", "edit_retention", "figure", name, "--cells", str(data / "cells.csv"),
                            "--fits", str(data / "elasticity.json"), "--out-png", str(copy / f"{name}.png"),
                            "--out-pdf", str(tmp_path / "x.pdf")], check=True, capture_output=True)
    m = write(tmp_path / "data", copy, tmp_path)
    assert m["inputs"]["cells.csv"] == sha256(data / "cells.csv") and check(copy) == []
