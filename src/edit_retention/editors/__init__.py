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

from ..io import InputError
from .base import (EditError, EditResult, apply_deltas, deltas_applied, help_of, load_edit,
                   request_from_record, save_edit, build_hparams)
from .ft_l import FtLEditor, FtLHparams
from .rome import RomeEditor, RomeHparams

EDITORS: dict[str, type] = {"rome": RomeEditor, "ft_l": FtLEditor}


def get_editor(name: str):
    """A fresh editor instance by registry name."""
    if name not in EDITORS:
        raise InputError(f"unknown editor {name!r} (known: {', '.join(sorted(EDITORS))})")
    return EDITORS[name]()


def edited_layers(hp) -> list[int]:
    """Layers an editor's hyperparameters name (``layer`` for ROME, ``layers`` for FT-L)."""
    return [int(x) for x in hp.layers] if hasattr(hp, "layers") else [int(hp.layer)]


def make_hparams(name: str, overrides: dict | None = None):
    """The editor's hyperparameter defaults with ``overrides``; InputError on an unknown key
    or a wrong type (naming the editor and the key)."""
    return build_hparams(name, get_editor(name).hparams_cls, overrides)


__all__ = ["EDITORS", "EditError", "EditResult", "edited_layers", "FtLHparams", "RomeHparams", "apply_deltas",
           "deltas_applied", "get_editor", "help_of", "load_edit", "make_hparams",
           "request_from_record", "save_edit"]
