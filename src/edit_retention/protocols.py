"""The success protocols a fact prompt is scored under (pure functions; no torch, no I/O).

Each protocol decides whether one scored prompt "states" its tracked object (target_new for
edited facts, target_true for intrinsic ones; the neighbour's true object for neighbourhood
prompts). Every metric in the summary is named by the protocol it uses.

    probability          the tracked object's mean token log-prob beats the alternative's
                         (CounterFact/ROME "P(new) > P(true)"; ``metrics.prob_success``)
    first_token          the greedy next token after the prompt is the first token of
                         " " + object (the reference study's test for edited facts:
                         arXiv 2507.14198's ``infer_edited_token_probs.py``)
    generation_contains  the greedy continuation (N new tokens) contains the object (its
                         test for intrinsic facts: ``target_true in output``)

``generation_contains`` matching, and why it differs from a bare ``in``: both strings are
Unicode-NFKC normalised, case-folded and whitespace-collapsed, and the object must stand as
whole words (not inside a longer word: "Rome" is not found in "Romeo", "India" not in
"Indiana"). The leading space of the continuation does not matter. A bare substring test
would pass "Iran" in "Iranian", which the reference code counts; ours is the stricter of
the two on that point and equal to it otherwise.

The reference study pairs the protocols asymmetrically (edits by ``first_token``,
intrinsic facts by ``generation_contains``); ``REFERENCE_PAIRING`` names that pairing and
``ASYMMETRIC`` is its name in claims.csv's ``protocol`` column.

Metric names: a metric under ``probability`` keeps its historical name
(``retention_rewrite``); under another protocol it carries the protocol as a suffix
(``retention_rewrite@first_token``): ``metric_name`` / ``split_metric``.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Mapping

PROTOCOLS = ("probability", "first_token", "generation_contains")
# The reference study's asymmetric pairing: knowledge kind -> protocol.
REFERENCE_PAIRING = {"edited": "first_token", "intrinsic": "generation_contains"}
ASYMMETRIC = "reference_pairing"
PROBABILITY = "probability"
SEP = "@"


def tagged(name: str, protocol: str) -> str:
    """``name`` as it is written under ``protocol`` (a protocol or ``ASYMMETRIC``): bare for
    probability, ``name@protocol`` otherwise (metric names, claims.json keys)."""
    return name if protocol == PROBABILITY else f"{name}{SEP}{protocol}"


def metric_name(base: str, protocol: str) -> str:
    """The name of metric ``base`` under symmetric ``protocol`` (``tagged``, checked)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    return tagged(base, protocol)


def split_metric(name: str) -> tuple[str, str]:
    """(base metric, protocol) of a metric name; the inverse of ``metric_name``."""
    base, _, protocol = name.partition(SEP)
    return base, protocol or PROBABILITY


def protocol_for(protocol: str, knowledge: str) -> str:
    """The symmetric protocol that scores ``knowledge`` under ``protocol`` (which may be
    ``ASYMMETRIC``: the reference pairing)."""
    return REFERENCE_PAIRING[knowledge] if protocol == ASYMMETRIC else protocol


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed to single spaces, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def contains_object(continuation: str, obj: str) -> bool:
    """True when ``obj`` appears in ``continuation`` as whole words (see the module doc)."""
    o = normalise(obj)
    if not o:
        return False
    return re.search(r"(?<!\w)" + re.escape(o) + r"(?!\w)", normalise(continuation)) is not None


def success(row: Mapping, protocol: str) -> bool | None:
    """Whether one scored row succeeds under ``protocol`` (None: the row was not scored
    under it, e.g. no generation for neighbourhood prompts)."""
    if protocol == PROBABILITY:
        from .metrics import row_success
        return row_success(row)
    if protocol == "first_token":
        return bool(row["top1"])
    if protocol == "generation_contains":
        gen = row.get("generation")
        return None if gen is None else contains_object(gen, row["target"])
    raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
