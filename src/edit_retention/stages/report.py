"""report: results.md (claims, headline numbers with intervals, grid, versions, problems)
and the study config as JSON."""
from __future__ import annotations

from ..io import read_json, write_json, write_text
from ..report import results_markdown
from ..report_provenance import fact_versions, git_commit, model_versions
from ..tables import read_table


def run(a) -> None:
    problems = read_table(a.problems) if a.problems else None
    health = read_table(a.health) if a.health else None
    curves = read_json(a.elasticity).get("curves", []) if a.elasticity else []
    text = results_markdown(read_table(a.cells), read_table(a.claims), curves, problems, a.config or {},
                            models=model_versions(a.models), facts=fact_versions(a.facts),
                            commit=git_commit(a.git_dir), health=health)
    write_text(a.out, text)
    if a.out_config:
        write_json(a.out_config, a.config or {})
