"""MEND (Mitchell et al. 2022, arXiv 2110.11309): a trained hypernetwork turns the edit
gradient into a weight update, batch mode.

For a linear layer y = W x the gradient of the edit loss is a sum of rank-one terms
sum_t delta_t x_t^T (x_t: the layer's input at token t, delta_t: dL/dy_t). MEND never
forms it: each pair (x_t, delta_t) is normalised (running mean/std per hypernetwork,
estimated on the edit-training split), concatenated, and passed through a small residual
low-rank MLP (``GradTransform``: ``n_hidden`` + 1 ``LowRankResidual`` layers, identity at
initialisation; one shared MLP per weight shape, with a learned scale/shift per edited
weight, its "mode"), giving pseudo factors (x~, delta~). The update is
W' = W - alpha_w * sum_t delta~_t x~_t^T with a learned per-weight step alpha_w (a
descent step at initialisation; the reference code adds the update and lets the learned
alpha and MLP find the sign). Edited weights (``mlp_weights``): every Linear/Conv1D inside
the registry's MLP module of each of ``layers`` ("all", as in the paper: c_fc and c_proj
of GPT-2 XL's last 3 layers), or only the registry's MLP output projection ("out").

The edit loss is the sum over requests of the mean over the request's rows of the
mean-token NLL of target_new (rows: its prompt and its aug prompts). All requests go into
one forward/backward and one update; since each request's gradient factors are exactly
those of its single edit, a batch edit's update is the sum of the single edits' updates.
Summed edits can interfere (SmolLM2-135M, a hypernet trained with ``train_batch`` 1: 16
capitals edited one at a time ES 16/16, jointly ES 9/16): for the batch regime train with
``train_batch`` near the study's batch size, as the paper's batched MEND does. Tokens with
zero gradient (padding, after the last target token) are skipped. The model is only read:
factors are captured with hooks, the edit is returned as deltas. The hypernetwork comes
from ``hp.hypernet``, a folder written by ``editors.mend_train`` (``train_mend`` +
``save_hypernet``); the training fields of :class:`MendHparams` are read only there.

Usage::

    from edit_retention.editors import get_editor, make_hparams
    hp = make_hparams("mend", {"hypernet": "data/mend/smollm2-135m", "layers": [27, 28, 29]})
    result = get_editor("mend").edit(model, tok, requests, hp)
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..io import InputError
from ..models import arch_of, check_layers, get_module
from .mend_net import FORMAT, load_hypernet, net_from
from .base import EditError, EditResult, Row, begin_edit, encode_row, frozen_eval, pad_rows, row_target_logprob

MLP_WEIGHTS = ("all", "out")


@dataclass
class MendHparams:
    """MEND hyperparameters. Edit-time fields: hypernet, layers, mlp_weights (the last two
    must match the hypernetwork's). The rest shape and train the hypernetwork
    (``mend_train.train_mend``). Defaults = hparams/mend/smollm2-135m.yaml: the paper's /
    EasyEdit's MEND config (1 hidden layer, edit_lr 1e-4, c_edit 0.1, c_loc 1.0, batch 1
    with 10 accumulated, grad clip 100) with ``layers`` = SmolLM2-135M's last 3 of 30 and
    ``rank`` 576, ``lr_lr`` 1e-5, ``train_lr`` 1e-4, ``train_steps`` 60 for a short CPU
    run (the paper: rank 1920, lr_lr 1e-4, lr 1e-6 for up to 10k steps on a GPU); the
    measurements behind them are in that file."""
    hypernet: str = field(default="", metadata={"help": "folder written by mend_train.save_hypernet (edit time; required)"})
    layers: list[int] = field(default_factory=lambda: [27, 28, 29], metadata={"help": "layers whose MLP weights MEND edits"})
    mlp_weights: str = field(default="all", metadata={"help": "'all' Linear/Conv1D weights of each MLP (paper) or 'out' (the MLP output projection only)"})
    rank: int = field(default=576, metadata={"help": "rank of the hypernetwork's low-rank layers (training)"})
    n_hidden: int = field(default=1, metadata={"help": "hidden layers of the hypernetwork MLP (training)"})
    edit_lr: float = field(default=1e-4, metadata={"help": "initial per-weight edit step alpha (learned; training)"})
    lr_lr: float = field(default=1e-5, metadata={"help": "Adam learning rate of the edit steps alpha (training)"})
    train_lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the hypernetwork (training)"})
    train_steps: int = field(default=60, metadata={"help": "optimiser steps (training)"})
    train_batch: int = field(default=1, metadata={"help": "edits per MEND edit during training (training)"})
    accumulate: int = field(default=10, metadata={"help": "edits (batches) accumulated per optimiser step (training)"})
    c_edit: float = field(default=0.1, metadata={"help": "weight of the edit loss (training)"})
    c_loc: float = field(default=1.0, metadata={"help": "weight of the locality KL (training)"})
    grad_clip: float = field(default=100.0, metadata={"help": "gradient-norm clip of the hypernetwork (training)"})
    norm_batches: int = field(default=20, metadata={"help": "batches that initialise the normalisation statistics before training (training)"})

    def validate(self) -> None:
        if not self.layers:
            raise InputError("mend hparams: key 'layers' must name at least one layer")
        if self.mlp_weights not in MLP_WEIGHTS:
            raise InputError(f"mend hparams: key 'mlp_weights' must be 'all' or 'out', got {self.mlp_weights!r}")
        for key in ("rank", "n_hidden", "train_batch", "accumulate"):
            if getattr(self, key) < (0 if key == "n_hidden" else 1):
                raise InputError(f"mend hparams: key {key!r} must be >= {0 if key == 'n_hidden' else 1}, got {getattr(self, key)}")
        for key in ("train_steps", "norm_batches", "c_edit", "c_loc"):
            if getattr(self, key) < 0:
                raise InputError(f"mend hparams: key {key!r} must be >= 0, got {getattr(self, key)}")
        for key in ("edit_lr", "lr_lr", "train_lr", "grad_clip"):
            if not getattr(self, key) > 0:
                raise InputError(f"mend hparams: key {key!r} must be > 0, got {getattr(self, key)}")


# ---------------------------------------------------------------------------- edited weights
@dataclass(frozen=True)
class Target:
    """One edited weight: parameter name, module name, (d_in, d_out) of y = W x, and whether
    the parameter is stored (d_in, d_out) (GPT-2 Conv1D) rather than (d_out, d_in)."""
    param: str
    module: str
    d_in: int
    d_out: int
    transposed: bool


def _is_conv1d(mod) -> bool:
    from transformers.pytorch_utils import Conv1D
    return isinstance(mod, Conv1D)


def edit_targets(model, layers: list[int], mlp_weights: str) -> list[Target]:
    """The weights MEND edits, from the architecture registry (module docstring)."""
    arch = arch_of(model)
    out: list[Target] = []
    for l in sorted(set(check_layers(model, layers, "mend hparams 'layers'"))):
        out_name = arch.mlp_out.format(l)
        if mlp_weights == "out":
            names = [out_name]
        else:
            mlp = arch.mlp.format(l)
            names = [f"{mlp}.{n}" for n, m in get_module(model, mlp).named_modules()
                     if n and (isinstance(m, nn.Linear) or _is_conv1d(m))]
            if out_name not in names:
                raise InputError(f"mend: the MLP output projection {out_name} is not a Linear/Conv1D "
                                 f"inside {mlp}; check edit_retention.models.ARCHITECTURES")
        for name in names:
            mod = get_module(model, name)
            transposed = _is_conv1d(mod)
            if name == out_name and transposed != arch.out_transposed:
                raise InputError(f"mend: {name} orientation disagrees with the architecture registry")
            a, b = mod.weight.shape
            d_in, d_out = (a, b) if transposed else (b, a)
            out.append(Target(name + ".weight", name, d_in, d_out, transposed))
    return out


def net_key(t: Target) -> str:
    """Hypernetworks are shared between weights of one shape (the paper's ``shared``)."""
    return f"{t.d_in}x{t.d_out}"


def net_spec(model, targets: list[Target], rank: int, n_hidden: int, edit_lr: float) -> dict:
    """The architecture of a :class:`MendNet` for ``targets`` (JSON-serialisable)."""
    nets: dict[str, dict] = {}
    weights = []
    for t in targets:
        key = net_key(t)
        n = nets.setdefault(key, {"x_dim": t.d_in, "delta_dim": t.d_out, "n_modes": 0})
        weights.append({"param": t.param, "module": t.module, "d_in": t.d_in, "d_out": t.d_out,
                        "transposed": t.transposed, "net": key, "mode": n["n_modes"]})
        n["n_modes"] += 1
    return {"rank": rank, "n_hidden": n_hidden, "edit_lr": edit_lr, "nets": nets, "weights": weights}


# ---------------------------------------------------------------------------- model hooks
@contextlib.contextmanager
def _hooks(model, targets: list[Target], fn) -> Iterator[None]:
    handles = [get_module(model, t.module).register_forward_hook(fn(t)) for t in targets]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def updates_applied(model, targets: list[Target], updates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run the model as if W += update for each target (update (d_out, d_in)), without
    touching the weights: a forward hook adds x @ update^T (differentiable in update)."""
    def fn(t):
        def hook(_m, inputs, out):
            u = updates[t.param]
            return out + F.linear(inputs[0], u.to(inputs[0].dtype))
        return hook
    with _hooks(model, targets, fn):
        yield


def capture_factors(model, rows: list[Row], pad_id: int, targets: list[Target],
                    ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """One forward/backward of the edit loss, the sum over requests of the mean over each
    request's rows of the mean-token NLL: per target, (x, delta) of every token with
    non-zero gradient, float32, detached; and the rows' target log-probs. Summing over
    requests makes a joint edit's factors exactly those of the single edits (each row's
    forward pass is independent of the others), so with a token-wise hypernetwork a batch
    edit is the sum of the single edits' updates. Call inside ``frozen_eval``."""
    device = next(model.parameters()).device
    ids, mask = pad_rows(rows, pad_id, device)
    xs, zs = {}, {}

    def fn(t):
        def hook(_m, inputs, out):
            xs[t.param] = inputs[0].detach()
            zs[t.param] = torch.zeros_like(out, requires_grad=True)   # dL/dz = dL/dout = delta
            return out + zs[t.param]
        return hook
    with torch.enable_grad(), _hooks(model, targets, fn):
        lp, _ = row_target_logprob(model, ids, mask, rows)
        req = torch.tensor([r.req for r in rows], device=device)
        n_rows = torch.bincount(req)[req].to(lp.dtype)
        (-(lp / n_rows).sum()).backward()
    factors = {}
    for t in targets:
        x, d = xs[t.param], zs[t.param].grad
        keep = mask.bool() & (d != 0).any(-1) & (x != 0).any(-1)
        factors[t.param] = (x[keep].float(), d[keep].float())
    return factors, lp.detach()


def to_deltas(updates: dict[str, torch.Tensor], targets: list[Target]) -> dict[str, torch.Tensor]:
    """(d_out, d_in) updates as float32 deltas in each parameter's own layout."""
    return {t.param: (updates[t.param].T if t.transposed else updates[t.param]).detach()
            .to(torch.float32).contiguous() for t in targets}


def check_compatible(model, config: dict, hp: MendHparams, where: str) -> list[Target]:
    """The targets of ``hp`` on ``model``; InputError unless the hypernet was trained for them."""
    targets = edit_targets(model, hp.layers, hp.mlp_weights)
    if config.get("format") != FORMAT:
        raise InputError(f"{where}: not a MEND hypernetwork config (format {config.get('format')!r}, "
                         f"expected {FORMAT!r})")
    if config["model_type"] != model.config.model_type:
        raise InputError(f"{where}: trained for model type {config['model_type']!r}, "
                         f"the model is {model.config.model_type!r}")
    have = [(w["param"], w["d_in"], w["d_out"]) for w in config["net"]["weights"]]
    want = [(t.param, t.d_in, t.d_out) for t in targets]
    if have != want:
        raise InputError(f"{where}: trained for weights {[h[0] for h in have]} (layers {config['layers']}, "
                         f"mlp_weights {config['mlp_weights']!r}); mend hparams ask for {[w[0] for w in want]} "
                         "— set 'layers'/'mlp_weights' to match or retrain (train_mend)")
    return targets


def fingerprint(model, targets: list[Target]) -> dict[str, list[float]]:
    """(sum, norm) of each edited weight: which base weights a hypernet was trained on."""
    params = dict(model.named_parameters())
    return {t.param: [float(params[t.param].detach().double().sum()), float(params[t.param].detach().double().norm())]
            for t in targets}


def fingerprint_warnings(model, targets: list[Target], config: dict) -> list[str]:
    out = []
    for name, (s, n) in fingerprint(model, targets).items():
        s0, n0 = config.get("fingerprint", {}).get(name, (s, n))
        if abs(n - n0) > 1e-4 * max(abs(n0), 1e-12) or abs(s - s0) > 1e-4 * max(n0, 1e-12):
            out.append(f"mend: weight {name} differs from the one the hypernetwork was trained on "
                       f"(norm {n:.6g} vs {n0:.6g}); edits may be poorly scaled")
    return out


# ---------------------------------------------------------------------------- editor
class MendEditor:
    """MEND with a trained hypernetwork (``hp.hypernet``); see the module docstring."""
    name = "mend"
    hparams_cls = MendHparams
    uses_stats = False  # the hypernetwork carries its own normalisation statistics

    def edit(self, model, tok, requests: list[dict], hp: MendHparams | None = None,
             stats: dict[int, torch.Tensor] | None = None, state: dict | None = None) -> EditResult:
        t0, hp, requests = begin_edit(self, hp, requests)
        if not hp.hypernet:
            raise InputError("mend hparams: key 'hypernet' must name a folder written by train_mend "
                             "(the train_mend stage); it is empty")
        tensors, config = load_hypernet(hp.hypernet)
        targets = check_compatible(model, config, hp, f"mend hypernet {hp.hypernet}")
        warnings = fingerprint_warnings(model, targets, config)
        device = next(model.parameters()).device
        net = net_from(tensors, config, hp.hypernet).to(device).eval()
        rows = [encode_row(tok, t, r["subject"], r["target_new"], i)
                for i, r in enumerate(requests) for t in [r["prompt"]] + r["aug_prompts"]]
        main = [next(j for j, row in enumerate(rows) if row.req == i) for i in range(len(requests))]
        ids, mask = pad_rows(rows, tok.pad_token_id, device)
        with frozen_eval(model):
            factors, lp0 = capture_factors(model, rows, tok.pad_token_id, targets)
            bad = sorted({requests[r.req]["case_id"] for r, x in zip(rows, lp0) if not torch.isfinite(x)})
            if bad or not all(torch.isfinite(x).all() and torch.isfinite(d).all() for x, d in factors.values()):
                raise EditError(f"mend: non-finite edit loss or gradient (case(s) {bad or [r['case_id'] for r in requests]})")
            with torch.no_grad():
                updates = net(factors)
                deltas = to_deltas(updates, targets)
                for n, d in deltas.items():
                    if not torch.isfinite(d).all():
                        raise EditError(f"mend: the delta for {n} is not finite "
                                        f"(cases {[r['case_id'] for r in requests]})")
                with updates_applied(model, targets, updates):
                    lp1, _ = row_target_logprob(model, ids, mask, rows)
        cases = [{"case_id": r["case_id"], "p_target_before": float(torch.exp(lp0[main[i]])),
                  "p_target": float(torch.exp(lp1[main[i]])), "nll": float(-lp1[main[i]]),
                  "n_rows": 1 + len(r["aug_prompts"])} for i, r in enumerate(requests)]
        return EditResult(
            deltas=deltas,
            log={"editor": self.name, "n_requests": len(requests),
                 "edited_layers": sorted({int(l) for l in hp.layers}),
                 "edited_params": [t.param for t in targets], "cases": cases,
                 "n_tokens": int(next(iter(factors.values()))[0].shape[0]),
                 "edit_lrs": [float(x) for x in net.edit_lrs.detach().cpu()],
                 "hypernet": str(hp.hypernet), "hypernet_train": {k: config.get("train", {}).get(k)
                                                                  for k in ("steps", "seed", "n_train_requests")},
                 "seconds": time.perf_counter() - t0, "hparams": asdict(hp), "warnings": warnings},
        )
