"""Study configuration: schema validation plus the checks a schema cannot express.

``check_study(config)`` runs before any work (workflow/rules/common.smk calls it at parse
time and ``python -m edit_retention check-config FILE`` runs it alone). It validates against
the package's ``config.schema.yaml`` (unknown keys and wrong types are errors; absent keys
get the schema's defaults), then
checks that every name in the grid exists (models, fact sets, corpora, editors, tasks,
remedies, the lm paraphrase generator's model) and that each editor's and task's
hyperparameters are known and well typed, and that every source (``models``, ``facts``,
``corpora``, ``tasks``) has a known type and only the keys its builder reads (the builders'
own key lists: ``models.SOURCE_KEYS``, ``facts.SOURCE_KEYS``, ``corpus.SOURCE_KEYS``,
``Task.source_keys``). Errors name the file and the key path: with ``layers`` (the config
files in the order they were merged, and ``--config``) the file that sets the key.

Source paths under a data root: ``data_root.py``.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import yaml

from .corpus import SOURCE_KEYS as CORPUS_SOURCE_KEYS
from .data_root import check_files, resolve_source, source_files
from .editors import EDITORS, make_hparams
from .facts import SOURCE_KEYS as FACT_SOURCE_KEYS
from .fields import check_source_keys, unknown_key
from .finetune import FinetuneArgs, MethodSpec
from .freezing import check_freeze
from .io import InputError, read_utf8
from .launch import check_launch
from .layer_check import check_layers
from .models import check_source as check_model_source
from .paraphrase_lm_args import check_paraphrase_config
from .tasks import check_source, get_task

SCHEMA = Path(__file__).with_name("config.schema.yaml")   # package data (pyproject.toml)
log = logging.getLogger(__name__)


def config_layers(files, overrides: dict | None = None) -> list[tuple[str, dict]]:
    """(name, mapping) of each config file in the order they were merged (later ones win),
    then ``--config`` overrides: what ``origin`` searches."""
    layers = []
    for f in files:
        try:
            layers.append((str(f), yaml.safe_load(Path(f).read_text(encoding="utf-8")) or {}))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue      # Snakemake has read it already; a file it cannot name a key in
    if overrides:
        layers.append(("--config", dict(overrides)))
    return layers


def origin(layers, path) -> str | None:
    """The last of ``layers`` that sets the key path ``path`` (a list of keys), or None."""
    for name, mapping in reversed(layers or []):
        node = mapping
        for key in path:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            return name
    return None


def key_where(where: str, layers, *path) -> str:
    """The label "FILE: a.b.c" of the key path ``path``: the file that sets it, else ``where``."""
    return f"{(origin(layers, list(path)) if path else None) or where}: {'.'.join(map(str, path))}"


def validate_schema(config: dict, where: str = "config", schema_path: Path = SCHEMA, layers=None) -> None:
    """Validate ``config`` against the schema, filling in the schema's defaults where a key
    is absent (as Snakemake's ``validate`` does); InputError naming the first bad key (and
    the file in ``layers`` that sets it)."""
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
        e = _innermost(errors[0])
        path = list(e.absolute_path)
        at = key_where(where, layers, *path) if path else where + ": (top level)"
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = list(e.schema.get("properties", {}))
            extra = [k for k in e.instance if k not in allowed]
            if extra:
                raise unknown_key(at, extra[0], allowed)
        raise InputError(f"{at}: {_short(e.message)}")


def _innermost(e):
    """For a value that fits none of a oneOf/anyOf's alternatives, the error of the
    alternative of the value's own type (a mapping: the object schema), recursively."""
    while e.validator in ("oneOf", "anyOf") and e.context:
        kinds = [alt.get("type") for alt in e.validator_value if isinstance(alt, dict)]
        if all(k and not _is_type(e.instance, k) for k in kinds):    # none fits its type: say which would
            e.message = f"{e.instance!r} is not a {' or '.join(_TYPE_WORDS.get(k, k) for k in kinds)}"
            break
        same_type = [c for c in e.context if c.validator != "type" and len(c.relative_schema_path) > 0]
        if not same_type:
            break
        e = min(same_type, key=lambda c: (c.validator == "enum" and not isinstance(c.instance, str), -len(c.path)))
    return e


_TYPE_WORDS = {"string": "string", "object": "mapping", "array": "list", "integer": "integer", "number": "number",
               "boolean": "boolean", "null": "null"}


def _is_type(value, kind: str) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(value, kind)


def _short(message: str, limit: int = 300) -> str:
    """jsonschema quotes whole values; keep a message to one readable line."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + " ..."


def _known(where, key, names, known, what):
    for i, n in enumerate(names if isinstance(names, list) else [names]):
        if n not in known:
            idx = f"[{i}]" if isinstance(names, list) else ""
            raise InputError(f"{where}: {key}{idx}: unknown {what} {n!r} (known: {', '.join(sorted(known))})")


def _check_source_at(check, source: dict, where: str, layers, *path) -> None:
    """``check(source, "FILE: <path>")``. Config files are merged key by key, so a source
    whose type one file changes keeps the other keys of another file's source: an unknown
    key from a file other than the one that sets the type says so."""
    try:
        check(source, key_where(where, layers, *path))
    except InputError as e:
        key = getattr(e, "key", None)
        came, typed = origin(layers, [*path, key]), origin(layers, [*path, "type"])
        if key is None or came is None or came == typed:
            raise
        raise InputError(f"{e}. {key!r} comes from {came}, the type from {typed}: config files are "
                         f"merged key by key, so give a source of another type a new name") from e


def _check_sources(config: dict, where: str, layers) -> None:
    """Every source's type and keys (all entries, in the grid or not), the files of the
    models in use (a model left in params.yaml need not be installed), and fact and corpus
    paths under the data root."""
    para = config["paraphrase"]
    lm_model = (para.get("lm") or {}).get("model") if para.get("generator") == "lm" else None
    used = set(config["grid"]["models"]) | ({lm_model} if lm_model else set())   # a missing one: check_paraphrase_config
    for name, m in config["models"].items():
        _check_source_at(lambda source, at: check_model_source(source, at, files=name in used), m["source"],
                         where, layers, "models", name, "source")
    for section, keys, what in (("facts", FACT_SOURCE_KEYS, "fact source"),
                                ("corpora", CORPUS_SOURCE_KEYS, "corpus source")):
        def check(source, at, keys=keys, what=what):
            check_source_keys(source, keys, at, what)
            resolve_source(source, config.get("data_root"), at)

        for name, entry in config[section].items():
            _check_source_at(check, entry["source"], where, layers, section, name, "source")
    for name, t in config["tasks"].items():
        if "source" in t:
            task = get_task(t["type"])
            _check_source_at(lambda source, at: check_source(task, source, at), t["source"], where, layers,
                             "tasks", name, "source")


def check_study(config: dict, where: str = "config", schema_path: Path = SCHEMA, layers=None,
                built_root: Path | None = Path("data/models")) -> None:
    """Raise InputError (naming file and key) for anything that would fail later. ``layers``
    (``config_layers``): the config files merged into ``config``, to name the one that sets
    a bad key; ``where`` names the config otherwise. ``built_root``: where built models are
    (``<model>/base/config.json`` gives a model's block count; ``layer_check``)."""
    validate_schema(config, where, schema_path, layers)
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
    _check_sources(config, where, layers)
    if config["edit"]["regime"] == "groups" and config["edit"].get("batch_size", 0) < 1:
        raise InputError(f"{key_where(where, layers, 'edit', 'batch_size')}: edit.batch_size must be >= 1 with "
                         f"regime groups (facts per fresh model), got {config['edit'].get('batch_size', 0)}")
    for model in g["models"]:
        hset = config["models"][model].get("hparams")
        for name in g["editors"]:
            try:
                make_hparams(name, config["editors"][name], hset)
            except InputError as e:
                raise InputError(f"{where}: editors.{name} (model {model}): {e}") from e
    check_layers(config, lambda *path: key_where(where, layers, *path), built_root)
    for name in g["tasks"]:
        FinetuneArgs.from_dict(config["tasks"][name].get("params", {}), where=f"{where}: tasks.{name}.params")
    check_launch(config, g["tasks"], key_where(where, layers, "launch", "processes"))
    for name in g["remedies"]:
        check_freeze(config["remedies"][name]["freeze"], f"{where}: remedies.{name}.freeze")
        MethodSpec.parse(config["remedies"][name].get("method"), where=f"{where}: remedies.{name}.method")
    check_paraphrase_config(config["paraphrase"], config["models"], where)


def check_source_files(config: dict, where: str, layers=None, inputs=None) -> None:
    """The local files of the grid's fact set, corpus and tasks exist, are UTF-8 and (JSON,
    JSONL) parse; InputError names the config key, the file and the line. ``inputs``: only
    sources with a file among these paths (the inputs of the jobs about to run; the
    workflow's onstart passes them, so that it reads no file that no job will read)."""
    g = config["grid"]
    for section, name in [("facts", g["facts"]), ("corpora", g["corpus"])] + [("tasks", t) for t in g["tasks"]]:
        source = config[section].get(name, {}).get("source")
        if not isinstance(source, dict):
            continue
        at = key_where(where, layers, section, name, "source")
        if inputs is not None and not inputs.intersection(source_files(source, config.get("data_root"))):
            continue
        check_files(source, config.get("data_root"), at)


def check_config_file(a) -> None:
    """``check-config FILE``: validate a study config without running anything."""
    try:
        config = yaml.safe_load(read_utf8(a.config))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"{a.config}: not valid YAML" + (f" (line {mark.line + 1})" if mark else "")
                         + f": {getattr(e, 'problem', None) or e}") from e
    if not isinstance(config, dict):
        raise InputError(f"{a.config}: a study config is a YAML mapping, got {type(config).__name__}")
    check_study(config, where=a.config, layers=config_layers([a.config]))
    check_source_files(config, where=a.config, layers=config_layers([a.config]))
    print(f"{a.config}: ok")
