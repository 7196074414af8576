"""results.md: the claims table, headline numbers with CIs, elasticity, grid, versions, problems.

Usage::

    from edit_retention.report import results_markdown
    from edit_retention.report_provenance import fact_versions, git_commit, model_versions
    text = results_markdown(cells, claims, curves, problems, config,
                            models=model_versions(["data/models/m/base"]),
                            facts=fact_versions(["data/facts/f/records.jsonl"]),
                            commit=git_commit("."))

Everything here formats numbers computed elsewhere (``cells``, ``claims``, ``elasticity``); nothing is
recomputed, so results.md and the CSV tables always agree. The sections are written by
``report_claims``, ``report_results`` and ``report_provenance``; this module puts them in
order with the text between them.
"""
from __future__ import annotations

import pandas as pd

from .bootstrap import N_BOOT
from .comparison import MARGIN, N_PERM
from .power import ALPHA, POWER
from .report_claims import claims_section, protocol_section
from .report_provenance import grid_section, versions_section
from .report_results import elasticity_section, headline_section, health_section, problems_section


def results_markdown(cells: pd.DataFrame, claims: pd.DataFrame, curves: list[dict], problems: pd.DataFrame,
                     config: dict, models: list[dict] | None = None, facts: list[dict] | None = None,
                     commit: str = "unknown", health: pd.DataFrame | None = None) -> str:
    n_problems = 0 if problems is None else len(problems)
    n_unhealthy = 0 if health is None or health.empty else int((~health["healthy"].astype(bool)).sum())
    parts = [
        "# Results",
        "",
        "Written by the pipeline (`report` rule); numbers from `data/results/cells.csv`, "
        "`claims.csv` and `elasticity.json`.",
        "",
        f"Problems: **{n_problems}** (see the last section).",
        "",
        *([f"**{n_unhealthy} edit(s) failed the health gate**: claims about their cells say "
           f"\"edit unhealthy\" instead of a verdict (see Edit health).", ""] if n_unhealthy else []),
        "## Claims",
        "",
        "Under the teacher-forced probability protocol (the next subsection repeats each claim under every "
        "protocol).",
        "",
        claims_section(claims),
        "",
        "### Claims under each success protocol",
        "",
        protocol_section(claims),
        "",
        f"Verdicts: with the effect signed in the claim's direction, *supports* when its 95% CI lies above 0 "
        f"and p < 0.05; *contradicts* when the CI lies below 0 (p < 0.05), or lies entirely within "
        f"±{MARGIN} (no effect of that size); otherwise *cannot tell at this n*. F1 is a one-sample "
        f"bound on the edit forgetting rate (supports: CI above 0; contradicts: CI below {MARGIN}). "
        f"Tests: relation-stratified (CMH-weighted) differences; p from {N_PERM} permutations "
        f"(labels of whole facts shuffled within relation; sign flips per fact for remedy contrasts, "
        f"which share facts); CI = {N_BOOT}-replicate two-way bootstrap over facts (within relation) "
        f"and seeds, united with Newcombe's score interval (its paired version for remedy contrasts of "
        f"0/1 outcomes) so that all-equal outcomes do not give a zero-width interval. See `src/edit_retention/comparison.py`.",
        "",
        f"Smallest detectable difference (MDD), given with every *cannot tell*: the true effect this n "
        f"would detect with {POWER:.0%} power at α = {ALPHA} (two-sided), (z_0.975 + z_0.8) × SE with SE "
        f"the claim's own 95% CI width / (2 × 1.96), so it carries the stratification, the facts × seeds "
        f"clustering and the score-interval union (claims.csv `min_detectable_diff`; "
        f"`src/edit_retention/power.py`). It shrinks as 1/√n: halving it takes four times the facts.",
        "",
        "## Edit health (after the edit, before fine-tuning)",
        "",
        health_section(health),
        "",
        "Control / neighbour agreement: share of control facts' main prompts / edited subjects' "
        "neighbourhood prompts whose greedy next token is the base model's; first-token ES: share of "
        "edited facts whose greedy next token is target_new's first token; perplexity ratio: held-out "
        "corpus text, edited / base; max |Δ|/|W|: the largest delta norm relative to its weight. The "
        "gate's thresholds are the study config's `health:` block.",
        "",
        "## Headline numbers (95% CI)",
        "",
        headline_section(cells),
        "",
        *[f"PS caveat ({f['path']}): {n}\n" for f in facts or [] for n in (f.get("load") or {}).get("notes", [])],
        "## Elasticity",
        "",
        elasticity_section(curves),
        "",
        "## The grid that produced these numbers",
        "",
        grid_section(config),
        "",
        "## Versions",
        "",
        versions_section(models or [], facts or [], commit),
        "",
        "## Problems",
        "",
        problems_section(problems),
        "",
    ]
    return "\n".join(parts)
