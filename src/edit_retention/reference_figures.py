"""The reference figures committed in ``figures/``: written from one measured run, checked to
regenerate byte for byte.

``figures/*.png`` in git are the default study's figures from the run the README reports;
``figures/reference/`` holds what they plot (``cells.csv``, ``elasticity.json``, copied from
that run's ``data/results/``) and ``manifest.json`` (the run's commit, the commit whose code
drew them, the matplotlib version, the SHA-256 of every input and image). ``check`` redraws every figure from the
reference inputs with the current code and compares the PNG bytes with the committed
image: PNG output of the pinned matplotlib (with its bundled FreeType and fonts) depends
only on the data, so equal data must give equal bytes. A change to a figure's code or to
the default study then fails ``tests/test_reference_figures.py`` until the figures are
refreshed from a new run::

    snakemake --cores all                                   # the default study
    python -m edit_retention.reference_figures write        # copy inputs, check, manifest
    python -m edit_retention.reference_figures check        # what the test runs

``refresh --data OTHER/data`` draws the figures from another checkout's run with this
checkout's code first (after a change to a figure's code only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INPUTS = {"cells.csv": "cells", "elasticity.json": "fits"}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_commit(cwd: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "workflow",
                                "Snakefile", "params.yaml"], cwd=cwd, capture_output=True, text=True).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(reference: Path, out_dir: Path) -> dict[str, Path]:
    """Draw every figure from the reference inputs into ``out_dir``; {name: png path}."""
    from .plots import FIGURES, make_figure

    out = {}
    for name in FIGURES:
        png = out_dir / f"{name}.png"
        make_figure(name, reference / "cells.csv", png, None, fits=reference / "elasticity.json")
        out[name] = png
    return out


def check(figures: Path, reference: Path | None = None) -> list[str]:
    """Every way the committed figures differ from a fresh drawing of their reference data
    (an empty list when each PNG regenerates byte for byte and matches the manifest)."""
    figures = Path(figures)
    reference = Path(reference) if reference else figures / "reference"
    manifest_path = reference / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path}: missing (write it with `python -m edit_retention.reference_figures write`)"]
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for name, digest in manifest["inputs"].items():
        f = reference / name
        if not f.is_file() or sha256(f) != digest:
            problems.append(f"{f}: not the input the manifest records (sha256 {digest[:12]})")
    if problems:
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        fresh = render(reference, Path(tmp))
        if set(fresh) != set(manifest["figures"]):
            problems.append(f"{manifest_path}: figures {sorted(manifest['figures'])}, the code draws {sorted(fresh)}")
        for name, png in fresh.items():
            committed = figures / f"{name}.png"
            if not committed.is_file():
                problems.append(f"{committed}: missing")
                continue
            new = sha256(png)
            if sha256(committed) != new:
                problems.append(f"{committed}: differs from a fresh drawing of {reference}/cells.csv "
                                "(the figure's code or the data changed: refresh the reference figures)")
            elif manifest["figures"].get(name) != new:
                problems.append(f"{committed}: equals a fresh drawing but not the manifest's sha256")
    return problems


def write(data: Path, figures: Path, repo: Path, run_commit: str | None = None) -> dict:
    """Copy the run's plotted inputs into ``figures/reference``, check that ``figures/*.png``
    are exactly what they draw, and write the manifest (``run_commit``: the commit the run's
    data came from, when not the checkout's own; ``drawn_at``: the code that drew them)."""
    import matplotlib

    from .plots import FIGURES

    from .io import atomic_dir

    for name in INPUTS:
        if not (data / "results" / name).is_file():
            raise SystemExit(f"{data / 'results' / name}: missing; run the study first (snakemake --cores all)")
    with atomic_dir(figures / "reference") as reference:     # replaced only when the check passes
        for name in INPUTS:
            shutil.copyfile(data / "results" / name, reference / name)
        manifest = {
            "run_commit": run_commit or _git_commit(data.resolve().parent),
            "drawn_at": _git_commit(repo),
            "command": "snakemake --cores all",
            "matplotlib": matplotlib.__version__,
            "inputs": {name: sha256(reference / name) for name in INPUTS},
            "figures": {name: sha256(figures / f"{name}.png") for name in FIGURES
                        if (figures / f"{name}.png").is_file()},
        }
        (reference / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        problems = check(figures, reference)
        if problems:
            raise SystemExit("the figures are not what their data draw:\n  " + "\n  ".join(problems))
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edit_retention.reference_figures", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["refresh", "write", "check"],
                   help="refresh: draw figures/ from --data with this checkout's code, then write; "
                        "write: copy --data's inputs and the manifest for the figures already in figures/; "
                        "check: redraw from figures/reference and compare")
    p.add_argument("--data", default="data", help="the run's data folder (write)")
    p.add_argument("--figures", default="figures")
    p.add_argument("--run-commit", default=None, help="the commit of the run (default: the data folder's checkout)")
    a = p.parse_args(argv)
    if a.action == "refresh":
        from .plots import make_figures

        make_figures(Path(a.data) / "results/cells.csv", Path(a.figures), fits=Path(a.data) / "results/elasticity.json")
    if a.action in ("refresh", "write"):
        m = write(Path(a.data), Path(a.figures), Path.cwd(), a.run_commit)
        print(f"reference figures of the run at {m['run_commit']}, drawn at {m['drawn_at']}: "
              f"{', '.join(m['figures'])}")
        return 0
    problems = check(Path(a.figures))
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"{a.figures}: every figure regenerates byte for byte from {a.figures}/reference")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
