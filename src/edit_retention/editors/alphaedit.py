"""AlphaEdit (Fang et al. 2025, arXiv 2410.02355): MEMIT with null-space-projected updates.

Targets z, keys K and spread residuals R are MEMIT's (``memit.edit_layers``: the same z
optimisation at the last edited layer and the same layer loop). Only the update differs:

    P_l     = U0 U0^T, U0 = eigenvectors of C_l = E[k k^T] (the layer_stats file) with
              eigenvalue < ``nullspace_threshold``: an ABSOLUTE threshold on the normalised
              second moment, as AlphaEdit's released code (2e-2 for GPT-2 XL, GPT-J,
              Llama-3-8B). It depends on the scale of a model's keys: on SmolLM2-135M 2e-2
              keeps 1100-1400 of 1536 directions at layers 3-7, holding 29-55% of C's trace,
              so the default (the smollm2-135m set) is 1e-2 (700-1100 directions, 12-33%);
              the tiny random test model has its own value. log["layer_updates"] records
              each layer's null-space dimension.
    Delta_l = R^T K P (Kp^T Kp P + K^T K P + l2 I)^-1     (``memit_math.alphaedit_delta``)

so Delta_l k0 = 0 for every key k0 with P k0 = 0 (the preserved knowledge's dominant key
directions), and Kp, the keys of the edits of earlier sequential calls, are fitted jointly.

Sequential cache: the result's ``state`` is ``{"past_keys": {layer: K_all (m, d_in) float64,
CPU}, "n_past": m}``; pass it back as ``edit(..., state=...)`` for the next batch (the
regime runner does). stats are required (the projector comes from them).

Usage::

    from edit_retention.editors import get_editor, make_hparams
    alpha = get_editor("alphaedit")
    r1 = alpha.edit(model, tok, batch1, make_hparams("alphaedit", {"layers": [4, 5, 6]}), stats)
    r2 = alpha.edit(model_with_r1_applied, tok, batch2, hp, stats, state=r1.state)
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..io import InputError
from ..models import check_layers, mlp_out_weight
from .base import begin_edit
from .memit import TargetHparams, check_stats, edit_layers, make_result
from .memit_math import alphaedit_delta, nullspace_projector


@dataclass
class AlphaEditHparams(TargetHparams):
    """AlphaEdit hyperparameters: MEMIT's target optimisation and SmolLM2-135M layers (3-7),
    AlphaEdit's L2 = 10 (their released hparams for GPT-2 XL, GPT-J, Llama-3-8B) and a null-
    space threshold of 1e-2 instead of their 2e-2: on SmolLM2-135M (keys' mean eigenvalue
    ~0.02) 2e-2 leaves 29-55% of the preserved keys' energy inside the "null" space at layers
    3-7; 1e-2 (12-33%) still reaches ES 16/16, PS 11/16 with 30% less next-token drift on
    unrelated text; 5e-3 fails (ES 3/16) unless L2 is lowered, which then drifts 3x more.
    See hparams/alphaedit/smollm2-135m.yaml."""
    _editor: ClassVar[str] = "alphaedit"
    nullspace_threshold: float = field(default=1e-2, metadata={
        "help": "eigenvalues of C = E[k k^T] below this (absolute) span the null space the update is projected onto"})
    l2: float = field(default=10.0, metadata={"help": "AlphaEdit's L2: the ridge term l2 * I in the update's inverse"})

    def validate(self) -> None:
        super().validate()
        if not self.nullspace_threshold > 0:
            raise InputError(f"alphaedit hparams: key 'nullspace_threshold' must be > 0, got {self.nullspace_threshold}")
        if not self.l2 > 0:
            raise InputError(f"alphaedit hparams: key 'l2' must be > 0, got {self.l2}")


def past_keys(state: dict | None, model, layers: list[int]) -> dict[int, torch.Tensor | None]:
    """The sequential cache from a previous result's ``state``; InputError if it does not fit."""
    if not state:
        return {l: None for l in layers}
    if not isinstance(state, dict) or not isinstance(state.get("past_keys"), dict):
        raise InputError("alphaedit: state must be a previous AlphaEdit result's state "
                         "({'past_keys': {layer: keys}}), got keys "
                         f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
    pk = state["past_keys"]
    missing = [l for l in layers if l not in pk]
    if missing:
        raise InputError(f"alphaedit: state has past keys for layers {sorted(pk)} but not {missing}; "
                         "a sequential run must edit the same layers in every batch")
    out = {}
    for l in layers:
        K, d = pk[l], mlp_out_weight(model, l).shape[1]
        if not isinstance(K, torch.Tensor) or K.ndim != 2 or K.shape[1] != d:
            raise InputError(f"alphaedit: state past_keys[{l}] has shape {tuple(getattr(K, 'shape', ()))}, "
                             f"expected (m, {d})")
        out[l] = K.detach().to("cpu", torch.float64)
    return out


# id(statistics tensor as given) -> (a weak reference to it, {(threshold, device): (P, eigenvalues)}).
# The single, groups and sequential regimes call edit() once per fact / group / chunk with the
# same statistics; the projector depends only on them and the threshold, and its
# eigendecomposition (d_in x d_in, 1.4 s per layer for SmolLM2 here) cost as much as a fact's
# v* optimisation per call. Keyed by identity (tensors compare elementwise), dropped with the tensor.
_PROJECTORS: dict[int, tuple[weakref.ref, dict]] = {}


def cached_projector(source: torch.Tensor, C: torch.Tensor, threshold: float):
    """``nullspace_projector(C, threshold)`` once per statistics tensor ``source`` (the
    caller's object, of which C is the float64 copy on the model's device) and threshold."""
    key = id(source)
    entry = _PROJECTORS.get(key)
    if entry is None or entry[0]() is not source:
        entry = (weakref.ref(source, lambda _ref, k=key: _PROJECTORS.pop(k, None)), {})
        _PROJECTORS[key] = entry
    per = entry[1]
    which = (float(threshold), str(C.device))
    if which not in per:
        per[which] = nullspace_projector(C, threshold)
    return per[which]


class AlphaEditEditor:
    """Null-space constrained knowledge editing; see the module docstring."""
    name = "alphaedit"
    hparams_cls = AlphaEditHparams
    uses_stats = True  # the projector is built from layer_stats of every edited layer

    def edit(self, model, tok, requests: list[dict], hp: AlphaEditHparams | None = None,
             stats: dict[int, torch.Tensor] | None = None, state: dict | None = None):
        t0, hp, requests = begin_edit(self, hp, requests)
        layers = sorted(check_layers(model, hp.layers, "alphaedit hparams 'layers'"))
        if stats is None:
            raise InputError("alphaedit: second-moment statistics are required (the null-space projector "
                             "is built from them); run the layer_stats stage for layers "
                             f"{layers}")
        Cs = check_stats(self.name, model, stats, layers)
        past = past_keys(state, model, layers)
        projectors, null_dims, min_eig = {}, {}, {}
        for l in layers:
            P, evals = cached_projector(stats[l], Cs[l], hp.nullspace_threshold)
            null_dims[l] = int((evals < hp.nullspace_threshold).sum())
            min_eig[l] = float(evals.min())
            if null_dims[l] == 0:
                raise InputError(f"alphaedit: no eigenvalue of the statistics at layer {l} is below "
                                 f"nullspace_threshold {hp.nullspace_threshold:g} (smallest {min_eig[l]:.3g}, "
                                 f"largest {float(evals.max()):.3g}); the projector would be zero — raise the threshold")
            projectors[l] = P
        del Cs

        def update(l, K, R):
            Kp = past[l]
            return alphaedit_delta(K, R, projectors[l], None if Kp is None else Kp.to(K.device), hp.l2)

        deltas, keys, info, cases = edit_layers(self.name, model, tok, requests, hp, update)
        warnings: list[str] = []
        for row in info:
            row["nullspace_dim"] = null_dims[row["layer"]]
            row["past_edits"] = 0 if past[row["layer"]] is None else int(past[row["layer"]].shape[0])
        new_past = {l: torch.cat([k for k in (past[l], keys[l].detach().to("cpu", torch.float64))
                                  if k is not None]) for l in layers}
        n_past = int(next(iter(new_past.values())).shape[0])
        return make_result(self.name, hp, requests, layers, deltas, info, cases, t0, warnings,
                      state={"past_keys": new_past, "n_past": n_past}, n_past_edits=n_past - len(requests))
