"""Model editors behind one interface, and their registry.

Every editor has ``name``, ``hparams_cls`` (a dataclass: defaults + per-field help in
``field.metadata["help"]``) and::

    edit(model, tok, requests: list[dict], hp, stats: dict[int, Tensor] | None,
         state: dict | None = None) -> EditResult

in batch mode (all requests into one model). ``state`` is the previous call's
``EditResult.state`` in a sequential run (``regimes.run_regime``), None otherwise. A request is ``{"case_id", "subject",
"prompt" (template with "{}"), "target_new", "target_true", "aug_prompts": [templates]}``;
aug prompts are extra optimisation prompts (paraphrase augmentation), possibly empty.

INVARIANT: the model passed to ``edit`` is bit-identical on return (weights, grad flags,
train/eval mode); only ``apply_deltas(model, result.deltas)`` changes it, and
``apply_deltas(..., sign=-1.0)`` undoes it to float tolerance (``deltas_applied`` exactly).

Usage::

    from edit_retention.editors import get_editor, make_hparams, apply_deltas, save_edit
    editor = get_editor("rome")
    result = editor.edit(model, tok, requests, make_hparams("rome", {"layer": 5}), stats)
    save_edit(result, "data/edits/run")
"""
from __future__ import annotations

from pathlib import Path

from ..io import InputError
from .base import (EditError, EditResult, apply_deltas, deltas_applied, help_of, load_edit,
                   request_from_record, save_edit, build_hparams)
from .ft_l import FtEditor, FtHparams, FtLEditor, FtLHparams
from .mend import MendEditor, MendHparams
from .alphaedit import AlphaEditEditor, AlphaEditHparams
from .memit import MemitEditor, MemitHparams
from .rome import RomeEditor, RomeHparams

EDITORS: dict[str, type] = {"rome": RomeEditor, "ft_l": FtLEditor, "ft": FtEditor, "mend": MendEditor,
                          "memit": MemitEditor, "alphaedit": AlphaEditEditor}


def get_editor(name: str):
    """A fresh editor instance by registry name."""
    if name not in EDITORS:
        raise InputError(f"unknown editor {name!r} (known: {', '.join(sorted(EDITORS))})")
    return EDITORS[name]()


def edited_layers(hp) -> list[int]:
    """Layers an editor's hyperparameters name (``layer`` for ROME, ``layers`` for FT-L)."""
    return [int(x) for x in hp.layers] if hasattr(hp, "layers") else [int(hp.layer)]


HPARAMS_DIR = Path(__file__).resolve().parents[1] / "hparams"


def hparams_sets(name: str) -> list[str]:
    """Names of the versioned hyperparameter files shipped for editor ``name``."""
    return sorted(p.stem for p in (HPARAMS_DIR / name).glob("*.yaml"))


def hparams_file(name: str, hparams_set: str) -> dict:
    """The overrides in ``hparams/<editor>/<set>.yaml`` (a mapping; InputError naming the file)."""
    import yaml

    path = HPARAMS_DIR / name / f"{hparams_set}.yaml"
    if not path.exists():
        raise InputError(f"{path}: no hyperparameter file for editor {name!r} and set {hparams_set!r} "
                         f"(shipped sets: {', '.join(hparams_sets(name)) or 'none'})")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise InputError(f"{path}: must be a mapping of hyperparameter names to values")
    return values


def make_hparams(name: str, overrides: dict | None = None, hparams_set: str | None = None):
    """Hyperparameters of editor ``name``: the dataclass defaults, then the versioned file
    ``hparams/<name>/<hparams_set>.yaml`` (per model family/size, when a set is named), then
    ``overrides`` (the study config). InputError on an unknown key or a wrong type (naming the
    editor, the key and, for a file, its path)."""
    cls = get_editor(name).hparams_cls
    values = {}
    if hparams_set:
        path = HPARAMS_DIR / name / f"{hparams_set}.yaml"
        values = hparams_file(name, hparams_set)
        build_hparams(f"{name} ({path})", cls, values)   # errors name the file
    return build_hparams(name, cls, {**values, **(overrides or {})})


__all__ = ["AlphaEditHparams", "MemitHparams", "EDITORS", "EditError", "EditResult", "edited_layers", "FtHparams", "FtLHparams", "MendHparams", "RomeHparams", "apply_deltas",
           "deltas_applied", "get_editor", "help_of", "hparams_file", "hparams_sets", "load_edit", "make_hparams",
           "request_from_record", "save_edit"]
