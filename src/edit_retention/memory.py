"""Batch sizes that scale with memory.

A batch-size setting may be ``"auto"`` instead of a number: the stage then takes the
largest batch whose estimated peak memory fits the job's budget, and on an out-of-memory
error halves it and repeats the same batch (nothing is lost, nothing is skipped)::

    size = pick_batch_size(budget_bytes(device, mem_mb), fixed=model_bytes(model),
                           per_item=sequence_bytes(model.config, 64, train=False), cap=256)
    for start, n, rows in backoff_chunks(len(items), size, score_chunk, where="scoring"): ...

The budget (``budget_bytes``): on CUDA, the GPU's total memory (one job per GPU, as the
gpu profile schedules them); on CPU, the memory Snakemake or SLURM reserved for the job
(``mem_mb``; the rules pass ``resources.mem_mb``) or else the machine's memory (its
cgroup limit when lower); times ``FRACTION`` for what the estimate leaves out (the
allocator's slack, the CUDA context, Python). Total rather than free memory, so the same
machine and config always pick the same size.

The estimate (``sequence_bytes``) counts what one sequence of ``seq_len`` tokens keeps
alive: for training every block's saved activations (8h + 5f values per token for the
attention and gated-MLP inputs and outputs, plus 2 a s for attention scores and their
softmax) and the logits with their float32 log-softmax and gradient; for inference one
block's transient values and the scored logits. With bf16 autocast, matrix outputs are
2 bytes. It over-counts on purpose (fused attention keeps no scores);
``benchmarks/bench_memory.py`` compares it with measured peaks.

Fine-tuning keeps its batch size as the optimiser's batch (a hyperparameter: results must
not depend on the machine) and fits memory with ``micro_batch_size``: the batch is run in
micro-batches whose gradients add up to the whole batch's (``finetune``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .io import InputError

log = logging.getLogger(__name__)

AUTO = "auto"
FRACTION = 0.8
# Inference batches (scoring, statistics) past these sizes bring no speed, only padding:
# on CPU, scoring the default study's 432 items took 31/28/26/29/34/46 s at 8/16/32/64/
# 128/432 items per pass (SmolLM2, one thread), so "auto" stops at 32 there.
INFERENCE_CAP = {"cpu": 32, "cuda": 1024}


def parse_batch_size(value, where: str, zero_ok: bool = False):
    """A batch-size setting: an integer >= 1 (>= 0 with ``zero_ok``) or "auto"."""
    if value == AUTO:
        return AUTO
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    lo = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(f"{where}: a batch size must be an integer >= {lo} or \"auto\", got {value!r}")
    return value


def batch_size_arg(text: str):
    """argparse type of --batch-size options that accept "auto"."""
    import argparse
    try:
        return parse_batch_size(text, "--batch-size")
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _cgroup_limit() -> int | None:
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def host_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


_JOB_MEM_MB = 0   # set once per process by the CLI's --mem-mb (the job's reservation)


def set_job_memory(mem_mb: int) -> None:
    """The memory (MB) this job was given: Snakemake's or SLURM's ``resources.mem_mb``."""
    global _JOB_MEM_MB
    if mem_mb < 0:
        raise InputError(f"--mem-mb must be >= 0 (0 = the machine's memory), got {mem_mb!r}")
    _JOB_MEM_MB = int(mem_mb)


def budget_bytes(device, mem_mb: int | None = None, fraction: float = FRACTION) -> int:
    """What a job may fill with weights and batches (see the module docstring);
    ``mem_mb`` None: the job's (``set_job_memory``)."""
    device = torch.device(device)
    mem_mb = _JOB_MEM_MB if mem_mb is None else mem_mb
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = min(mem_mb * 2**20, host_memory()) if mem_mb else host_memory()
    return int(total * fraction)


def model_bytes(model) -> int:
    """Weights and buffers, as stored."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def train_state_bytes(model, precision: str = "fp32") -> int:
    """Weights; gradients and AdamW's two moments of the trainable ones; two copies of the
    largest trainable tensor (the optimiser step's temporaries, and a tied head's second
    gradient); and the bf16 weight copies autocast caches."""
    sizes = [p.numel() * p.element_size() for p in model.parameters() if p.requires_grad]
    copies = sum(p.numel() * 2 for p in model.parameters()) if precision == "bf16" else 0
    return model_bytes(model) + 3 * sum(sizes) + 2 * max(sizes, default=0) + copies


def _dims(config) -> tuple[int, int, int, int, int]:
    """(layers, hidden, MLP width, heads, vocabulary) of a Hugging Face config."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None)), None)  # noqa: E731
    layers, hidden = get("num_hidden_layers", "n_layer"), get("hidden_size", "n_embd")
    heads, vocab = get("num_attention_heads", "n_head"), get("vocab_size")
    if not all((layers, hidden, heads, vocab)):
        raise InputError(f"memory estimate: the model config ({type(config).__name__}) names no layer count, "
                         "hidden size, head count or vocabulary size; set a numeric batch size instead of auto")
    return layers, hidden, get("intermediate_size", "n_inner") or 4 * hidden, heads, vocab


def sequence_bytes(config, seq_len: int, *, train: bool, precision: str = "fp32",
                   logit_positions: int | None = None, float64_keys: bool = False) -> int:
    """Estimated peak bytes that one sequence of ``seq_len`` tokens adds (module docstring).

    ``logit_positions``: positions whose vocabulary logits are computed (default: all);
    ``float64_keys``: the MLP keys are also copied in float64 (layer statistics).
    """
    layers, h, f, a, vocab = _dims(config)
    s = max(int(seq_len), 1)
    e = 2 if precision == "bf16" else 4
    pos = s if logit_positions is None else logit_positions
    if train:
        blocks = layers * (s * (8 * h + 5 * f) + 2 * a * s * s) * e
        logits = pos * vocab * (e + 4 + 4)
    else:
        blocks = (s * (6 * h + 3 * f) + 2 * a * s * s) * e
        logits = pos * vocab * 4 * 2
    return blocks + logits + (s * f * 8 if float64_keys else 0)


def pick_batch_size(budget: int, fixed: int, per_item: int, cap: int) -> int:
    """The largest batch of at most ``cap`` items that fits ``budget`` beside ``fixed``
    bytes: ``cap`` itself or a power of two, and 1 when not even one item fits (the
    out-of-memory message then names the setting)."""
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    room = (budget - fixed) // max(per_item, 1)
    if room >= cap:
        return cap
    if room < 1:
        log.warning("memory: the fixed part (weights, and optimiser state when training: %.2f GB) and one "
                    "item (%.3f GB) exceed the budget (%.2f GB); trying batch size 1",
                    fixed / 2**30, per_item / 2**30, budget / 2**30)
        return 1
    return 1 << (int(room).bit_length() - 1)


def auto_batch_size(model, per_item: int, cap: int, where: str, fixed: int | None = None,
                    inference: bool = False) -> int:
    """``pick_batch_size`` on the budget of the model's device; ``fixed`` defaults to
    the model's weights; ``inference`` also caps at INFERENCE_CAP. Logs the choice."""
    device = next(model.parameters()).device
    if inference:
        cap = min(cap, INFERENCE_CAP.get(device.type, INFERENCE_CAP["cuda"]))
    budget = budget_bytes(device)
    fixed = model_bytes(model) if fixed is None else fixed
    size = pick_batch_size(budget, fixed, per_item, cap)
    log.info("%s: batch size auto -> %d (budget %.2f GB on %s, fixed %.2f GB, %.1f MB per item)",
             where, size, budget / 2**30, device, fixed / 2**30, per_item / 2**20)
    return size


def is_out_of_memory(e: BaseException) -> bool:
    """An error a smaller batch might avoid (CUDA or host allocation failures)."""
    from accelerate.utils.memory import should_reduce_batch_size

    return (isinstance(e, (MemoryError, torch.OutOfMemoryError))
            or "out of memory" in str(e).lower() or should_reduce_batch_size(e))


def with_backoff(fn, size: int, where: str, on_retry=None):
    """``fn(size)``, halving ``size`` after each out-of-memory error; the error is raised
    again once size 1 fails. ``on_retry(size)`` runs before each retry (undo partial work).
    Returns (result, size that worked)."""
    from accelerate.utils.memory import clear_device_cache

    while True:
        try:
            return fn(size), size
        except (RuntimeError, MemoryError) as e:
            if size <= 1 or not is_out_of_memory(e):
                raise
        clear_device_cache(garbage_collection=True)   # outside the handler: the traceback is gone
        size = max(size // 2, 1)
        log.warning("%s: out of memory, retrying with batch size %d", where, size)
        if on_retry is not None:
            on_retry(size)


def backoff_chunks(n_items: int, size: int, fn, where: str):
    """Run ``fn(start, n)`` over items 0..n_items-1 in consecutive chunks of ``size``,
    halving the size for the rest of the run after an out-of-memory error (``with_backoff``).
    Yields (start, n, result) per chunk that ran."""
    start = 0
    while start < n_items:
        result, n = with_backoff(lambda m: fn(start, m), min(size, n_items - start), where)
        yield start, n, result
        size = n
        start += n


# Config settings that bound each stage's memory, for the out-of-memory message.
MEMORY_SETTINGS = {
    "select": "select.batch_size (or set it to auto)", "stats": "stats.batch_size (or auto) or stats.max_len",
    "edit": "the edit regime (edit.regime: sequential with a smaller edit.batch_size) or select.n_edit",
    "finetune": "tasks.<task>.params.micro_batch_size (a number, or auto: the optimiser batch is kept), "
                "seq_len, or a LoRA method",
    "evaluate": "evaluate.batch_size (or set it to auto)",
}


def out_of_memory_message(stage: str, device: str, e: BaseException) -> str:
    """What to lower (or where to run) when ``stage`` ran out of memory on ``device``."""
    setting = MEMORY_SETTINGS.get(stage, "the stage's batch size")
    more = ("or run on a larger GPU / set device: cpu" if str(device).startswith(("cuda", "auto"))
            else "or run on a machine with more memory (device: cuda or auto uses a GPU)")
    return (f"{stage}: out of memory on device {device!r} ({type(e).__name__}: {str(e)[:200]}). "
            f"Lower {setting} in the study config, {more}.")
