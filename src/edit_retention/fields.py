"""Checks of config mappings: typed dataclass fields (FinetuneArgs, LMArgs, ...) and the
keys of a source mapping (models, facts, corpora, tasks: each builder's own key lists)."""
from __future__ import annotations

import difflib
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


def unknown_key(where: str, key, allowed, what: str = "") -> InputError:
    """The error for a key outside ``allowed``: the key path, the key, the closest allowed
    key when one is close, and the allowed keys."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    err = InputError(f"{where}: unknown key {key!r}{' ' + what if what else ''}{hint} "
                     f"(allowed: {', '.join(map(str, allowed))})")
    err.key = key
    return err


def check_source_keys(source, keys: dict[str, tuple[str, ...]], where: str, what: str = "source") -> str:
    """The ``type`` of a source mapping, after checking it against ``keys`` (type -> the keys
    that type accepts besides ``type``): InputError naming ``where`` (the source's key path),
    the bad type or key and what is allowed."""
    if not isinstance(source, dict):
        raise InputError(f"{where}: a {what} must be a mapping with a 'type', got {source!r}")
    kind = source.get("type")
    if kind not in keys:
        raise InputError(f"{where}.type: unknown {what} type {kind!r} (known: {', '.join(sorted(keys))})")
    for key in source:
        if key != "type" and key not in keys[kind]:
            raise unknown_key(where, key, ("type", *keys[kind]), f"for {what} type {kind!r}")
    return kind
