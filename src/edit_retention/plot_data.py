"""Data of the DVC plots (dvc.yaml ``plots``), written by the claims stage beside the claims:
retention_curves.csv (retention against fine-tuning steps) and effects.csv (every claim
contrast with its interval), so ``dvc plots diff`` compares two experiments' curves."""
from __future__ import annotations

import pandas as pd


def curve_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows for ``dvc plots`` (figure 2's data): retention after each fine-tuning step in the
    baseline remedies (no paraphrases, no freezing, full fine-tuning), one curve per editor
    and kind of knowledge (model and task named too when the grid has several). Step 0, right
    after editing, is 1 by definition (retention counts the facts that held there)."""
    cols = ["curve", "step", "retention", "ci_low", "ci_high", "n"]
    if "paraphrase_k" not in cells or cells["paraphrase_k"].isna().all():
        return pd.DataFrame(columns=cols)
    sel = cells[(cells.paraphrase_k == 0) & (cells.freeze == "none") & (cells.method == "full")
                & (cells.metric == "retention_rewrite") & cells.knowledge.isin(["edited", "intrinsic"])
                & cells.step.notna()]
    keys = [k for k in ("model", "task") if sel[k].nunique() > 1] + ["editor", "knowledge"]
    rows = []
    for name, sub in sel.groupby(keys, sort=False):
        curve = "/".join(str(x) for x in (name if isinstance(name, tuple) else (name,)))
        rows.append({"curve": curve, "step": 0, "retention": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": sub.n.max()})
        for _, r in sub.sort_values("step").iterrows():
            rows.append({"curve": curve, "step": int(r.step), "retention": r.value, "ci_low": r.ci_low,
                         "ci_high": r.ci_high, "n": r.n})
    return pd.DataFrame(rows, columns=cols)


def effect_table(claims: pd.DataFrame) -> pd.DataFrame:
    """Rows for ``dvc plots``: every claim contrast with an estimate (effect and 95% CI)."""
    have = claims[claims.effect.notna()]
    label = have.claim + " " + have.scope + ": " + have.contrast
    return pd.DataFrame({"contrast": label, "effect": have.effect, "ci_low": have.ci_low, "ci_high": have.ci_high,
                         "verdict": have.verdict}).reset_index(drop=True)
