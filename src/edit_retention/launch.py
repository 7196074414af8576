"""The study's ``launch:`` setting: how the finetune rule starts ``python -m edit_retention finetune``.

    launch: {processes: 1}                          python -m edit_retention finetune ...   (default)
    launch: {processes: 2}                          torchrun --standalone --nproc_per_node 2 -m edit_retention finetune ...
    launch: {processes: 4, launcher: accelerate}    accelerate launch --multi_gpu --num_processes 4 ... -m edit_retention finetune ...
    launch: {processes: 8, strategy: fsdp}          env EDIT_RETENTION_STRATEGY=fsdp torchrun ... (ranks.Sharded)
    launch: {processes: 8, strategy: deepspeed}     env EDIT_RETENTION_STRATEGY=deepspeed torchrun ... (ranks.Zero)

With more than one process the stage trains data-parallel (``ranks.py``). torchrun works on
CPU (gloo) and GPUs (NCCL) and picks a free port per job, so several jobs can share a
machine; ``accelerate launch`` is for GPUs and uses accelerate's port (29500 unless
``accelerate config`` sets another), so run one such job per machine at a time.
"""
from __future__ import annotations

import importlib.util

from .editors.regimes import PER_GROUP
from .finetune import FinetuneArgs
from .io import InputError
from .ranks import DEEPSPEED_HINT, STRATEGY_ENV


def launch_command(launch: dict) -> str:
    """The program (and its options) that the finetune rule puts before ``finetune ...``."""
    n = int(launch.get("processes", 1))
    if n == 1:
        return "python -m edit_retention"
    strategy = launch.get("strategy", "ddp")
    env = f"env {STRATEGY_ENV}={strategy} " if strategy != "ddp" else ""
    if launch.get("launcher", "torchrun") == "accelerate":
        return (f"{env}accelerate launch --multi_gpu --num_processes {n} --num_machines 1 --mixed_precision no"
                f" --dynamo_backend no -m edit_retention")
    return f"{env}torchrun --standalone --nproc_per_node {n} -m edit_retention"


def check_launch(config: dict, tasks, where: str) -> None:
    """With N processes every grid task's batch splits evenly and the edit regime fine-tunes
    one model per job."""
    n = config.get("launch", {}).get("processes", 1)
    strategy = config.get("launch", {}).get("strategy", "ddp")
    if strategy in ("fsdp", "deepspeed"):
        if n == 1:
            raise InputError(f"{where}: launch.strategy {strategy} shards over processes; set launch.processes > 1 "
                             "(or strategy ddp)")
        for name in config.get("grid", {}).get("remedies", []):
            method = config["remedies"][name].get("method", "full")
            kind = method.get("type") if isinstance(method, dict) else method
            if str(kind).lower() != "full":
                raise InputError(f"{where}: launch.strategy {strategy} shards full fine-tuning, but remedy {name!r} "
                                 f"uses {kind}; its adapters are small: use strategy ddp")
        if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
            raise InputError(f"{where}: launch.strategy deepspeed needs DeepSpeed, which is not installed here; "
                             f"{DEEPSPEED_HINT} (or use strategy fsdp)")
    if n == 1:
        return
    regime = config["edit"]["regime"]
    if regime in PER_GROUP:   # one fine-tune per fact / group inside one job
        raise InputError(f"{where}: {n} processes, but edit.regime {regime} fine-tunes one model per fact or "
                         "group inside one job; use processes 1")
    for name in tasks:
        size = FinetuneArgs.from_dict(config["tasks"][name].get("params", {})).batch_size
        if size % n:
            raise InputError(f"{where}: {n} processes, but tasks.{name}.params.batch_size {size} does not "
                             f"split evenly over them (each rank takes batch_size / processes rows)")
