"""Study configuration: schema validation plus the checks a schema cannot express.

``check_study(config)`` runs before any work (the Snakefile calls it at parse time and
``python -m edit_retention check-config FILE`` runs it alone). It validates against
``workflow/schemas/config.schema.yaml`` (unknown keys and wrong types are errors), then
checks that every name in the grid exists (models, fact sets, corpora, editors, tasks,
remedies) and that each editor's and task's hyperparameters are known and well typed.
Errors name the file and the key path.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .io import InputError

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
MODEL_SOURCES = ("gguf_package", "hf", "random")


def validate_schema(config: dict, where: str = "config", schema_path: Path = SCHEMA) -> None:
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InputError(f"{where}: {path}: {e.message}")


def _known(where, key, names, known, what):
    for i, n in enumerate(names if isinstance(names, list) else [names]):
        if n not in known:
            idx = f"[{i}]" if isinstance(names, list) else ""
            raise InputError(f"{where}: {key}{idx}: unknown {what} {n!r} (known: {', '.join(sorted(known))})")


def check_study(config: dict, where: str = "config", schema_path: Path = SCHEMA) -> None:
    """Raise InputError (naming file and key) for anything that would fail later."""
    from .corpus import SOURCES as CORPUS_SOURCES
    from .editors import EDITORS, make_hparams
    from .facts import SOURCES as FACT_SOURCES
    from .finetune import FinetuneArgs

    validate_schema(config, where, schema_path)
    g = config["grid"]
    _known(where, "grid.models", g["models"], config["models"], "model")
    _known(where, "grid.facts", g["facts"], config["facts"], "fact set")
    _known(where, "grid.corpus", g["corpus"], config["corpora"], "corpus")
    _known(where, "grid.editors", g["editors"], config["editors"], "editor (no entry under editors:)")
    _known(where, "grid.editors", g["editors"], EDITORS, "editor")
    _known(where, "grid.tasks", g["tasks"], config["tasks"], "task")
    _known(where, "grid.remedies", g["remedies"], config["remedies"], "remedy")
    for name, m in config["models"].items():
        _known(where, f"models.{name}.source.type", m["source"]["type"], MODEL_SOURCES, "model source type")
    for name, f in config["facts"].items():
        _known(where, f"facts.{name}.source.type", f["source"]["type"], FACT_SOURCES, "fact source type")
    for name, c in config["corpora"].items():
        _known(where, f"corpora.{name}.source.type", c["source"]["type"], CORPUS_SOURCES, "corpus source type")
    for model in g["models"]:
        hset = config["models"][model].get("hparams")
        for name in g["editors"]:
            try:
                make_hparams(name, config["editors"][name], hset)
            except InputError as e:
                raise InputError(f"{where}: editors.{name} (model {model}): {e}") from e
    for name in g["tasks"]:
        FinetuneArgs.from_dict(config["tasks"][name].get("params", {}), where=f"{where}: tasks.{name}.params")
