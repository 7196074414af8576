"""claims: cells.csv + facts.csv -> the claims table (claims.csv, primary verdicts in
claims.json) and the elasticity fits (elasticity.json, elasticity.csv)."""
from __future__ import annotations

import pandas as pd

from ..claims import evaluate_claims
from ..elasticity import elasticity
from ..health_table import unhealthy_scopes
from ..io import atomic_path, write_json
from ..plot_data import curve_table, effect_table
from ..protocols import tagged
from ..tables import read_table


def run(a) -> None:
    cells, units = read_table(a.cells), read_table(a.facts)
    unhealthy = unhealthy_scopes(read_table(a.health)) if a.health else {}
    claims = evaluate_claims(units, cells, n_boot=a.n_boot, n_perm=a.n_perm, seed=a.seed, margin=a.margin,
                             unhealthy=unhealthy)
    with atomic_path(a.out_claims, suffix=".csv") as tmp:
        claims.to_csv(tmp, index=False, na_rep="NaN", float_format="%.6g")
    primary = claims[claims["primary"]]
    # Keys: the claim id under the probability protocol (as before), "<id>@<protocol>" otherwise.
    numbers = ("effect", "ci_low", "ci_high", "p", "min_detectable_diff")
    write_json(a.out_claims_json, {tagged(r["claim"], r["protocol"]): {"verdict": r["verdict"], **{
        k: (None if r[k] != r[k] else float(r[k])) for k in numbers},
        "n_a": int(r["n_a"]), "n_b": int(r["n_b"])} for _, r in primary.iterrows()})
    curves = elasticity(units, cells, n_boot=a.n_boot_fit, seed=a.seed)
    write_json(a.out_elasticity, {"curves": curves})
    if a.out_elasticity_csv:
        rows = [dict(kind=c["kind"], curve="/".join(str(c.get(k)) for k in ("editor", "remedy", "knowledge")
                                                    if c.get(k) is not None), x=p["x"], retention=p["retention"], n=p["n"])
                for c in curves for p in c["points"]]
        with atomic_path(a.out_elasticity_csv, suffix=".csv") as tmp:
            pd.DataFrame(rows, columns=["kind", "curve", "x", "retention", "n"]).to_csv(tmp, index=False)
    for out, table in ((a.out_curves, lambda: curve_table(cells)), (a.out_effects, lambda: effect_table(claims))):
        if out:
            with atomic_path(out, suffix=".csv") as tmp:
                table().to_csv(tmp, index=False, float_format="%.6g")
