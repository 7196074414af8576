"""The processes of one fine-tuning job: one (``Solo``, today's path) or N (``Ranks``, HF accelerate).

``finetune.finetune`` talks to its processes only through the methods below, so the training
loop is one piece of code whatever the launch::

    ranks = make_ranks(device)          # Solo unless WORLD_SIZE > 1 (torchrun / accelerate launch)
    net = ranks.wrap(net)               # FSDP: the blocks and the root sharded in place (others: as is)
    net, opt = ranks.prepare(net, opt, grad_clip)  # DDP through accelerate; DeepSpeed: its engine
    rows = ranks.shard(idx)             # this rank's batch_size / N rows of the global batch
    ranks.backward(loss, last)          # gradients: the sum over ranks (DDP's mean times N)
    ranks.step(opt, params, max_norm)   # clip to max_norm, then one optimiser step
    score = ranks.on_main(fn)           # fn on rank 0 only, the others wait; all get its result
    score = ranks.score(net, fn)        # fn(the whole model) on rank 0 (FSDP: gathered first)
    final = ranks.full(net)             # the whole model on rank 0 (collective under FSDP)

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

Strategies (``launch.strategy``, read here from ``EDIT_RETENTION_STRATEGY``, which the
launch command sets): ``ddp`` (default; HF accelerate's ``prepare``: every rank holds the
whole model, gradients all-reduced), ``fsdp`` (``Sharded``: PyTorch's FSDP2
``fully_shard`` on every transformer block and on the root, so each rank holds 1/N of the
weights, gradients and AdamW moments; full fine-tuning only) and ``deepspeed``
(``Zero``: DeepSpeed ZeRO stage 3 through ``deepspeed.initialize``, the sharding the
reference study fine-tuned with; the same 1/N of weights, gradients and optimiser state,
our AdamW as its client optimiser, gradient clipping in its config; full fine-tuning only;
an optional install, ``requirements-deepspeed.txt``). FSDP goes through
``torch.distributed.fsdp`` directly, not accelerate: accelerate 1.15 turns a CPU-only run
into ``MULTI_CPU`` data parallelism and ignores its FSDP plugin, so its FSDP path could not
run, or be tested, without GPUs; ``fully_shard`` is the same FSDP2 its ``fsdp_version: 2``
calls. Under FSDP, scoring and saving read a whole copy of the model that rank 0 keeps
(made before sharding; its weights gathered from the shards with
``get_model_state_dict(full_state_dict=True)`` each time it is read): one extra model's
weights on rank 0, not its training state (README "Multi-process fine-tuning").

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


STRATEGIES = ("ddp", "fsdp", "deepspeed")
STRATEGY_ENV = "EDIT_RETENTION_STRATEGY"
DEEPSPEED_HINT = ("it is an optional install: pip install --no-build-isolation -r requirements-deepspeed.txt, "
                  "or put the .deepspeed folder that scripts/setup.sh fills on PYTHONPATH")


class Solo:
    """One process: every method leaves today's computation unchanged."""
    n, rank, main, strategy = 1, 0, True, "ddp"

    def device(self, requested):
        return requested

    def wrap(self, net):
        return net

    def prepare(self, net, opt, grad_clip: float = 0.0):
        return net, opt

    def full(self, net):
        """The whole model as rank 0 reads it (None on the other ranks under FSDP)."""
        return self.unwrap(net)

    def score(self, net, fn):
        """``fn(the whole model)`` on rank 0; every rank gets its result."""
        whole = self.full(net)
        return self.on_main(lambda: fn(whole))

    def unwrap(self, net):
        return net

    def shard(self, idx):
        return idx

    def backward(self, loss, last: bool = True) -> None:
        """Gradients of ``loss`` added to the step's; ``last``: the step's last pass."""
        loss.backward()

    def step(self, opt, params, max_norm: float) -> None:
        """Clip the step's gradients to ``max_norm`` (whole model), then one optimiser step."""
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        opt.step()

    def local_numel(self, params) -> int:
        """Values of ``params`` this process holds (its shards under FSDP / ZeRO-3)."""
        return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in params)

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

    def prepare(self, net, opt, grad_clip: float = 0.0):
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

    def backward(self, loss, last: bool = True) -> None:
        self.acc.backward(loss * self.n)     # DDP averages over ranks; the batch's gradient is their sum

    def step(self, opt, params, max_norm: float) -> None:
        self.acc.clip_grad_norm_(params, max_norm)
        opt.step()

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


class Sharded(Ranks):
    """N processes, FSDP2: each holds 1/N of every block's (and the root's) weights, gradients
    and optimiser state; rank 0 keeps a whole copy that ``full`` fills from the shards."""
    strategy = "fsdp"

    def __init__(self, cpu: bool):
        super().__init__(cpu)
        self.whole = None

    def _keep_whole(self, net) -> None:
        """Refuse adapters (small: DDP is the strategy for them); rank 0 copies the model
        before it is sharded, for scoring and saving."""
        import copy

        if hasattr(net, "peft_config"):
            from .io import InputError
            raise InputError(f"finetune: launch.strategy {self.strategy} shards full fine-tuning; a LoRA/DoRA "
                             "remedy's adapters are small, fine-tune it with strategy ddp")
        if self.main:
            self.whole = copy.deepcopy(net).eval()

    def wrap(self, net):
        from torch.distributed.fsdp import FSDPModule, fully_shard

        from .models import arch_of, get_module

        if isinstance(net, FSDPModule):
            return net
        self._keep_whole(net)
        for block in get_module(net, arch_of(net).layers):
            fully_shard(block)
        fully_shard(net)
        return net

    def prepare(self, net, opt, grad_clip: float = 0.0):
        return net, opt

    def unwrap(self, net):
        return net

    def backward(self, loss, last: bool = True) -> None:
        (loss * self.n).backward()     # FSDP averages the gradients over ranks, as DDP does

    step = Solo.step     # clip_grad_norm_ over the shards takes the whole model's norm

    def full(self, net):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.main:
            return None
        with torch.no_grad():
            self.whole.load_state_dict(state)
        return self.whole


class Zero(Sharded):
    """N processes, DeepSpeed ZeRO stage 3: ``deepspeed.initialize`` partitions every weight,
    gradient and AdamW moment over the ranks (our fused/unfused AdamW as its client
    optimiser, so the update rule is the one the other strategies use); clipping to the
    whole model's norm is its ``gradient_clipping``. A step's micro-batches accumulate in
    its partitions (``set_gradient_accumulation_boundary``), then ``engine.step()`` clips
    and updates. Rank 0 keeps a whole copy, filled from the gathered partitions."""
    strategy = "deepspeed"

    def __init__(self, cpu: bool):
        if cpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")   # DeepSpeed's CPU backend (gloo without oneCCL)
        try:
            import deepspeed  # noqa: F401
        except ImportError as err:
            from .io import InputError
            raise InputError(f"finetune: launch.strategy deepspeed needs DeepSpeed: {DEEPSPEED_HINT}") from err
        super().__init__(cpu)
        self.engine = None

    def wrap(self, net):
        if self.engine is None:
            self._keep_whole(net)
        return net

    def prepare(self, net, opt, grad_clip: float = 0.0):
        import deepspeed

        config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                  "zero_optimization": {"stage": 3}, "zero_allow_untested_optimizer": True,
                  "gradient_clipping": float(grad_clip), "steps_per_print": 2 ** 31 - 1, "wall_clock_breakdown": False}
        self.engine, _, _, _ = deepspeed.initialize(model=net, optimizer=opt, config=config)
        return self.engine, opt     # the scheduler keeps driving opt's param groups, which ZeRO steps

    def unwrap(self, net):
        return getattr(net, "module", net)

    def backward(self, loss, last: bool = True) -> None:
        self.engine.set_gradient_accumulation_boundary(last)
        # ZeRO averages over ranks (times N: their sum); the losses are weighted already (no 1/gas)
        self.engine.backward(loss * self.n, scale_wrt_gas=False)

    def step(self, opt, params, max_norm: float) -> None:
        self.engine.step()

    def local_numel(self, params) -> int:
        return sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)

    def full(self, net):
        import deepspeed

        module = self.unwrap(net)
        named = list(module.named_parameters())
        state = None
        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            if self.main:
                state = {name: p.detach().to("cpu", copy=True) for name, p in named}
        if not self.main:
            return None
        with torch.no_grad():
            for name, p in self.whole.named_parameters():
                p.copy_(state[name])
        return self.whole


def strategy_of_env() -> str:
    """The strategy the launch named (``EDIT_RETENTION_STRATEGY``; default ddp)."""
    name = os.environ.get(STRATEGY_ENV, "ddp") or "ddp"
    if name not in STRATEGIES:
        from .io import InputError
        raise InputError(f"{STRATEGY_ENV}={name!r}: unknown strategy (known: {', '.join(STRATEGIES)})")
    return name


def make_ranks(device: str) -> Solo:
    """``Solo`` for one process (no accelerate, no process group), else ``Ranks`` (DDP),
    ``Sharded`` (FSDP) or ``Zero`` (DeepSpeed), as ``EDIT_RETENTION_STRATEGY`` says."""
    if world_size() <= 1:
        return Solo()
    kind = {"ddp": Ranks, "fsdp": Sharded, "deepspeed": Zero}[strategy_of_env()]
    return kind(cpu=str(device) == "cpu")
