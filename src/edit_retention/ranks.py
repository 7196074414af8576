"""The processes of one fine-tuning job: one (``Solo``, today's path) or N (``Ranks``, HF accelerate).

``finetune.finetune`` talks to its processes only through the methods below, so the training
loop is one piece of code whatever the launch::

    ranks = make_ranks(device)          # Solo unless WORLD_SIZE > 1 (torchrun / accelerate launch)
    net, opt = ranks.prepare(net, opt)  # DDP (or the strategy accelerate's environment names)
    rows = ranks.shard(idx)             # this rank's batch_size / N rows of the global batch
    ranks.backward(loss)                # gradients: the sum over ranks (DDP's mean times N)
    score = ranks.on_main(fn)           # fn on rank 0 only, the others wait; all get its result

With one process every method is the identity or a plain ``loss.backward()``, so a 1-process
run is byte-identical to the code before multi-process fine-tuning existed.

With N processes each rank loads the same model, reads the same data and draws the same batch
order from the same seed; ``check_same`` stops the run with a clear error when the ranks'
digests of their data and batch order differ. The global batch is cut into N contiguous
slices; each rank weights its token losses by the *global* batch's predicted-token count, so
after the all-reduce the gradient equals a 1-process run's on the same batch (up to float
rounding in the order of the sums). Scoring (before, checkpoints, after, the held-out loss that
may stop training) runs on rank 0 alone on the unwrapped model, which under DDP holds every
weight. Only rank 0 writes outputs (the finetune stage asks ``ranks.main``).

The launch (which program, how many processes) is the study's ``launch:`` setting
(``launch.py``).
"""
from __future__ import annotations

import hashlib
import os

import torch


def world_size() -> int:
    """Processes of this job, from the launcher's environment (torchrun, accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def digest(*tensors) -> str:
    """A short hash of tensors' values (the training data, the batch order)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Solo:
    """One process: every method leaves today's computation unchanged."""
    n, rank, main = 1, 0, True

    def device(self, requested):
        return requested

    def prepare(self, net, opt):
        return net, opt

    def unwrap(self, net):
        return net

    def shard(self, idx):
        return idx

    def backward(self, loss) -> None:
        loss.backward()

    def clip(self, params, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def sum(self, x):
        return x

    def smallest(self, x: int) -> int:
        return x

    def check_same(self, what: str, value: str) -> None:
        pass

    def on_main(self, fn):
        return fn()


class Ranks(Solo):
    """N processes under one ``accelerate.Accelerator`` (gloo on CPU, NCCL on GPUs)."""

    def __init__(self, cpu: bool):
        from accelerate import Accelerator

        self.acc = Accelerator(cpu=cpu)
        self.n, self.rank, self.main = self.acc.num_processes, self.acc.process_index, self.acc.is_main_process

    def device(self, requested):
        return self.acc.device

    def prepare(self, net, opt):
        return self.acc.prepare(net, opt)

    def unwrap(self, net):
        return self.acc.unwrap_model(net, keep_fp32_wrapper=False)

    def shard(self, idx):
        if len(idx) % self.n:
            from .io import InputError
            raise InputError(f"finetune: batch_size {len(idx)} does not split over {self.n} processes; "
                             f"make it a multiple of launch.processes")
        k = len(idx) // self.n
        return idx[self.rank * k: (self.rank + 1) * k]

    def backward(self, loss) -> None:
        self.acc.backward(loss * self.n)     # DDP averages over ranks; the batch's gradient is their sum

    def clip(self, params, max_norm: float) -> None:
        self.acc.clip_grad_norm_(params, max_norm)

    def _reduce(self, x, op):
        t = torch.tensor([x], dtype=torch.float64, device=self.acc.device)
        torch.distributed.all_reduce(t, op=op)
        return t.item()

    def sum(self, x):
        out = self._reduce(x, torch.distributed.ReduceOp.SUM)
        return int(out) if isinstance(x, int) else out

    def smallest(self, x: int) -> int:
        return int(self._reduce(x, torch.distributed.ReduceOp.MIN))

    def check_same(self, what: str, value: str) -> None:
        from accelerate.utils import gather_object

        seen = gather_object([value])
        if len(set(seen)) > 1:
            raise RuntimeError(f"finetune: the {self.n} processes disagree on {what} (per rank: {seen}); "
                               "every rank must read the same data with the same seed")

    def on_main(self, fn):
        from accelerate.utils import broadcast_object_list

        out = [fn() if self.main else None]
        self.acc.wait_for_everyone()
        broadcast_object_list(out, from_process=0)
        return out[0]


def make_ranks(device: str) -> Solo:
    """``Solo`` for one process (no accelerate, no process group), else ``Ranks``."""
    if world_size() <= 1:
        return Solo()
    return Ranks(cpu=str(device) == "cpu")
