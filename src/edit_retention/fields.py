"""Typed dataclass fields from a config mapping (FinetuneArgs, LMArgs, ...)."""
from __future__ import annotations

from dataclasses import fields

from .io import InputError


def typed_fields(cls, d: dict, where: str, parsers: dict | None = None, non_negative: bool = False) -> dict:
    """Keyword arguments for the dataclass ``cls`` from a config mapping, each checked
    against the type of its field's default: an unknown key or a wrong type is an error
    naming ``where`` and the key; an integer passes for a float; with ``non_negative`` a
    negative integer is an error. ``parsers[key](value)`` checks a key with its own rules."""
    known = {f.name: f.default for f in fields(cls)}
    parsers = parsers or {}
    out = {}
    for k, v in d.items():
        if k not in known:
            raise InputError(f"{where}: unknown key {k!r} (known: {', '.join(known)})")
        if k in parsers:
            out[k] = parsers[k](v)
            continue
        typ = type(known[k])
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise InputError(f"{where}: key {k!r} must be {typ.__name__}, got {v!r}")
        if non_negative and typ is int and v < 0:
            raise InputError(f"{where}: key {k!r} must be >= 0, got {v!r}")
        out[k] = v
    return out
