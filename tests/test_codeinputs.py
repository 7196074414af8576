"""Code inputs are computed from the imports (codeinputs), wired into every rule and into
dvc.yaml, and the package has no import cycle."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edit_retention import cli
from edit_retention.codeinputs import (DVC_STAGES, SRC, closure, code_inputs, dvc_text, import_cycles,
                                       imported_modules, stage_inputs)

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = sorted(p.stem for p in (SRC / "stages").glob("*.py") if p.stem != "__init__")


def test_package_has_no_import_cycle():
    assert import_cycles() == []


def test_imports_found_at_any_depth_absolute_and_relative(tmp_path):
    pkg = tmp_path
    (pkg / "sub").mkdir()
    for f in ("__init__.py", "a.py", "b.py", "c.py", "d.py", "sub/__init__.py", "sub/e.py", "sub/f.py"):
        (pkg / f).write_text("")
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    from .sub.e import x\n    import edit_retention.c\n")
    (pkg / "sub/e.py").write_text("from ..d import y\nfrom . import f\n")
    assert imported_modules("a", pkg) == {"b", "sub.e", "c"}
    assert closure("a", pkg) == {"", "a", "b", "c", "d", "sub", "sub.e", "sub.f"}


def test_every_stage_module_is_a_cli_stage_and_a_dvc_stage():
    assert {m.split(":")[0].removeprefix("stages.") for m in cli.STAGES.values() if m.startswith("stages.")} \
        == set(FAMILIES)
    assert sorted(f for fams in DVC_STAGES.values() for f in fams) == FAMILIES


def _rules():
    """(rule name, its `code=` expression, the CLI subcommand its shell runs), per rule."""
    out = []
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule\b)", smk.read_text()):
            m = re.match(r"\s*rule\s*(\w*):", block)
            cmd = re.search(r"-m edit_retention ([\w-]+)", block)
            if m and cmd:
                code = re.search(r"^\s*code=(.+),$", block, re.M)
                out.append((m.group(1) or "figure_*", code.group(1) if code else None, cmd.group(1)))
    return out


def test_every_rule_takes_its_own_stage_code():
    """Each rule's code input is the computed set of the stage module its command runs."""
    rules = _rules()
    assert len(rules) >= 15
    for name, code, subcommand in rules:
        family = cli.STAGES[subcommand].split(":")[0].removeprefix("stages.")
        expected = {"figure": "figure_code(_name)"}.get(family, f'code("{family}")')
        assert code == expected, (name, code, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_code_inputs_cover_what_the_stage_imports(family):
    """Run the stage's imports for real: every package module loaded is an input of its rules."""
    extra = "edit_retention.plots.freezing" if family == "figure" else "edit_retention"
    code = (f"import sys, importlib, edit_retention.cli, edit_retention.stages.{family}, {extra}\n"
            "print(__import__('json').dumps(sorted(m.__file__ for n, m in sys.modules.items()\n"
            "    if n.startswith('edit_retention') and getattr(m, '__file__', None))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True, cwd=ROOT).stdout)
    files = {f"src/edit_retention/{Path(f).resolve().relative_to(SRC).as_posix()}" for f in loaded}
    files.discard("src/edit_retention/codeinputs.py")
    inputs = set(stage_inputs(family, *(["plots.freezing"] if family == "figure" else [])))
    assert files - inputs == set()


def test_lazy_imports_count():
    """An import inside a function is an import: the evaluate stage's single-regime path."""
    assert "src/edit_retention/single.py" in stage_inputs("evaluate")
    assert "src/edit_retention/paraphrase_lm.py" in stage_inputs("generate_paraphrases")


def test_stage_inputs_are_narrow_where_the_code_is():
    assert "src/edit_retention/metrics.py" in stage_inputs("select_intrinsic")
    assert "src/edit_retention/metrics.py" not in stage_inputs("figure", "plots.freezing")
    assert code_inputs("plots.freezing") == sorted(code_inputs("plots.freezing"))
    fig = set(stage_inputs("figure", "plots.freezing"))
    assert "src/edit_retention/plots/freezing.py" in fig and "src/edit_retention/plots/methods.py" not in fig
    assert "src/edit_retention/finetune.py" not in stage_inputs("evaluate")
    assert any(f.endswith("hparams/rome/tiny.yaml") for f in stage_inputs("apply_edits"))


def test_dvc_yaml_code_deps_are_the_computed_ones():
    """dvc.yaml's src/ deps are generated: python -m edit_retention.codeinputs --write-dvc dvc.yaml"""
    text = (ROOT / "dvc.yaml").read_text()
    assert dvc_text(text) == text, "dvc.yaml's code deps are stale: python -m edit_retention.codeinputs --write-dvc dvc.yaml"
