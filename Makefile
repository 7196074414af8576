# Entry points. Each target installs what it needs first (idempotent).
#   make study   - install, then run the default study end to end (snakemake --cores all)
#   make test    - install, then run the test suite
#   make smoke   - the whole grid on a tiny random model (minutes)
#   make bench   - benchmarks (see benchmarks/README.md)
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup study smoke test lint pull
setup:
	bash scripts/setup.sh

study: setup
	snakemake --cores all

smoke: setup
	snakemake --cores all --configfile workflow/config/smoke.yaml

test: setup
	pytest -q

lint: setup
	snakemake --lint

# Fetch every artifact from the DVC remote, then tell Snakemake they are current
# (DVC restores files with fresh mtimes in no particular order; --touch runs no job).
pull: setup
	dvc pull
	snakemake --cores 1 --touch
