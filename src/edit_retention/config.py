"""Study configuration: schema validation plus the checks a schema cannot express.

``check_study(config)`` runs before any work (the Snakefile calls it at parse time and
``python -m edit_retention check-config FILE`` runs it alone). It validates against
``workflow/schemas/config.schema.yaml`` (unknown keys and wrong types are errors), then
checks that every name in the grid exists (models, fact sets, corpora, editors, tasks,
remedies, the lm paraphrase generator's model) and that each editor's and task's
hyperparameters are known and well typed.
Errors name the file and the key path.

Data root: a source ``path`` may start with ``${data_root}/`` (or be ``${data_root}``);
that prefix stands for the top-level ``data_root`` key (absolute, or relative to the
directory the pipeline runs in, the repository root), so a study can name files in a
shared data folder without hard-coding where it lives::

    data_root: ../shared/datasets          # or: snakemake --config data_root=/data/er
    facts:
      cf: {source: {type: counterfact, path: "${data_root}/counterfact/counterfact_500.json"}}

``resolve_source`` / ``source_files`` do the substitution; the Snakefile's input
functions and the fact loaders (``facts.load_facts(..., data_root=)``) both use them, so
the file Snakemake watches is the file the loader reads.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .io import InputError

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
MODEL_SOURCES = ("gguf_package", "hf", "random")
DATA_ROOT = "${data_root}"


def resolve_data_root(path: str, data_root: str | None, where: str = "path") -> str:
    """``path`` with a leading ``${data_root}`` replaced by ``data_root`` (unchanged when it
    has none); InputError when ``data_root`` is unset or the placeholder is not a prefix."""
    if DATA_ROOT not in path:
        return path
    if not (path == DATA_ROOT or path.startswith(DATA_ROOT + "/")) or path.count(DATA_ROOT) > 1:
        raise InputError(f"{where}: {DATA_ROOT} may only start a path ('{DATA_ROOT}/...'), got {path!r}")
    if not isinstance(data_root, str) or not data_root:
        raise InputError(f"{where}: {path!r} uses {DATA_ROOT}, but no data root is set (top-level "
                         f"key data_root in the study config, or --config data_root=DIR)")
    if path == DATA_ROOT:
        return data_root
    return data_root.rstrip("/") + path[len(DATA_ROOT):]


def resolve_source(source, data_root: str | None, where: str = "source"):
    """A copy of a source mapping with its ``path`` resolved (anything else is returned as is)."""
    if isinstance(source, dict) and isinstance(source.get("path"), str):
        return {**source, "path": resolve_data_root(source["path"], data_root, f"{where}: path")}
    return source


def source_files(source, data_root: str | None = None) -> list[str]:
    """Local files a source reads (its resolved ``path``; every file under it when it is a
    directory, hidden ones aside), so that editing one reruns its dependants. Sources
    without a path (builtin, hub datasets) read none."""
    source = resolve_source(source, data_root)
    path = source.get("path") if isinstance(source, dict) else None
    if not isinstance(path, str) or not path:
        return []
    p = Path(path)
    if p.is_dir():
        return sorted(str(f) for f in p.rglob("*")
                      if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
    return [path]


def validate_schema(config: dict, where: str = "config", schema_path: Path = SCHEMA) -> None:
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise InputError(f"{where}: {path}: {e.message}")


def typed_fields(cls, d: dict, where: str, parsers: dict | None = None, non_negative: bool = False) -> dict:
    """Keyword arguments for the dataclass ``cls`` from a config mapping, each checked
    against the type of its field's default: an unknown key or a wrong type is an error
    naming ``where`` and the key; an integer passes for a float; with ``non_negative`` a
    negative integer is an error. ``parsers[key](value)`` checks a key with its own rules."""
    from dataclasses import fields

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
    from .finetune import MethodSpec
    from .paraphrase_lm import check_paraphrase_config
    from .tasks import check_task_config

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
        check_task_config(name, config["tasks"][name], where)
    for name in g["remedies"]:
        MethodSpec.parse(config["remedies"][name].get("method"), where=f"{where}: remedies.{name}.method")
    check_paraphrase_config(config["paraphrase"], config["models"], where)
