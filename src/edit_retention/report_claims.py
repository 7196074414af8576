"""results.md's claims sections: each claim's primary verdict with its effect, CI and test,
the verdicts per scope and contrast, and every claim under each success protocol. Each
"cannot tell" carries its smallest detectable difference (claims.csv's
``min_detectable_diff``, ``power``): what a bigger run would have to resolve.

Usage::

    from edit_retention.report_claims import claims_section, protocol_section
    text = claims_section(claims) + protocol_section(claims)     # claims: claims.csv as a frame
"""
from __future__ import annotations

import math

import pandas as pd

from .claims import CLAIMS, MIXED
from .comparison import CANNOT_TELL, NOT_IN_GRID
from .protocols import ASYMMETRIC, PROBABILITY, PROTOCOLS, REFERENCE_PAIRING
from .report_format import fmt, fmt_p, md_table


def _under(claims: pd.DataFrame, protocol: str = PROBABILITY) -> pd.DataFrame:
    """The rows of one protocol (all rows of a claims table written before protocols)."""
    return claims[claims["protocol"] == protocol] if "protocol" in claims else claims


def _is_primary(claims: pd.DataFrame) -> pd.Series:
    return claims["primary"].astype(str).str.lower() == "true"


def mdd_note(r, long: bool = False) -> str:
    """For a "cannot tell", the smallest difference this n could have detected (80% power,
    alpha 0.05 two-sided; spelt out when ``long``, "MDD" otherwise; n/a where there is no
    CI to derive it from); "" for other verdicts and for claims tables written before it."""
    if r["verdict"] != CANNOT_TELL or "min_detectable_diff" not in r:
        return ""
    try:
        m = float(r["min_detectable_diff"])
    except (TypeError, ValueError):
        m = math.nan
    return f" (smallest detectable difference {fmt(m)})" if long else f" (MDD {fmt(m)})"


def claims_section(claims: pd.DataFrame) -> str:
    claims = _under(claims)
    primary = claims[_is_primary(claims)]
    rows = []
    for cid, source, statement, _ in CLAIMS:
        sub = primary[primary["claim"] == cid]
        if sub.empty:
            rows.append([cid, source, statement, NOT_IN_GRID, "", "", "", "", ""])
            continue
        r = sub.iloc[0]
        eff = "" if pd.isna(r["effect"]) else f"{fmt(r['effect'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
        n = "" if r["verdict"] == NOT_IN_GRID else f"{int(r['n_a'])}" + (f" / {int(r['n_b'])}" if int(r["n_b"]) else "")
        note = "; ".join(str(x) for x in (r["test"], r["note"]) if isinstance(x, str) and x)
        rows.append([cid, source, statement, f"**{r['verdict']}**{mdd_note(r, long=True)}", r["contrast"], eff,
                     fmt_p(r["p"]), n, note])
    text = md_table(["", "source", "claim", "verdict", "contrast", "effect [95% CI]", "p", "n (a / b)", "test / note"],
                    rows)
    detail = claims[~_is_primary(claims)]
    if len(detail):
        drows = [[r["claim"], r["scope"], r["contrast"], f"{r['verdict']}{mdd_note(r)}",
                  f"{fmt(r['effect'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]", fmt_p(r["p"]),
                  f"{int(r['n_a'])} / {int(r['n_b'])}", r["note"]] for _, r in detail.iterrows()]
        text += "\n\nPer scope (model/editor/task) and per contrast:\n\n" + md_table(
            ["claim", "scope", "contrast", "verdict", "effect [95% CI]", "p", "n (a / b)", "note"], drows)
    return text


def protocol_section(claims: pd.DataFrame) -> str:
    """Claim x protocol at a glance: verdict and effect of each claim's primary row under
    every protocol, and per scope for the claims comparing edited with intrinsic facts
    (where the asymmetric pairing can create or hide a gap)."""
    if "protocol" not in claims:
        return "Not in these results (claims.csv has no protocol column)."
    have = [p for p in (*PROTOCOLS, ASYMMETRIC) if p in set(claims["protocol"])]
    base = claims[claims["protocol"] == PROBABILITY]
    base = base[_is_primary(base) | base["claim"].isin(MIXED)]
    keys = list(dict.fromkeys(zip(base["claim"], base["scope"], base["contrast"])))
    rows = []
    for cid, scope, contrast in keys:
        row = [cid, scope, contrast]
        for p in have:
            hit = claims[(claims.claim == cid) & (claims.scope == scope) & (claims.contrast == contrast)
                         & (claims.protocol == p)]
            if hit.empty:
                row.append("—")
                continue
            r = hit.iloc[0]
            eff = "" if pd.isna(r["effect"]) else f" {fmt(r['effect'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
            row.append(f"{r['verdict']}{eff}{mdd_note(r)}")
        rows.append(row)
    pairing = ", ".join(f"{k} by {v}" for k, v in REFERENCE_PAIRING.items())
    return (md_table(["claim", "scope", "contrast"] + have, rows)
            + f"\n\nEach cell: verdict, effect [95% CI] of the same test on the same facts; only the success test "
              f"differs. probability: teacher-forced mean log-prob, object vs alternative; first_token: greedy "
              f"next token = the object's first token; generation_contains: the object (whole words, case and "
              f"spacing ignored) in the greedy continuation; {ASYMMETRIC}: the reference study's asymmetric "
              f"test ({pairing}), for claims comparing edited with intrinsic facts only (—: not applicable). "
              f"For C1 the effect is intrinsic - edited retention: how much of the edited-vs-intrinsic gap "
              f"each protocol shows.")
