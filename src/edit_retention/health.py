"""Edit health: is the edited model still a working language model? Measured once per edit,
before any fine-tuning, and stored in the edit's log (``log["health"]``).

The probability test (P(new) > P(true), ``metrics.prob_success``) cannot see a broken
model: when an edit wipes out what the model says, both probabilities fall and the test
still passes. These measures look at what the model *says*:

    control_agreement       share of control (intrinsic) facts' main prompts whose greedy
                            next token is the base model's greedy next token
    neighborhood_agreement  the same over the edited facts' neighbourhood prompts (other
                            subjects, same relation: an edit should leave them alone)
    first_token_es          share of edited facts whose greedy next token after the main
                            prompt is the first token of " " + target_new
    ppl_ratio               perplexity of held-out unrelated text (the corpus's eval
                            passages), edited / base
    delta_rel_norm          largest ||delta||_F / ||W||_F over the edited parameters

In the ``single`` and ``groups`` regimes each fact or group has its own edited model:
agreement and first-token ES are pooled over every such model (each on its own facts,
their neighbours and paired controls, ``single.group_facts``); the perplexity ratio is the
mean over an evenly spread sample of at most ``ppl_cases`` models, and the norm ratio the
largest over all of them.

The gate (``gate``) is a pure function of these numbers and the study's thresholds, so
changing a threshold never recomputes an edit.

``per_fact`` holds, per measure, {case_id: [hits, n]} (control facts for
control_agreement; edited facts otherwise), the units the summary's intervals pool.

This module holds the vocabulary and the pure gate (no torch); the model passes that
measure an edit are ``health_measure.measure_health``.

Usage::

    h = measure_health(model, tok, deltas, edited, control, texts)         # health_measure
    problems = gate(h, {"min_control_agreement": 0.9, "max_ppl_ratio": 1.1})
"""
from __future__ import annotations

import math

from .io import InputError

# Defaults of the gate (the config's health: block overrides them); README "Edit health".
THRESHOLDS = {
    # Calibrated to the reference method in its reference regime (ROME, one fact per fresh
    # model) on SmolLM2-135M: it keeps 0.83-0.94 of the controls and 0.74-0.89 of the
    # neighbours on three fact sets, while every batch or group edit of 48 facts that takes
    # (first-token ES >= 0.8) keeps <= 0.75 and <= 0.62 (README "Which edits pass the gate").
    "min_control_agreement": 0.8,       # greedy next token unchanged on >= 80% of controls
    "min_neighborhood_agreement": 0.7,  # and on >= 70% of the edited subjects' neighbours
    "max_ppl_ratio": 1.1,               # held-out text perplexity up by at most 10%
    "min_first_token_es": 0.5,          # most edits must take: retention of edits that never took is no finding
    "min_delta_rel_norm": 1e-6,         # below: the edit changed (numerically) nothing
}
MEASURES = ("control_agreement", "neighborhood_agreement", "first_token_es", "ppl_ratio", "delta_rel_norm")


# ----------------------------------------------------------------------- pure functions
def _below(v: float, limit: float) -> str:
    """``v`` with the fewest decimals (2 to 6) that still reads as below ``limit``
    (0.795 against 0.8 must not print as "0.80 < 0.8")."""
    for d in range(2, 7):
        text = f"{v:.{d}f}"
        if float(text) < limit:
            return text
    return repr(v)


def gate(health: dict, thresholds: dict | None = None) -> list[str]:
    """The reasons an edit is unhealthy (empty list: it passes). A measure that is missing or
    nan does not fail the gate; thresholds not given take ``THRESHOLDS``."""
    t = {**THRESHOLDS, **(thresholds or {})}
    unknown = set(t) - set(THRESHOLDS)
    if unknown:
        raise InputError(f"health thresholds: unknown key(s) {sorted(unknown)} (known: {sorted(THRESHOLDS)})")
    out = []

    def low(key, limit_key, what):
        v = health.get(key)
        if v is not None and not math.isnan(v) and v < t[limit_key]:
            out.append(f"{what} {_below(v, t[limit_key])} < {t[limit_key]:g}")

    low("control_agreement", "min_control_agreement", "control agreement")
    low("neighborhood_agreement", "min_neighborhood_agreement", "neighbourhood agreement")
    low("first_token_es", "min_first_token_es", "first-token ES")
    d = health.get("delta_rel_norm")
    if d is not None and not math.isnan(d) and d < t["min_delta_rel_norm"]:
        out.append(f"the edit changed nothing: max |delta|/|W| {d:.2g} < {t['min_delta_rel_norm']:g}")
    ppl = health.get("ppl_ratio")
    if ppl is not None and not math.isnan(ppl) and ppl > t["max_ppl_ratio"]:
        out.append(f"perplexity ratio {ppl:.3f} > {t['max_ppl_ratio']:g}")
    return out
