"""Elasticity: retention against paraphrase count k, edit-set size and fine-tuning steps,
with fitted curves and bootstrap intervals of their parameters.

Usage::

    from edit_retention.elasticity import elasticity
    curves = elasticity(units, cells)        # data/results/elasticity.json
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .bootstrap import codes, percentile_ci, seeded_rng, unit_weights
from .cells import CELL_KEYS, GROUP_KEYS
from .claims import RETENTION
from .phases import FINAL_PHASE


MIN_POINTS = {"k": 3, "n_edits": 3, "step": 3}   # distinct x values (steps: > 0, besides R(0) = 1)
N_BOOT_FIT = 300


def fit_log_linear(x, y, w) -> tuple[float, float]:
    """Weighted least squares y = a + b ln(x') with x' = 1 + x (k) or x (sizes > 0); returns (a, b)."""
    x, y, w = (np.asarray(v, float) for v in (x, y, w))
    X = np.stack([np.ones_like(x), x], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    return float(coef[0]), float(coef[1])


def fit_decay(t, y, w, t_max: float | None = None) -> tuple[float, float]:
    """Least squares R(t) = r_inf + (1 - r_inf) exp(-lam t) (R(0) = 1 by definition).

    For each lam on a log grid r_inf has a closed form (linear least squares, clipped to
    [0, 1]); the lam with the smallest weighted squared error wins. Returns (r_inf, lam).
    """
    t, y, w = (np.asarray(v, float) for v in (t, y, w))
    t_max = float(t_max or t.max() or 1.0)
    lams = np.geomspace(1e-3 / t_max, 50.0 / t_max, 400)
    e = np.exp(-np.outer(lams, t))                         # (L, P)
    one_e = 1.0 - e
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((w * one_e * (y - e)).sum(1) / (w * one_e ** 2).sum(1), 0.0, 1.0)
    sse = (w * (y - (r[:, None] * one_e + e)) ** 2).sum(1)
    i = int(np.nanargmin(sse))
    return float(r[i]), float(lams[i])


def _curve_points(units, cells, knowledge, scope_cols, xcol, sel):
    """Units with an x column for one curve (retention_rewrite)."""
    c = cells[(cells.knowledge == knowledge) & (cells.metric == RETENTION) & sel(cells)]
    keys = c[GROUP_KEYS + [xcol]].drop_duplicates(GROUP_KEYS)
    u = units.merge(keys, on=GROUP_KEYS, how="inner")
    return u[u.den > 0]


def _py(v):
    """numpy scalars -> plain Python (for JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def _fit_curve(kind: str, u: pd.DataFrame, n_boot: int, seed: int, key) -> dict:
    """Point fit + bootstrap (facts and seeds, joint across x) of one curve's units (column x)."""
    xs = np.array(sorted(u["x"].unique()), float)
    out = {"kind": kind, "x": xs.tolist(), "points": [], "n_points": int(len(xs))}
    agg = u.groupby("x")[["num", "den"]].sum()
    y = (agg["num"] / agg["den"]).reindex(xs).to_numpy(float)
    n = agg["den"].reindex(xs).to_numpy(float)
    out["points"] = [{"x": float(a), "retention": float(b), "n": int(c)} for a, b, c in zip(xs, y, n)]
    if len(xs) < MIN_POINTS[kind]:
        out["status"] = f"too few points: {len(xs)} distinct {kind} value(s), a fit needs {MIN_POINTS[kind]}"
        return out

    def fit(yv, nv):
        if kind == "step":
            t = np.concatenate([[0.0], xs])
            r_inf, lam = fit_decay(t, np.concatenate([[1.0], yv]), np.concatenate([[nv.max()], nv]))
            return {"r_inf": r_inf, "lam": lam, "half_life": math.log(2) / lam}
        xt = np.log1p(xs) if kind == "k" else np.log(xs)
        a, b = fit_log_linear(xt, yv, nv)
        return {"intercept": a, "slope": b}

    out["fit"] = fit(y, n)
    f_idx, f_cats = codes(list(u["case_id"]))
    rel = pd.Series(list(u["relation"])).groupby(f_idx).first().to_numpy()
    strata, _ = codes(list(rel))
    s_idx, s_cats = codes(list(u["seed"]))
    x_idx = np.searchsorted(xs, u["x"].to_numpy(float))
    rng = seeded_rng(seed, "fit", *key)
    w = unit_weights(rng, f_idx, strata, s_idx, len(s_cats), n_boot)
    num, den = u["num"].to_numpy(float), u["den"].to_numpy(float)
    NUM = np.stack([(w[:, x_idx == j] * num[x_idx == j]).sum(1) for j in range(len(xs))], 1)
    DEN = np.stack([(w[:, x_idx == j] * den[x_idx == j]).sum(1) for j in range(len(xs))], 1)
    fits = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for r in range(n_boot):
            if (DEN[r] > 0).all():
                fits.append(fit(NUM[r] / DEN[r], DEN[r]))
    out["ci"] = {k: list(percentile_ci(np.array([f[k] for f in fits]))) for k in out["fit"]}
    out["n_boot"] = len(fits)
    out["status"] = "fitted"
    return out


def elasticity(units: pd.DataFrame, cells: pd.DataFrame, n_boot: int = N_BOOT_FIT, seed: int = 0) -> list[dict]:
    """Fitted retention curves (retention_rewrite after fine-tuning unless stated).

    * ``k``: edited retention vs paraphrase_k, per (model, editor, task, freeze, method):
      R = a + b ln(1 + k); ``slope`` b is the gain per e-fold of edit data (the reference
      study's data-volume argument predicts b > 0).
    * ``n_edits``: edited retention vs edit-set size, per (model, editor, task, k, freeze,
      method): R = a + b ln(N).
    * ``step``: retention vs fine-tuning step, per cell (remedy) and knowledge, over the
      edited phase (step 0, R = 1), checkpoints step-N and the final phase:
      R(t) = r_inf + (1 - r_inf) exp(-lam t); ``half_life`` = ln 2 / lam.
    Each fit has a bootstrap CI (facts within relation and seeds, resampled jointly
    across the curve's points); with too few distinct x values the curve is listed with
    ``status`` "too few points: ...".
    """
    out = []
    if units.empty or cells.empty:
        return out
    final = cells.phase == FINAL_PHASE
    for kind, group_cols in (("k", ["model", "editor", "task", "freeze", "method"]),
                             ("n_edits", ["model", "editor", "task", "paraphrase_k", "freeze", "method"])):
        xcol = "paraphrase_k" if kind == "k" else "n_edits"
        u = _curve_points(units, cells[final], "edited", group_cols, xcol, lambda c: c[xcol].notna())
        if u.empty:
            continue
        u = u.rename(columns={xcol: "x"})
        trait = cells[CELL_KEYS + [c for c in group_cols if c not in CELL_KEYS]].drop_duplicates(CELL_KEYS)
        u = u.merge(trait, on=CELL_KEYS, how="left")
        for key, grp in u.groupby(group_cols, sort=False):
            if kind == "n_edits" and (grp["x"] <= 0).any():
                continue
            res = _fit_curve(kind, grp, n_boot, seed, (kind, key))
            res.update({c: _py(v) for c, v in zip(group_cols, key)}, knowledge="edited")
            out.append(res)
    late = cells[cells.step.notna() & (cells.step > 0)]
    for knowledge in ("edited", "intrinsic"):
        u = _curve_points(units, late, knowledge, None, "step", lambda c: c.step.notna()).rename(columns={"step": "x"})
        for key, grp in u.groupby(CELL_KEYS, sort=False):
            res = _fit_curve("step", grp, n_boot, seed, ("step", knowledge, key))
            res.update({c: _py(v) for c, v in zip(CELL_KEYS, key)}, knowledge=knowledge)
            out.append(res)
    return out
