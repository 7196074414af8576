"""Named problems of a summary (problems.csv): n = 0, NaN values, missing seeds or phases,
facts without a relation, undefined remedies. Never silent: each is a row."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .cells import LABELS
from .phases import phase_order


PROBLEM_COLUMNS = LABELS + ["knowledge", "phase", "metric", "problem"]


def find_problems(summary: pd.DataFrame, units: pd.DataFrame, cells: list[dict], remedies: dict | None,
                  relations: dict) -> list[dict]:
    """Named problems: n = 0, NaN values, missing seeds, unknown relations / remedies."""
    out = []
    lab = LABELS + ["knowledge", "phase", "metric"]
    for _, r in summary.iterrows():
        n = r["n"]
        where = {k: r[k] for k in lab}
        if r["knowledge"] != "task" and not pd.isna(n) and int(n) == 0:
            out.append(dict(where, problem="n = 0: no fact to count; value NaN, not averaged in"))
        elif pd.isna(r["value"]):
            out.append(dict(where, problem="value is NaN" + ("" if r["knowledge"] == "task" else f" with n = {n}")))
        elif not np.isfinite(r["value"]):
            out.append(dict(where, problem=f"value is {r['value']}"))
    if len(summary):
        seeds_all = sorted(set(summary["seed"]))
        for key, grp in summary.groupby(["model", "editor", "task", "remedy"], sort=False):
            missing = sorted(set(seeds_all) - set(grp["seed"]))
            for s in missing:
                out.append(dict(zip(["model", "editor", "task", "remedy"], key), seed=s, knowledge="",
                                phase="", metric="", problem="seed missing (failed or not run); the cell "
                                "pools the other seeds"))
    expected = {}
    for c in cells:
        expected.setdefault(tuple(c.get(k) for k in LABELS[:4]), set()).update(c.get("phases", {}))
    for key, phases in expected.items():
        present = set(summary[(summary.model == key[0]) & (summary.editor == key[1]) & (summary.task == key[2])
                              & (summary.remedy == key[3])].phase)
        for p in sorted(phases - present, key=phase_order):
            if present:
                out.append(dict(zip(LABELS[:4], key), seed="", knowledge="", phase=p, metric="",
                                problem="phase absent from every seed"))
    unknown = sorted(set(units.loc[units.relation == "unknown", "case_id"])) if len(units) else []
    if unknown:
        out.append(dict({k: "" for k in LABELS}, knowledge="", phase="", metric="",
                        problem=f"{len(unknown)} fact(s) have no relation (no --records entry), e.g. "
                                f"{unknown[:3]}; they form one stratum 'unknown'"))
    if remedies is None:
        out.append(dict({k: "" for k in LABELS}, knowledge="", phase="", metric="",
                        problem="remedy definitions not given (--remedies): claims cannot find their cells"))
    else:
        for r in sorted(set(summary["remedy"]) - set(remedies)):
            out.append(dict({k: "" for k in LABELS}, remedy=r, knowledge="", phase="", metric="",
                            problem="remedy not defined in the remedies config"))
    return out
