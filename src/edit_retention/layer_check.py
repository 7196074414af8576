"""Layer indices of the study config against each model's block count, before any job.

An editor's layers (``editors.<e>.layer``/``layers`` or its hparams set) and the numeric
freezing ranges of the remedies (``layers:A-B``, ``train:A-B``) are checked against the
number of transformer blocks of every model in the grid. The count is read without
loading weights: from the built model's ``config.json`` when ``data/models/<m>/base``
exists (so a study whose artifacts would be at stake is always checked), else from the
source (a random model's config, a local folder's ``config.json``, a hub model already in
the local Hugging Face cache). A GGUF package that was never converted is not read here
(parsing its tensor table takes seconds on every Snakemake start): its first run checks
the layers in the edit job, which has nothing built to lose yet. Negative layers are
refused for every model.
"""
from __future__ import annotations

import json
from pathlib import Path

from .io import InputError

LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def _count(cfg: dict) -> int | None:
    for key in LAYER_KEYS:
        if isinstance(cfg.get(key), int) and not isinstance(cfg.get(key), bool):
            return cfg[key]
    return None


def num_layers(source: dict, built: Path | None = None) -> int | None:
    """The model's block count, or None when it cannot be known without loading the model."""
    if built is not None and (built / "config.json").is_file():
        return _count(json.loads((built / "config.json").read_text()))
    kind = source.get("type")
    if kind == "random":
        n = _count(source.get("config") or {})
        if n is None:
            from transformers import CONFIG_MAPPING

            n = _count(CONFIG_MAPPING[source["architecture"]]().to_dict())
        return n
    if kind == "hf":
        local = Path(str(source["id"])).expanduser()
        if (local / "config.json").is_file():
            return _count(json.loads((local / "config.json").read_text()))
        try:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(source["id"], revision=source.get("revision"), local_files_only=True)
        except Exception:       # not in the local cache: checked when the model is built
            return None
        return _count(cfg.to_dict())
    return None


def _layer_origin(config: dict, editor: str, hset: str | None) -> tuple[tuple, str]:
    """(the config key path that sets an editor's layers, a note on where they come from)."""
    own = config["editors"].get(editor) or {}
    for key in ("layer", "layers"):
        if key in own:
            return ("editors", editor, key), ""
    return ("editors", editor), (f" (layers of hparams set {hset!r}, src/edit_retention/hparams/{editor}/{hset}.yaml)"
                                 if hset else " (the editor's default layers)")


def check_layers(config: dict, key_at, built_root: Path | None = Path("data/models")) -> None:
    """InputError for an editor layer or a freezing range outside a grid model.

    ``key_at(*path)``: the "file: key.path" prefix of an error about that key."""
    from .editors import edited_layers, make_hparams
    from .freezing import resolve_freeze

    g = config["grid"]
    for model in g["models"]:
        hset = config["models"][model].get("hparams") or None
        built = built_root / model / "base" if built_root is not None else None
        n = num_layers(config["models"][model]["source"], built)
        for editor in g["editors"]:
            layers = edited_layers(make_hparams(editor, config["editors"][editor], hset))
            path, note = _layer_origin(config, editor, hset)
            bad = [l for l in layers if l < 0 or (n is not None and l >= n)]
            if bad:
                has = f"it has layers 0..{n - 1}" if n is not None else "layers count from 0"
                raise InputError(f"{key_at(*path)}: layer {bad[0]}{note} is outside model {model!r} ({has})")
            if n is None:
                continue
            for remedy in g["remedies"]:
                spec = config["remedies"][remedy]["freeze"]
                resolve_freeze(spec, layers, n, where=f"{key_at('remedies', remedy, 'freeze')} "
                                                      f"(model {model!r}, editor {editor!r})")
