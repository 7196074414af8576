"""Downstream fine-tuning of a (possibly edited) model: the training loop, methods, freezing.

Usage (through the CLI)::

    python -m edit_retention finetune --model data/models/m/base --edit data/edits/... \
        --task-type math --train train.jsonl --eval eval.jsonl \
        --params '{"steps": 40, "lr": 5e-5, "checkpoint_every": 10}' \
        --method '{"type": "lora", "r": 8}' --freeze only_edited \
        --out-model DIR --out-metrics metrics.json --out-log log.json --out-steps STEPS_DIR

What is trained on comes from the task (``tasks/``: causal_lm, instruction, math,
classification, qa); this module is the loop around it.

Methods (``MethodSpec``): ``full`` (every unfrozen parameter), ``lora`` and ``dora`` (peft
adapters on ``target_modules``, default "all-linear"; each named module must exist in the
model). After training, adapters are merged into the weights (``merge_and_unload``), so
the fine-tuned model is a plain model folder that the evaluate stage loads like any other;
merging is exact up to float rounding and keeps one evaluation path for every method.

Freezing strategies (``resolve_freeze``; the edited layers come from the edit's own log,
never from the config):

    none          train everything the method trains
    edited        freeze the transformer blocks the editor touched
    non_edited    the same set, named as the follow-up paper does ("fine-tune only the
                  non-edited layers"): an explicit alias of ``edited``
    only_edited   train only the edited blocks (embeddings, final norm and head frozen too)
    above_edited  train only the blocks above the edit (the reference study's mechanism)
    below_edited  train only the blocks below it
    layers:A-B    freeze an explicit list of blocks, e.g. "layers:0-4" or "layers:0,2,7-9"
    train:A-B     train only one contiguous block range, e.g. "train:6-end" or "train:0-4"

With LoRA/DoRA, "frozen" means: no adapter in those blocks is trained.

Checkpoints: with ``checkpoint_every = N`` the caller's ``on_checkpoint(step, model)`` runs
after every N-th optimiser step before the last (the last is the "finetuned" phase), and
after each step listed in ``checkpoints`` (log-spaced doses: ``[10, 20, 40, 100, 200]``); the
CLI scores the facts there (``evaluate.score_items``) instead of saving weights.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, fields

import torch
from tqdm import tqdm

from .fields import typed_fields
from .io import InputError
from .memory import AUTO, auto_batch_size, parse_batch_size, sequence_bytes, train_state_bytes, with_backoff
from .models import arch_of, autocast, check_precision, layer_of_param
from .ranks import Solo, digest
from .tasks import get_task
from .tasks.encoding import IGNORE, trim

METHODS = ("full", "lora", "dora")


POSITIVE = ("steps", "lr", "batch_size", "seq_len")
# AdamW's fused kernel: the same update as the per-parameter loop, to float32 rounding
# (tests/test_finetune.py), in one pass over the weights: 0.11 s instead of 0.80 s per step
# for SmolLM2-135M's 135M parameters on one CPU thread (README "Distance from the floor").
FUSED_ADAM = True
SCHEDULES = ("linear", "constant")   # a 0 would fine-tune nothing or fail mid-run


@dataclass
class FinetuneArgs:
    steps: int = 40                # optimiser steps
    lr: float = 5e-5               # peak learning rate (AdamW)
    batch_size: int = 8            # blocks / examples per optimiser step
    micro_batch_size: int | str = 0  # per forward/backward: 0 = batch_size, N, or "auto" (memory.py)
    seq_len: int = 64              # tokens per block (causal_lm) / max tokens per example
    warmup_steps: int = 4          # linear warm-up (0: none), then the schedule below
    schedule: str = "linear"       # after warm-up: "linear" decay to 0 at the last step, or "constant"
    weight_decay: float = 0.0      # AdamW's decoupled weight decay (the reference study: 0.01)
    stop_eval_loss: float = 0.0    # stop training once the held-out loss is below this (0: never)
    eval_every: int = 0            # steps between the held-out losses the stop reads
    grad_clip: float = 1.0
    eval_blocks: int = 32          # held-out blocks for the causal_lm score (perplexity)
    eval_examples: int = 64        # held-out examples for the other tasks' scores
    max_new_tokens: int = 32       # greedy generation budget (math, qa)
    checkpoint_every: int = 0      # score the facts every N steps (0 = never)
    checkpoints: tuple = ()        # and after these steps (e.g. [10, 20, 40, 100, 200]: log-spaced)
    precision: str = "fp32"        # training forward/backward: "fp32" or "bf16" (models.autocast)

    @classmethod
    def from_dict(cls, d: dict, where: str = "finetune") -> "FinetuneArgs":
        micro = lambda v: parse_batch_size(v, f"{where}: key 'micro_batch_size'", zero_ok=True)  # noqa: E731
        steps = lambda v: _step_list(v, f"{where}: key 'checkpoints'")  # noqa: E731
        out = typed_fields(cls, d, where, parsers={"micro_batch_size": micro, "checkpoints": steps},
                           non_negative=True)
        check_precision(out.get("precision", "fp32"), where)
        for key in POSITIVE:   # 0 would "fine-tune" without changing anything (retention trivially 1)
            if key in out and not out[key] > 0:
                raise InputError(f"{where}: key {key!r} must be > 0, got {out[key]!r}")
        if out.get("schedule", "linear") not in SCHEDULES:
            raise InputError(f"{where}: key 'schedule' must be one of {', '.join(SCHEDULES)}, got {out['schedule']!r}")
        if out.get("stop_eval_loss", 0.0) > 0 and not out.get("eval_every", 0) > 0:
            raise InputError(f"{where}: key 'stop_eval_loss' needs 'eval_every' > 0 (steps between the held-out "
                             f"losses it reads), got eval_every {out.get('eval_every', 0)!r}")
        late = [c for c in out.get("checkpoints", ()) if c >= out.get("steps", cls.steps)]
        if late:
            raise InputError(f"{where}: key 'checkpoints' has step(s) {late} at or after the last step "
                             f"({out.get('steps', cls.steps)}): the last step is the 'finetuned' phase")
        return cls(**out)

    def checkpoint_steps(self) -> list[int]:
        """Steps after which facts are scored (never the last: that is the "finetuned" phase):
        every ``checkpoint_every``-th and each of ``checkpoints``."""
        n = self.checkpoint_every
        every = range(n, self.steps, n) if n > 0 else []
        return sorted(set(every) | {int(c) for c in self.checkpoints if c < self.steps})


def _step_list(value, where: str) -> tuple:
    """A list of positive step numbers (sorted, without repeats) or an error naming ``where``."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                       and v > 0 for v in value):
        raise InputError(f"{where} must be a list of steps > 0, got {value!r}")
    return tuple(sorted(set(value)))


@dataclass
class MethodSpec:
    type: str = "full"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"

    @classmethod
    def parse(cls, spec, where: str = "method") -> "MethodSpec":
        if spec is None:
            return cls()
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict):
            raise InputError(f"{where}: expected a method name or an object, got {spec!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
        m = cls(**spec)
        if m.type not in METHODS:
            raise InputError(f"{where}: unknown fine-tuning method {m.type!r} (known: {', '.join(METHODS)})")
        if not (isinstance(m.r, int) and m.r >= 1):
            raise InputError(f"{where}: 'r' must be an integer >= 1, got {m.r!r}")
        if isinstance(m.alpha, int) and not isinstance(m.alpha, bool):
            m.alpha = float(m.alpha)
        if not isinstance(m.alpha, float) or not isinstance(m.dropout, (int, float)) or not 0 <= m.dropout < 1:
            raise InputError(f"{where}: 'alpha' must be a number and 'dropout' in [0, 1)")
        if not (m.target_modules == "all-linear" or (isinstance(m.target_modules, list) and m.target_modules
                                                     and all(isinstance(t, str) for t in m.target_modules))):
            raise InputError(f"{where}: 'target_modules' must be \"all-linear\" or a non-empty list of module names")
        return m


def freeze_layers(model, layers: list[int], non_layer: bool = False) -> list[str]:
    """Set requires_grad=False on every parameter of the given blocks (and, with
    ``non_layer``, on every parameter outside the blocks); return their names."""
    frozen = []
    layers = set(layers)
    for name, p in model.named_parameters():
        layer = layer_of_param(model, name)
        if layer in layers or (non_layer and layer is None):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def check_target_modules(model, targets) -> None:
    """Every LoRA target name must be the last part of some linear module's name."""
    if targets == "all-linear":
        return
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"}
    for t in targets:
        if t not in names:
            raise InputError(f"method target_modules: the model has no linear module {t!r} "
                             f"(it has: {', '.join(sorted(names))})")


def _adapter_layer(model, name: str) -> int | None:
    m = re.search(re.escape(arch_of(model).layers) + r"\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def wrap_method(model, method: MethodSpec, frozen: list[int]):
    """(model to train, trainable parameter list, #frozen parameter tensors)."""
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, method.target_modules)
    cfg = LoraConfig(r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout,
                     target_modules=method.target_modules, use_dora=method.type == "dora",
                     task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    n_frozen = 0
    for name, p in peft_model.named_parameters():
        if p.requires_grad and _adapter_layer(model, name) in set(frozen):
            p.requires_grad_(False)
            n_frozen += 1
    return peft_model, n_frozen


def _schedule(args: FinetuneArgs):
    """The learning-rate factor of optimiser step ``s`` (0-based): linear warm-up over
    ``warmup_steps``, then linear decay to 0 at ``steps`` or constant."""
    if args.schedule == "constant":
        return lambda s: min((s + 1) / max(args.warmup_steps, 1), 1.0)
    return lambda s: min((s + 1) / max(args.warmup_steps, 1),
                         max(0.0, (args.steps - s) / max(args.steps - args.warmup_steps, 1)))


def resolve_micro_batch(net, train: dict, args: FinetuneArgs) -> int:
    """Examples per forward/backward pass: ``micro_batch_size`` (0 = the whole batch), or
    with "auto" the largest that fits the job's memory (memory.py) at the longest sequence."""
    m = args.micro_batch_size
    if m == AUTO:
        per_item = sequence_bytes(net.config, train["input_ids"].shape[1], train=True, precision=args.precision)
        return auto_batch_size(net, per_item, args.batch_size, where="finetune micro_batch_size",
                               fixed=train_state_bytes(net, args.precision))
    return min(m, args.batch_size) if m else args.batch_size


def _accumulate(net, train: dict, idx, micro: int, dev, precision: str, ranks=Solo()) -> tuple[float, int]:
    """Gradients of the batch ``idx``'s mean token loss, ``micro`` examples per pass:
    each pass's mean loss is weighted by its share of the batch's predicted tokens, so the
    summed gradients equal the whole batch's whatever ``micro`` is (up to float rounding).
    With N processes (``ranks``) each runs its slice of ``idx`` with the same global weights
    and the gradients are summed over ranks. Returns (batch loss, attention tokens)."""
    for p in net.parameters():
        p.grad = None
    n_pred = int((train["labels"][idx][:, 1:] != IGNORE).sum())
    total, n_tok = 0.0, 0
    mine = ranks.shard(idx)
    starts = range(0, len(mine), micro)
    for j in starts:
        mb = trim({k: v[mine[j: j + micro]].to(dev) for k, v in train.items()})
        share = int((mb["labels"][:, 1:] != IGNORE).sum())
        if share == 0 and ranks.n == 1:
            continue                          # N ranks: every rank runs every pass (its collectives)
        with autocast(precision, dev):
            out = net(**mb)
        loss = out.loss * (share / n_pred) if share else out.logits.sum() * 0.0   # one pass: a factor of exactly 1
        ranks.backward(loss, last=j == starts[-1])
        total += loss.item()
        n_tok += int(mb["attention_mask"].sum())
    return ranks.sum(total), ranks.sum(n_tok)


def _rng_state(dev):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None)


def _rng_restore(state, dev) -> None:
    """A step retried after an out-of-memory error draws the same dropout masks."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], dev)


def finetune(model, tok, train_data, eval_data, args: FinetuneArgs, seed: int,
             frozen_layers=(), progress: bool = True, *, task=None, method=None,
             freeze_non_layer: bool = False, on_checkpoint=None, ranks=None) -> dict:
    """Train ``model`` in place on a task; return a log with the task score before and after.

    ``train_data``/``eval_data`` are the task's examples (passages for causal_lm). With
    LoRA/DoRA the adapters are merged into ``model`` before returning, so ``model`` is a
    plain model with its weights updated whatever the method. ``ranks`` (``ranks.py``): the
    job's processes (default one); with N, each computes batch_size / N rows of every batch,
    and scoring and ``on_checkpoint`` run on rank 0 only.
    """
    arch_of(model)
    ranks = ranks or Solo()
    task = task or get_task("causal_lm")
    method = method if isinstance(method, MethodSpec) else MethodSpec.parse(method)
    torch.manual_seed(seed)
    train = task.train_tensors(tok, train_data, args)
    held = task.eval_data(tok, eval_data, args)
    n_train = len(train["input_ids"])
    if method.type == "full":
        frozen = freeze_layers(model, list(frozen_layers), freeze_non_layer)
        net, n_frozen = model, len(frozen)
    else:
        net, n_frozen = wrap_method(model, method, list(frozen_layers))
    net = ranks.wrap(net)   # FSDP: sharded in place, before the optimiser sees the parameters
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise InputError("finetune: nothing to train (every parameter is frozen)")
    n_trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, fused=FUSED_ADAM)
    net, opt = ranks.prepare(net, opt, args.grad_clip)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(args))
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    score_before = ranks.score(net, lambda m: task.score(m, tok, held, args))
    ckpts = set(args.checkpoint_steps())
    losses, t0, order, pos, tokens = [], time.time(), torch.randperm(n_train, generator=gen), 0, 0
    micro = ranks.smallest(min(resolve_micro_batch(ranks.unwrap(net), train, args), args.batch_size // ranks.n))
    if ranks.n > 1:
        ranks.check_same("the training data and batch order", digest(train["input_ids"], train["labels"], order))
    stopped_at, eval_losses = None, []
    net.train()
    try:
        for step in tqdm(range(args.steps), desc="finetune", mininterval=5, disable=not (progress and ranks.main)):
            if stopped_at is not None:   # stopped: later checkpoints score the stopped model
                if on_checkpoint is not None and step + 1 in ckpts:
                    net.eval()
                    ranks.score(net, lambda m: on_checkpoint(step + 1, m))
                    net.train()
                continue
            if pos + args.batch_size > len(order):
                order, pos = torch.randperm(n_train, generator=gen), 0
            idx = order[pos: pos + args.batch_size]
            pos += args.batch_size
            rng = _rng_state(dev)
            if ranks.n > 1:   # no per-rank backoff: the ranks' passes (and collectives) must match
                loss, n_tok = _accumulate(net, train, idx, micro, dev, args.precision, ranks)
            else:
                (loss, n_tok), micro = with_backoff(
                    lambda m: _accumulate(net, train, idx, m, dev, args.precision), micro,
                    where=f"finetune step {step}", on_retry=lambda m: _rng_restore(rng, dev))
            if not math.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged: loss is {loss} at step {step} "
                                         f"(task {task.type}, method {method.type}; lower lr?)")
            ranks.step(opt, params, args.grad_clip)
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss)
            tokens += n_tok
            if args.stop_eval_loss > 0 and (step + 1) % args.eval_every == 0:
                net.eval()
                held_loss = ranks.score(net, lambda m: task.score(m, tok, held, args)["eval_loss"])
                eval_losses.append((step + 1, held_loss))
                net.train()
                if eval_losses[-1][1] < args.stop_eval_loss:
                    stopped_at = step + 1
            if on_checkpoint is not None and step + 1 in ckpts:
                net.eval()
                ranks.score(net, lambda m: on_checkpoint(step + 1, m))
                net.train()
        train_seconds = time.time() - t0
    finally:
        if method.type != "full":
            merged = ranks.unwrap(net).merge_and_unload()
            assert merged is model, "peft merged into a new model object"
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
    score_after = ranks.score(model, lambda m: task.score(m, tok, held, args))
    out = {
        "args": asdict(args), "seed": seed, "task_type": task.type, "task_metric": task.metric,
        "task_higher_is_better": task.higher_is_better, "method": asdict(method),
        "frozen_layers": sorted(set(frozen_layers)), "freeze_non_layer": freeze_non_layer,
        "n_frozen_params": n_frozen, "n_trainable_params": n_trainable, "train_examples": n_train,
        "train_blocks": n_train, "train_loss": losses, "seconds": time.time() - t0,
        "train_seconds": train_seconds, "train_tokens": tokens, "checkpoint_steps": sorted(ckpts),
        "micro_batch_size": micro, "accumulation_steps": -(-(args.batch_size // ranks.n) // micro),
        "stopped_at_step": stopped_at, "stop_eval_losses": eval_losses,
    }
    if ranks.n > 1:   # a 1-process log stays as it was
        out["processes"], out["strategy"] = ranks.n, ranks.strategy
        # trainable values this rank holds (FSDP, ZeRO-3: its shards, about 1/N; DDP: all of them)
        out["trainable_params_per_rank"] = ranks.local_numel(params)
    for suffix, s in (("_before", score_before), ("", score_after)):
        out[f"eval_loss{suffix}"] = s["eval_loss"]
        out[f"eval_perplexity{suffix}"] = math.exp(s["eval_loss"]) if s["eval_loss"] < 700 else math.inf
        out[f"task_score{suffix}"] = s[task.metric] if task.metric in s else out[f"eval_perplexity{suffix}"]
        out[f"{task.metric}{suffix}"] = out[f"task_score{suffix}"]
    out["eval_samples"] = score_after["eval_samples"]
    return out


# Flat numbers written to the task-metrics JSON (the summary reads every numeric key).
def task_metrics(log: dict) -> dict:
    keys = ["eval_loss", "eval_perplexity", "eval_loss_before", "eval_perplexity_before",
            "task_score", "task_score_before", "eval_samples"]
    metric = log.get("task_metric")
    if metric and metric not in keys:
        keys += [metric, f"{metric}_before"]
    return {k: log[k] for k in keys if k in log}
