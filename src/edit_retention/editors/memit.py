"""MEMIT (Meng et al. 2023, arXiv 2210.07229), batch mode: all requests into ``layers``.

1. Targets (``compute_targets``): z_i = h_i + delta_i, where h_i is the residual stream (the
   output of block L = the last edited layer) at the subject's last token of the request's
   unprefixed prompt, and delta_i is optimised exactly as ROME's v* (``rome.compute_values``
   with its prefixes, aug prompts, KL term, clamp, early stop) but added to layer L's MLP
   output, which is the same as adding it to block L's output at that position; the clamp
   and the weight decay are relative to ||h_i|| (MEMIT's ``target_init``), not ||W k*||.
2. For each layer l in ``layers`` ascending, with the updates of the earlier layers applied
   (temporarily, in place): keys K_l (``rome.compute_keys``: mean over the prefixes at the
   subject's last token), current hidden states H at layer L, residual
   R = (Z - H) / (number of layers left, l included), and the update
   Delta_l = R^T K (lam C_l + K^T K)^-1 (``memit_math.memit_delta``, float64) with
   lam = ``mom2_update_weight`` and C_l = E[k k^T] at l (the layer_stats file), as MEMIT
   (there C is the normalised second moment and lam 15000-20000 for GPT-J / GPT-2 XL).
   stats=None means C = I: allowed, logged in log["warnings"] and warned.
3. Every weight is restored from a saved copy before returning; the edit is the deltas.

Usage::

    from edit_retention.editors import get_editor, make_hparams
    memit = get_editor("memit")
    result = memit.edit(model, tok, requests, make_hparams("memit", {"layers": [4, 5, 6]}), stats)
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, ClassVar

import torch

from ..io import InputError
from ..models import arch_of, check_layers, mlp_out_name, mlp_out_weight
from . import rome
from .base import EditError, EditResult, apply_deltas, begin_edit, encode_row
from .capture import subject_activations
from .memit_math import memit_delta

log = logging.getLogger(__name__)


@dataclass
class TargetHparams(rome.ValueHparams):
    """What MEMIT and AlphaEdit share: the edited layers and the z (target) optimisation
    (ROME's v* optimisation at the last edited layer; ``rome.ValueHparams``)."""
    _editor: ClassVar[str] = "memit"
    layers: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7], metadata={
        "help": "layers whose MLP output projections are edited (the last one holds the target z)"})
    v_weight_decay: float = field(default=0.5, metadata={"help": "weight of ||delta|| / ||h||^2 (h = hidden state at the last edited layer)"})
    clamp_norm_factor: float = field(default=0.75, metadata={"help": "||delta|| <= this * ||h|| (MEMIT: 0.75)"})

    def validate(self) -> None:
        e = self._editor
        self.validate_value(e)
        if not isinstance(self.layers, (list, tuple)) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in self.layers):
            raise InputError(f"{e} hparams: key 'layers' must be a list of ints, got {self.layers!r}")
        if not self.layers:
            raise InputError(f"{e} hparams: key 'layers' must name at least one layer")
        if len(set(self.layers)) != len(self.layers):
            raise InputError(f"{e} hparams: key 'layers' repeats a layer: {self.layers}")


@dataclass
class MemitHparams(TargetHparams):
    """MEMIT hyperparameters. The z optimisation is MEMIT's GPT-J setting (25 steps, lr 0.5,
    clamp 0.75 x ||h||, weight decay 0.5, KL 0.0625, 5 prefixes); ``layers`` 3-7 and
    ``mom2_update_weight`` 3000 were chosen on SmolLM2-135M (16 capitals, 500-passage
    WikiText-2 statistics): every set of 5 consecutive layers from 2-6 to 5-9 reached ES 16/16
    at lam <= 3000, 3-7 with the best P(new) and PS 11/16; MEMIT's GPT-J lam 15000 gives
    ES 1/16 here (each layer delivers only ~9% of its residual), 6000 ES 8/16, 1000 the same
    ES/PS as 3000 at 2.5x the next-token drift on unrelated text.
    See hparams/memit/smollm2-135m.yaml."""
    _editor: ClassVar[str] = "memit"
    mom2_update_weight: float = field(default=3000.0, metadata={
        "help": "lam in Delta = R K^T (lam C + K K^T)^-1 with C = E[k k^T] (MEMIT: 15000 GPT-J, 20000 GPT-2 XL; "
            "larger = more conservative)"})

    def validate(self) -> None:
        super().validate()
        if not self.mom2_update_weight > 0:
            raise InputError(f"memit hparams: key 'mom2_update_weight' must be > 0, got {self.mom2_update_weight}")


def target_hparams(hp: TargetHparams, layer: int) -> rome.RomeHparams:
    """ROME hyperparameters that make rome.compute_keys / compute_values work at ``layer``."""
    return rome.RomeHparams(layer=layer, n_prefixes=hp.n_prefixes, v_steps=hp.v_steps, v_lr=hp.v_lr,
                            kl_weight=hp.kl_weight, kl_prompt=hp.kl_prompt, v_weight_decay=hp.v_weight_decay,
                            clamp_norm_factor=hp.clamp_norm_factor, stop_prob=hp.stop_prob, v_batch=hp.v_batch,
                            precision=hp.precision)


@torch.no_grad()
def subject_hidden(model, tok, requests: list[dict], layer: int) -> torch.Tensor:
    """Block ``layer``'s output (the residual stream) at the subject's last token of each
    request's unprefixed prompt, float64 (n, d_model)."""
    rows = [encode_row(tok, r["prompt"], r["subject"], None, i) for i, r in enumerate(requests)]
    return subject_activations(model, rows, tok.pad_token_id, f"{arch_of(model).layers}.{layer}", "output")


def compute_targets(model, tok, requests: list[dict], hp: TargetHparams) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """(Z, H0, cases): target hidden states z_i = h_i + delta_i at the last edited layer
    (float64, (n, d_model)), the unedited h_i, and per-case numbers from the optimisation."""
    last = max(hp.layers)
    rhp = target_hparams(hp, last)
    H0 = subject_hidden(model, tok, requests, last)
    K = rome.compute_keys(model, tok, requests, rhp)
    V, cases = rome.compute_values(model, tok, requests, rhp, K, ref_norm=H0.norm(dim=1))
    W = mlp_out_weight(model, last).detach().to(torch.float64)
    D = V - K.to(V.device) @ W.T                     # the optimised delta (V = W k + delta)
    for c, h in zip(cases, H0):
        c.pop("v_base_norm", None)
        c["h_norm"] = float(h.norm())
    return H0 + D.to(H0.device), H0, cases


def check_stats(editor: str, model, stats, layers: list[int]) -> dict[int, torch.Tensor]:
    """``{layer: C}`` in float64 on the model's device for every edited layer; InputError if
    a layer is missing, or C has the wrong shape or is not finite."""
    if not isinstance(stats, dict):
        raise InputError(f"{editor}: statistics must be a {{layer: C}} mapping, got {type(stats).__name__}")
    missing = [l for l in layers if l not in stats]
    if missing:
        raise InputError(f"{editor}: statistics have no layer(s) {missing} (present: {sorted(stats)}); "
                         "compute them for these layers with the layer_stats stage")
    out = {}
    for l in layers:
        W = mlp_out_weight(model, l)
        C = stats[l]
        if not isinstance(C, torch.Tensor) or tuple(C.shape) != (W.shape[1],) * 2:
            raise InputError(f"{editor}: statistics for layer {l} have shape "
                             f"{tuple(getattr(C, 'shape', ()))}, expected {(W.shape[1],) * 2}")
        C = C.to(W.device, torch.float64)
        if not torch.isfinite(C).all():
            raise InputError(f"{editor}: statistics for layer {l} contain NaN or inf")
        out[l] = C
    return out


LayerUpdate = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def edit_layers(name: str, model, tok, requests: list[dict], hp: TargetHparams,
                update: LayerUpdate) -> tuple[dict, dict[int, torch.Tensor], list[dict], list[dict]]:
    """The MEMIT loop shared with AlphaEdit. ``update(layer, K, R)`` returns the float64
    (d_out, d_in) update from keys K (n, d_in) and spread residuals R (n, d_out).

    Returns (deltas, {layer: K}, per-layer log, cases); the model is restored exactly."""
    layers = sorted(hp.layers)
    last = layers[-1]
    Z, H0, cases = compute_targets(model, tok, requests, hp)
    ids = [r["case_id"] for r in requests]
    bad = [c for c, z in zip(ids, Z) if not torch.isfinite(z).all()]
    if bad:
        raise EditError(f"{name}: target z is not finite for case(s) {bad}")
    names = {l: mlp_out_name(model, l) for l in layers}
    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in names.values()}
    transposed = arch_of(model).out_transposed
    deltas, keys, info = {}, {}, []
    try:
        for i, l in enumerate(layers):
            K = rome.compute_keys(model, tok, requests, target_hparams(hp, l))
            H = subject_hidden(model, tok, requests, last)
            bad = [c for c, k, h in zip(ids, K, H) if not (torch.isfinite(k).all() and torch.isfinite(h).all())]
            if bad:
                raise EditError(f"{name}: keys or hidden states at layer {l} are not finite for case(s) {bad}")
            R = (Z - H) / (len(layers) - i)
            upd = update(l, K, R)
            delta = (upd.T if transposed else upd).to(torch.float32).contiguous()
            if not (torch.isfinite(upd).all() and torch.isfinite(delta).all()):  # (float32 may overflow)
                bad = [c for c, k in zip(ids, K) if not torch.isfinite(upd @ k).all()] or ids
                raise EditError(f"{name}: the update of layer {l} is not finite (case(s) {bad})")
            deltas[names[l]] = delta
            keys[l] = K
            W = mlp_out_weight(model, l).detach().to(torch.float64)
            info.append({"layer": l, "z_error": float((Z - H).norm(dim=1).mean()),
                         "update_norm": float(upd.norm()), "weight_norm": float(W.norm()),
                         "key_norm": float(K.norm(dim=1).mean()),
                         "reached": float(((K @ upd.T) * R).sum() / (R * R).sum().clamp(min=1e-300))})
            apply_deltas(model, {names[l]: delta})       # later layers see this layer's edit
        H = subject_hidden(model, tok, requests, last)
        for c, z, h0, h in zip(cases, Z, H0, H):
            c["z_residual"] = float((z - h).norm() / (z - h0).norm().clamp(min=1e-300))
    finally:
        with torch.no_grad():
            for n, w in saved.items():
                params[n].copy_(w)
    return deltas, keys, info, cases


def make_result(name: str, hp, requests, layers, deltas, info, cases, t0, warnings, state=None, **extra) -> EditResult:
    """The EditResult with the shared log: per-case numbers (z optimisation: steps, p_target,
    delta_norm, h_norm, clamped, converged; z_residual = ||z - h_after|| / ||z - h_before||
    at the last layer) and per-layer ``layer_updates`` (z_error before the layer's update,
    update and weight norms, mean key norm, ``reached`` = share of the spread residual the
    update delivers at the batch's keys)."""
    return EditResult(
        deltas=deltas,
        log={"editor": name, "n_requests": len(requests), "edited_layers": layers,
             "edited_params": list(deltas), "cases": cases, "layer_updates": info,
             "seconds": time.perf_counter() - t0, "hparams": asdict(hp), "warnings": warnings, **extra},
        state=state or {})


class MemitEditor:
    """Mass-Editing Memory in a Transformer; see the module docstring."""
    name = "memit"
    hparams_cls = MemitHparams
    uses_stats = True  # needs layer_stats for every edited layer

    def edit(self, model, tok, requests: list[dict], hp: MemitHparams | None = None,
             stats: dict[int, torch.Tensor] | None = None, state: dict | None = None) -> EditResult:
        t0, hp, requests = begin_edit(self, hp, requests)
        layers = sorted(check_layers(model, hp.layers, "memit hparams 'layers'"))
        warnings: list[str] = []
        if stats is None:
            Cs = {l: None for l in layers}
            msg = ("memit: no second-moment statistics given (stats=None); using C = I, which "
                   "disturbs unrelated keys more than MEMIT's lam C + K K^T update")
            log.warning(msg)
            warnings.append(msg)
        else:
            Cs = check_stats(self.name, model, stats, layers)

        def update(l, K, R):
            return memit_delta(K, R, Cs[l], hp.mom2_update_weight)

        deltas, _keys, info, cases = edit_layers(self.name, model, tok, requests, hp, update)
        return make_result(self.name, hp, requests, layers, deltas, info, cases, t0, warnings,
                      identity_stats=stats is None)


__all__ = ["MemitEditor", "MemitHparams", "TargetHparams", "compute_targets", "edit_layers", "subject_hidden"]
