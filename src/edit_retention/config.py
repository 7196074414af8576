"""Study configuration: schema validation plus the checks a schema cannot express.

``check_study(config)`` runs before any work (workflow/rules/common.smk calls it at parse
time and ``python -m edit_retention check-config FILE`` runs it alone). It validates against
the package's ``config.schema.yaml`` (unknown keys and wrong types are errors; absent keys
get the schema's defaults), then
checks that every name in the grid exists (models, fact sets, corpora, editors, tasks,
remedies, the lm paraphrase generator's model) and that each editor's and task's
hyperparameters are known and well typed.
Errors name the file and the key path.

Source paths under a data root: ``data_root.py``.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import yaml

from .corpus import SOURCES as CORPUS_SOURCES
from .data_root import resolve_source
from .editors import EDITORS, make_hparams
from .facts import SOURCES as FACT_SOURCES
from .finetune import FinetuneArgs, MethodSpec
from .freezing import check_freeze
from .io import InputError
from .paraphrase_lm_args import check_paraphrase_config
from .tasks import check_source, get_task

SCHEMA = Path(__file__).with_name("config.schema.yaml")   # package data (pyproject.toml)
log = logging.getLogger(__name__)
MODEL_SOURCES = ("gguf_package", "hf", "random")



def validate_schema(config: dict, where: str = "config", schema_path: Path = SCHEMA) -> None:
    """Validate ``config`` against the schema, filling in the schema's defaults where a key
    is absent (as Snakemake's ``validate`` does); InputError naming the first bad key."""
    import jsonschema
    from jsonschema import validators

    schema = yaml.safe_load(Path(schema_path).read_text())
    check_properties = jsonschema.Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for key, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(key, copy.deepcopy(prop["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    validator = validators.extend(jsonschema.Draft202012Validator, {"properties": set_defaults})(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InputError(f"{where}: {path}: {e.message}")


def _known(where, key, names, known, what):
    for i, n in enumerate(names if isinstance(names, list) else [names]):
        if n not in known:
            idx = f"[{i}]" if isinstance(names, list) else ""
            raise InputError(f"{where}: {key}{idx}: unknown {what} {n!r} (known: {', '.join(sorted(known))})")


def _check_task(name: str, cfg: dict, where: str) -> None:
    """Checks of one ``tasks.<name>`` entry that the schema cannot express."""
    task = get_task(cfg["type"])
    FinetuneArgs.from_dict(cfg.get("params", {}), where=f"{where}: tasks.{name}.params")
    src = cfg.get("source")
    if src is not None and not hasattr(task, "build_data"):
        check_source(task, src, f"{where}: tasks.{name}.source")


def check_study(config: dict, where: str = "config", schema_path: Path = SCHEMA) -> None:
    """Raise InputError (naming file and key) for anything that would fail later."""
    validate_schema(config, where, schema_path)
    g = config["grid"]
    for key in ("models", "editors", "tasks", "remedies", "seeds"):
        seen = [v for i, v in enumerate(g[key]) if v in g[key][:i]]
        if seen:   # a repeated name duplicates every summary row and doubles n (narrower intervals)
            raise InputError(f"{where}: grid.{key} lists {sorted(set(map(str, seen)))} more than once; "
                             "each name may appear once")
    defs: dict[str, str] = {}
    for name in g["remedies"]:
        d = json.dumps(config["remedies"][name], sort_keys=True)
        if d in defs:
            log.warning("%s: remedies %r and %r have the same definition; claims find cells by definition, "
                        "so both feed the same contrasts", where, defs[d], name)
        defs.setdefault(d, name)
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
        resolve_source(f["source"], config.get("data_root"), f"{where}: facts.{name}.source")
    for name, c in config["corpora"].items():
        _known(where, f"corpora.{name}.source.type", c["source"]["type"], CORPUS_SOURCES, "corpus source type")
        resolve_source(c["source"], config.get("data_root"), f"{where}: corpora.{name}.source")
    for model in g["models"]:
        hset = config["models"][model].get("hparams")
        for name in g["editors"]:
            try:
                make_hparams(name, config["editors"][name], hset)
            except InputError as e:
                raise InputError(f"{where}: editors.{name} (model {model}): {e}") from e
    for name in g["tasks"]:
        _check_task(name, config["tasks"][name], where)
    for name in g["remedies"]:
        check_freeze(config["remedies"][name]["freeze"], f"{where}: remedies.{name}.freeze")
        MethodSpec.parse(config["remedies"][name].get("method"), where=f"{where}: remedies.{name}.method")
    check_paraphrase_config(config["paraphrase"], config["models"], where)


def check_config_file(a) -> None:
    """``check-config FILE``: validate a study config without running anything."""
    with open(a.config) as f:
        check_study(yaml.safe_load(f), where=a.config)
    print(f"{a.config}: ok")
