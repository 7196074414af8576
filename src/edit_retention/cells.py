"""The cell table (data/results/cells.csv): one row per cell, knowledge, phase and metric,
pooled over seeds with its interval (``bootstrap``), and the remedy's traits beside it.

Usage::

    from edit_retention.cells import cell_table, remedy_traits, task_steps, task_step_tokens
    cells = cell_table(units, summary, remedy_traits(remedies), task_steps(tasks),
                       step_tokens=task_step_tokens(tasks))

``step`` is a phase's fine-tuning step; ``tokens`` the token positions trained through it,
step x batch_size x seq_len (exact for packed text, causal_lm; an upper bound for the
padded examples of the other tasks).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import metrics as M
from .bootstrap import N_BOOT, group_estimate
from .phases import phase_order, phase_step

CELL_KEYS = ["model", "editor", "task", "remedy"]
LABELS = CELL_KEYS + ["seed"]          # a summary row's labels
GROUP_KEYS = CELL_KEYS + ["knowledge", "phase", "metric"]
TRAIT_COLUMNS = ["paraphrase_k", "freeze", "method", "n_edits", "step", "tokens"]
CELL_COLUMNS = GROUP_KEYS + ["value", "std", "seed_std", "ci_low", "ci_high", "n", "n_facts", "n_seeds",
                             "seeds"] + TRAIT_COLUMNS


def remedy_traits(remedies: dict | None) -> dict[str, dict]:
    """{remedy: {paraphrase_k, freeze, method}} from the study's ``remedies:`` config.

    ``method`` (full | lora | dora) is the remedy's ``method`` field (a name, or an object
    whose ``type`` is the name); absent means full fine-tuning. Remedies are told apart by
    these definitions, never by their names.
    """
    out = {}
    for name, spec in (remedies or {}).items():
        method = spec.get("method", "full")
        if isinstance(method, dict):                      # {type: lora, r: .., ...}
            method = method["type"]
        out[str(name)] = {"paraphrase_k": spec["paraphrase_k"], "freeze": str(spec["freeze"]),
                          "method": str(method).lower()}
    return out


def task_steps(tasks: dict | None) -> dict[str, float]:
    """{task: number of fine-tuning steps} from the ``tasks:`` config (params.steps)."""
    out = {}
    for name, spec in (tasks or {}).items():
        steps = ((spec or {}).get("params") or {}).get("steps")
        if isinstance(steps, (int, float)) and not isinstance(steps, bool):
            out[str(name)] = float(steps)
    return out


def task_step_tokens(tasks: dict | None) -> dict[str, float]:
    """{task: token positions per optimiser step, batch_size x seq_len}; a task whose params
    leave either out has none (its ``tokens`` stay NaN)."""
    out = {}
    for name, spec in (tasks or {}).items():
        params = (spec or {}).get("params") or {}
        size, length = params.get("batch_size"), params.get("seq_len")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (size, length)):
            out[str(name)] = float(size * length)
    return out


def cell_table(units: pd.DataFrame, summary: pd.DataFrame | None = None, traits: dict | None = None,
               steps: dict | None = None, n_boot: int = N_BOOT, seed: int = 0,
               step_tokens: dict | None = None) -> pd.DataFrame:
    """One row per (cell without seed, knowledge, phase, metric): pooled over seeds, with CI.

    Task metrics (knowledge "task" rows of ``summary``) get the mean over seeds, the seed
    standard deviation and a percentile bootstrap over seeds (NaN with fewer than 2).
    ``traits`` (``remedy_traits``) and ``steps`` (``task_steps``) add the remedy's
    paraphrase_k / freeze / method, the edit-set size and the phase's step.
    """
    rows = []
    for key, grp in units.groupby(GROUP_KEYS, sort=False):
        rows.append(dict(zip(GROUP_KEYS, key), **group_estimate(grp, key[-1], n_boot, seed, key)))
    if summary is not None:
        task = summary[summary["knowledge"] == "task"]
        for key, grp in task.groupby(GROUP_KEYS, sort=False):
            vals = grp["value"].to_numpy(float)
            finite = vals[np.isfinite(vals)]
            est = {"value": float(finite.mean()) if finite.size == len(vals) and len(vals) else math.nan,
                   "std": math.nan, "seed_std": float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan,
                   "ci_low": math.nan, "ci_high": math.nan,
                   "n": int(grp["n"].fillna(0).astype(int).sum()), "n_facts": 0,
                   "n_seeds": int(finite.size), "seeds": ";".join(str(s) for s in sorted(grp["seed"]))}
            if finite.size > 1 and finite.size == len(vals):
                est["ci_low"], est["ci_high"] = M.bootstrap_ci(finite, n_boot=n_boot, seed=seed)
            rows.append(dict(zip(GROUP_KEYS, key), **est))
    df = pd.DataFrame(rows, columns=[c for c in CELL_COLUMNS if c not in TRAIT_COLUMNS])
    return add_traits(df, units, traits, steps, step_tokens)


def add_traits(df: pd.DataFrame, units: pd.DataFrame, traits: dict | None, steps: dict | None,
               step_tokens: dict | None = None) -> pd.DataFrame:
    traits = traits or {}
    steps = steps or {}
    step_tokens = step_tokens or {}
    edited = units[(units["knowledge"] == "edited") & (units["phase"] == "edited")
                   & (units["metric"] == "rewrite_success")]
    size = edited.groupby(CELL_KEYS)["case_id"].nunique().to_dict()
    out = df.copy()
    get = [traits.get(r, {}) for r in out["remedy"]]
    out["paraphrase_k"] = [t.get("paraphrase_k", math.nan) for t in get]
    out["freeze"] = [t.get("freeze", "unknown") for t in get]
    out["method"] = [t.get("method", "unknown") for t in get]
    out["n_edits"] = [size.get(k, math.nan) for k in zip(*(out[c] for c in CELL_KEYS))]
    out["step"] = [phase_step(p, steps.get(t)) for p, t in zip(out["phase"], out["task"])]
    out["tokens"] = [s * step_tokens.get(t, math.nan) for s, t in zip(out["step"], out["task"])]
    out["_order"] = [phase_order(p) for p in out["phase"]]
    out = out.sort_values(CELL_KEYS + ["knowledge", "_order", "metric"], kind="stable")
    return out[CELL_COLUMNS].reset_index(drop=True)
