"""Freezing strategies of a remedy (``remedies.<name>.freeze``): the one vocabulary.

    none          train every parameter
    edited        freeze the edited layers (train only the non-edited ones)
    non_edited    alias of edited: fine-tune only the non-edited layers
    only_edited   train only the edited layers (every other parameter frozen)
    above_edited  train only the blocks after the last edited one (the reference study's
                  "freeze the edited layers": its --train_k_layer starts above the edit, so every
                  block below the edit is pinned too)
    below_edited  train only the blocks before the first edited one
    layers:A-B[,C...]  freeze these blocks
    train:A-B     train only blocks A..B (B may be "end"), freeze every other block

Embeddings, the final norm and the output head train under every strategy but
``only_edited`` (the reference code's rule: they always train).

The edited layers come from the edit's own log. The config check (``config.check_study``),
fine-tuning (``finetune``) and the claims (``claims``) all read these names from here.
"""
from __future__ import annotations

import re

from .io import InputError

FREEZE_NAMED = ("none", "edited", "non_edited", "only_edited", "above_edited", "below_edited")
FREEZE_PATTERN = re.compile(r"^layers:(\d+(-\d+)?)(,\d+(-\d+)?)*$")
TRAIN_PATTERN = re.compile(r"^train:(\d+)-(\d+|end)$")
# Strategies under which only the non-edited layers train (claims C3 and F1), the reference
# study's contiguous block ranges included. A `layers:`/`train:` spec is not here: whether it
# leaves the edit untouched depends on the editor's layers, which cells.csv does not carry.
TRAINS_NON_EDITED_ONLY = ("edited", "non_edited", "above_edited", "below_edited")


def check_freeze(spec, where: str = "freeze") -> str:
    """``spec`` if it names a strategy; InputError otherwise."""
    if isinstance(spec, str) and (spec in FREEZE_NAMED or FREEZE_PATTERN.match(spec) or TRAIN_PATTERN.match(spec)):
        return spec
    raise InputError(f"{where}: unknown freezing strategy {spec!r} (known: {', '.join(FREEZE_NAMED)}, "
                     "layers:A-B[,C...], train:A-B or train:A-end)")


def parse_layers(text: str, n_layers: int, where: str) -> list[int]:
    """"0-4,7" -> [0, 1, 2, 3, 4, 7], each checked against the model's layer count."""
    out = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b or a)
        if hi < lo:
            raise InputError(f"{where}: empty layer range {part!r}")
        out.update(range(lo, hi + 1))
    bad = sorted(l for l in out if l >= n_layers)
    if bad:
        raise InputError(f"{where}: layer {bad[0]} is outside the model (it has layers 0..{n_layers - 1})")
    return sorted(out)


def resolve_freeze(spec: str, edited_layers, n_layers: int, where: str = "freeze") -> tuple[list[int], bool]:
    """(blocks to freeze, whether the non-block parameters are frozen too)."""
    if spec == "none":
        return [], False
    if spec in FREEZE_NAMED:
        if edited_layers is None:
            raise InputError(f"{where}: strategy {spec!r} needs an edit (its log names the edited layers)")
        edited = sorted({int(l) for l in edited_layers})
        bad = [l for l in edited if not 0 <= l < n_layers]
        if bad:
            raise InputError(f"{where}: the edit's layer {bad[0]} is outside the model (layers 0..{n_layers - 1})")
        if spec == "only_edited":
            return [l for l in range(n_layers) if l not in edited], True
        if spec == "above_edited":
            return list(range(edited[-1] + 1)), False
        if spec == "below_edited":
            return list(range(edited[0], n_layers)), False
        return edited, False
    check_freeze(spec, where)
    m = TRAIN_PATTERN.match(spec)
    if m:
        lo, hi = int(m[1]), n_layers - 1 if m[2] == "end" else int(m[2])
        if not lo <= hi < n_layers:
            raise InputError(f"{where}: {spec!r} names no block range of this model (layers 0..{n_layers - 1})")
        return [l for l in range(n_layers) if not lo <= l <= hi], False
    return parse_layers(spec[len("layers:"):], n_layers, where), False
