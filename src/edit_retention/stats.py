"""Second-moment statistics of MLP keys: C = E[k k^T] per layer (the ``layer_stats`` stage).

A key k is the input of a layer's MLP output projection (``down_proj`` / ``c_proj`` /
``fc_out``, named by the architecture registry), captured with a forward pre-hook at every
non-padding token of generic text. C is uncentred and accumulated in float64; it is
returned and stored in float64 so that an editor sees the same matrix whether it was just
computed or loaded from disk.

Usage::

    from edit_retention.stats import compute_mom2, save_stats, load_stats
    stats = compute_mom2(model, tok, texts, layers=[5], max_len=128, batch_size=8)
    save_stats("data/stats/smollm2/wikitext.safetensors", stats,
               {"model": "smollm2", "corpus": "wikitext2", "tokens": stats.tokens})
    stats, meta = load_stats("data/stats/smollm2/wikitext.safetensors")

``compute_mom2`` returns a :class:`Mom2` (a ``dict[int, Tensor]``) that also carries
``tokens`` (the number of keys averaged) and ``texts``; ``save_stats`` writes them into the
metadata so the count is never lost (MEMIT-style editors scale by it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .checksums import verify
from .io import InputError, atomic_path, without_timings
from .memory import AUTO, auto_batch_size, backoff_chunks, sequence_bytes
from .models import arch_of, check_layers, get_module


class Mom2(dict):
    """``{layer: C}`` plus the number of tokens (keys) and texts it was averaged over."""

    def __init__(self, stats: dict, tokens: int, texts: int):
        super().__init__(stats)
        self.tokens = int(tokens)
        self.texts = int(texts)


class _StopForward(Exception):
    """Raised by the hook at the deepest requested layer: later layers are not needed."""


@torch.no_grad()
def compute_mom2(model, tok, texts: list[str], layers: list[int], max_len: int = 128,
                 batch_size: int = 8, progress: bool = True) -> Mom2:
    """E[k k^T] of the MLP-output-projection inputs at ``layers`` over all non-padding tokens.

    Texts are truncated to ``max_len`` tokens; empty texts are skipped. The forward pass is
    cut short after the deepest requested layer. Raises InputError for no layers / no tokens.
    """
    layers = sorted(set(check_layers(model, layers, "compute_mom2 layers")))
    if not layers:
        raise InputError("compute_mom2: no layers given")
    if max_len < 1 or (batch_size != AUTO and batch_size < 1):
        raise InputError(f"compute_mom2: max_len ({max_len}) and batch_size ({batch_size}) must be >= 1")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise InputError("compute_mom2: no non-empty texts to compute statistics on")
    arch = arch_of(model)
    device = next(model.parameters()).device
    if batch_size == AUTO:
        per_text = sequence_bytes(model.config, max_len, train=False, logit_positions=0, float64_keys=True)
        batch_size = auto_batch_size(model, per_text, cap=len(texts), where="stats", inference=True)
    sums: dict[int, torch.Tensor] = {}
    covered = dict.fromkeys(layers, 0)      # texts already in each layer's sum
    batch: dict = {}                        # the running batch: its end (a text index) and token mask

    def make_hook(layer: int):
        def hook(_module, inputs):
            # A batch redone after running out of memory skips the layers it already reached.
            if covered[layer] < batch["end"]:
                k = inputs[0]
                k = k.reshape(-1, k.shape[-1])[batch["mask"]].to(torch.float64)
                if layer not in sums:
                    sums[layer] = torch.zeros(k.shape[1], k.shape[1], dtype=torch.float64, device=device)
                sums[layer].addmm_(k.T, k)
                covered[layer] = batch["end"]
            if layer == layers[-1]:
                raise _StopForward
        return hook

    def run(start: int, n: int) -> int:
        enc = tok(texts[start:start + n], return_tensors="pt", padding=True,
                  truncation=True, max_length=max_len).to(device)
        batch.update(end=start + n, mask=enc["attention_mask"].reshape(-1).bool())
        try:
            model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
        except _StopForward:
            pass
        return int(batch["mask"].sum())

    handles = [get_module(model, arch.mlp_out.format(l)).register_forward_pre_hook(make_hook(l))
               for l in layers]
    n_tokens = 0
    try:
        with tqdm(total=len(texts), desc="mom2", unit="text", disable=not progress) as bar:
            for _, n, tokens in backoff_chunks(len(texts), batch_size, run, where="stats"):
                n_tokens += tokens
                bar.update(n)
    finally:
        for h in handles:
            h.remove()
    if n_tokens == 0:
        raise InputError("compute_mom2: the texts produced no tokens")
    stats = {l: (sums[l] / n_tokens) for l in layers}
    for c in stats.values():  # symmetrise away summation-order noise
        c.add_(c.T.clone()).mul_(0.5)
    return Mom2(stats, tokens=n_tokens, texts=len(texts))


def layer_file(out_dir: str | os.PathLike, layer: int) -> Path:
    """The file of one layer's statistics in a layer_stats output folder:
    ``<out_dir>/layer<N>.safetensors`` (one file per layer, shared by every editor)."""
    return Path(out_dir) / f"layer{int(layer)}.safetensors"


def save_stats(path: str | os.PathLike, stats: dict[int, torch.Tensor], meta: dict) -> None:
    """Write ``{layer: C}`` as safetensors (keys ``layer.<l>.mom2``) with JSON ``meta``.

    ``tokens`` / ``texts`` from a :class:`Mom2` are added to meta unless meta sets them;
    timings in meta go to the job's log, not the file (``io.without_timings``).
    """
    if not stats:
        raise InputError(f"{path}: no statistics to save")
    meta = without_timings(meta, f"statistics {path}")
    if isinstance(stats, Mom2):
        meta.setdefault("tokens", stats.tokens)
        meta.setdefault("texts", stats.texts)
    meta["layers"] = sorted(int(l) for l in stats)
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as e:
        raise InputError(f"{path}: stats metadata is not JSON-serialisable: {e}") from e
    tensors = {f"layer.{int(l)}.mom2": c.detach().to("cpu").contiguous() for l, c in stats.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"meta": meta_json})


def load_stats(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[int, torch.Tensor], dict]:
    """Read a file written by :func:`save_stats`: ``({layer: C}, meta)``."""
    if not os.path.exists(path):
        raise InputError(f"{path}: statistics file not found; run the layer_stats stage")
    verify(path)
    stats: dict[int, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            for key in f.keys():
                parts = key.split(".")
                if len(parts) != 3 or parts[0] != "layer" or parts[2] != "mom2" or not parts[1].isdigit():
                    raise InputError(f"{path}: unexpected tensor {key!r} (expected layer.<l>.mom2)")
                stats[int(parts[1])] = f.get_tensor(key)
    except InputError:
        raise
    except Exception as e:  # OSError, bad JSON, or safetensors' own error on a corrupt header
        raise InputError(f"{path}: not a readable statistics file: {e}") from e
    if "tokens" in meta:
        stats = Mom2(stats, tokens=meta["tokens"], texts=meta.get("texts", 0))
    return stats, meta
