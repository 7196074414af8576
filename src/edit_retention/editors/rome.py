"""ROME (Meng et al. 2022, arXiv 2202.05262), batch mode: all requests into one model.

1. ``compute_keys``: k* = the MLP-output-projection input at the subject's last token,
   averaged over the prompt alone and behind ``n_prefixes`` fixed neutral sentence openers
   (``PREFIXES``; deterministic, unlike ROME's sampled ones).
2. ``compute_values``: one delta vector per request is added to the layer's MLP output at the
   subject's last token; all requests are optimised together in one right-padded forward
   pass per step (each request's rows see only its own delta). Loss per request =
   mean over its rows of the mean-token NLL of target_new (rows: every prefix x prompt, plus
   each aug prompt unprefixed) + kl_weight * KL(P_orig || P_edited) of the next token after
   ``kl_prompt`` + v_weight_decay * ||delta|| / ||W k*||^2. After each Adam step
   ||delta|| <= clamp_norm_factor * ||W k*||. A request stops (its delta frozen) once
   exp(-NLL) > stop_prob, i.e. the geometric-mean target-token probability over its rows.
   v* = W k* + delta, so the update adds exactly the optimised delta at k*.
3. Rank-one updates (``rome_math``) in float64 with u = C^-1 k*: ``update="sequential"``
   (ROME applied request after request, the default) or ``"joint"`` (all keys matched
   exactly). stats=None means C = I: allowed, logged in log["warnings"] and warned.

Usage::

    from edit_retention.editors import get_editor, make_hparams
    rome = get_editor("rome")
    result = rome.edit(model, tok, requests, make_hparams("rome", {"layer": 5}), stats)
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from ..io import InputError
from ..models import arch_of, autocast, check_layers, check_precision, get_module, mlp_out_name, mlp_out_weight
from .base import (EditError, EditResult, Row, begin_edit, encode_row, frozen_eval, pad_rows,
                   row_target_logprob)
from .capture import subject_activations
from .rome_math import joint_delta, sequential_delta

log = logging.getLogger(__name__)

PREFIXES = [
    "The following is true.", "Here is a short note.", "I read this yesterday.",
    "Let me tell you something.", "This is worth knowing.", "It was a quiet morning.",
    "Please read carefully.", "We talked about it.", "Some facts are simple.", "Write this down.",
]


@dataclass
class ValueHparams:
    """The v* (target value) optimisation that ROME, MEMIT and AlphaEdit share."""
    n_prefixes: int = field(default=5, metadata={"help": "fixed prefixes (from PREFIXES) added to the unprefixed prompt for k* and v*"})
    v_steps: int = field(default=25, metadata={"help": "max Adam steps for the value delta"})
    v_lr: float = field(default=0.5, metadata={"help": "Adam learning rate for the value delta"})
    kl_weight: float = field(default=0.0625, metadata={"help": "weight of KL(P_orig||P_edited) on kl_prompt"})
    kl_prompt: str = field(default="{} is a", metadata={"help": "essence-preserving prompt, '{}' = subject"})
    v_weight_decay: float = field(default=0.5, metadata={"help": "weight of ||delta|| / ||W k*||^2"})
    clamp_norm_factor: float = field(default=4.0, metadata={"help": "||delta|| <= this * ||W k*||"})
    stop_prob: float = field(default=0.9, metadata={"help": "a request stops once its geometric-mean target-token prob exceeds this"})
    v_batch: int = field(default=16, metadata={"help": "requests whose v* are optimised in one pass (0 = all); memory and speed only"})
    precision: str = field(default="fp32", metadata={"help": "forward/backward of the v* optimisation: 'fp32' or 'bf16' (autocast; keys, losses and the closed form stay float32/float64)"})

    def validate_value(self, editor: str) -> None:
        where = f"{editor} hparams"
        check_precision(self.precision, where)
        if not 0 <= self.n_prefixes <= len(PREFIXES):
            raise InputError(f"{where}: key 'n_prefixes' must be in 0..{len(PREFIXES)}, got {self.n_prefixes}")
        if self.v_batch < 0:
            raise InputError(f"{where}: key 'v_batch' must be >= 0 (0 = all), got {self.v_batch}")
        if self.v_steps < 0:
            raise InputError(f"{where}: key 'v_steps' must be >= 0, got {self.v_steps}")
        if self.v_lr <= 0:
            raise InputError(f"{where}: key 'v_lr' must be > 0, got {self.v_lr}")
        if self.kl_prompt.count("{}") != 1:
            raise InputError(f"{where}: key 'kl_prompt' must contain '{{}}' once, got {self.kl_prompt!r}")
        if self.clamp_norm_factor <= 0:
            raise InputError(f"{where}: key 'clamp_norm_factor' must be > 0, got {self.clamp_norm_factor}")


@dataclass
class RomeHparams(ValueHparams):
    """ROME hyperparameters; optimisation values are ROME's GPT-2 XL ones. ``layer`` = 5 was
    chosen on SmolLM2-135M (benchmarks/bench_editors.py, 16 facts): ES 16/16 at layers
    3-8 and 11/16 at 12; layer 5 had the best paraphrase success (PS 0.72) with NS 8/8.
    n_prefixes 10 cost 65% more time for the same ES/PS; update='joint' raised P(new) but
    lost one control fact (NS 7/8), so 'sequential' is the default."""
    layer: int = field(default=5, metadata={"help": "layer whose MLP output projection is edited"})
    update: str = field(default="sequential", metadata={"help": "'sequential' rank-one updates or 'joint' (all keys exact)"})
    mom2_adjustment: bool = field(default=True, metadata={
        "help": "use the layer statistics C (ROME's C^-1 k*); false: C = I (the reference study's Llama-3.1-8B set)"})

    def validate(self) -> None:
        self.validate_value("rome")
        if self.update not in ("sequential", "joint"):
            raise InputError(f"rome hparams: key 'update' must be 'sequential' or 'joint', got {self.update!r}")


def prefixes(hp: RomeHparams) -> list[str]:
    """The context prefixes: the empty one first, then ``n_prefixes`` fixed openers."""
    return [""] + PREFIXES[:hp.n_prefixes]


def compute_keys(model, tok, requests: list[dict], hp: RomeHparams) -> torch.Tensor:
    """k* per request, float64 (n, d_in): mean key at the subject's last token over prefixes."""
    rows = [encode_row(tok, r["prompt"], r["subject"], None, i, p)
            for i, r in enumerate(requests) for p in prefixes(hp)]
    keys = subject_activations(model, rows, tok.pad_token_id, arch_of(model).mlp_out.format(hp.layer), "input")
    req = torch.tensor([r.req for r in rows], device=keys.device)
    K = torch.zeros(len(requests), keys.shape[1], dtype=torch.float64, device=keys.device)
    K.index_add_(0, req, keys)
    return K / torch.bincount(req, minlength=len(requests))[:, None]


def _value_rows(tok, requests: list[dict], hp: RomeHparams) -> tuple[list[Row], list[Row]]:
    target_rows, kl_rows = [], []
    for i, r in enumerate(requests):
        for p in prefixes(hp):
            target_rows.append(encode_row(tok, r["prompt"], r["subject"], r["target_new"], i, p))
        for t in r["aug_prompts"]:
            target_rows.append(encode_row(tok, t, r["subject"], r["target_new"], i))
        kl_rows.append(encode_row(tok, hp.kl_prompt, r["subject"], None, i))
    return target_rows, kl_rows


def compute_values(model, tok, requests: list[dict], hp: RomeHparams,
                   keys: torch.Tensor, ref_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
    """v* per request, float64 (n, d_out), and per-case numbers, optimised ``hp.v_batch``
    requests at a time (0 = all at once). Requests never interact (each has its own delta,
    rows and Adam state), so the chunking changes only memory: activation memory grows with
    the rows in one pass (SmolLM2-135M, 48 facts: peak RSS 9.1 GB in one pass, 3.8 GB in
    passes of 16, the same 225 s on 2 threads)."""
    size = hp.v_batch or len(requests)
    parts = [_compute_values(model, tok, requests[i:i + size], hp, keys[i:i + size],
                             None if ref_norm is None else ref_norm[i:i + size])
             for i in range(0, len(requests), size)]
    return torch.cat([V for V, _ in parts]), [c for _, cases in parts for c in cases]


def _compute_values(model, tok, requests: list[dict], hp: RomeHparams,
                    keys: torch.Tensor, ref_norm: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
    """v* for one chunk of requests, optimised together in one padded batch per step.

    ``ref_norm`` (n,): the per-request norm that the clamp and the weight decay are relative
    to; None (ROME) means ||W k*||. MEMIT passes the residual-stream norm at the edited token
    (adding delta to the MLP output equals adding it to the block's residual output there)."""
    device = next(model.parameters()).device
    n = len(requests)
    W = mlp_out_weight(model, hp.layer).detach().to(torch.float64)
    v_base = keys.to(device) @ W.T                                   # W k*
    ref = v_base.norm(dim=1) if ref_norm is None else ref_norm.to(device, torch.float64)
    max_norm = hp.clamp_norm_factor * ref
    target_rows, kl_rows = _value_rows(tok, requests, hp)
    rows = target_rows + kl_rows
    n_t = len(target_rows)
    ids_all, mask_all = pad_rows(rows, tok.pad_token_id, device)
    req_all = torch.tensor([r.req for r in rows], device=device)
    subj_all = torch.tensor([r.subj for r in rows], device=device)
    kl_last = torch.tensor([r.n_prompt - 1 for r in kl_rows], device=device)
    head = model.get_output_embeddings()
    module = get_module(model, arch_of(model).mlp_out.format(hp.layer))
    deltas = [torch.zeros(W.shape[0], device=device, requires_grad=True) for _ in range(n)]
    opt = torch.optim.Adam(deltas, lr=hp.v_lr)
    state = {}

    def hook(_m, _inputs, out):
        sel = state["sel"]
        add = torch.zeros_like(out)
        add[torch.arange(len(sel), device=device), subj_all[sel]] = torch.stack(deltas)[req_all[sel]].to(out.dtype)
        return out + add

    active = list(range(n))
    cases = [{"case_id": r["case_id"], "steps": 0} for r in requests]
    kl_init = None
    handle = module.register_forward_hook(hook)
    try:
        with frozen_eval(model), torch.enable_grad():
            for step in range(hp.v_steps + 1):
                act = torch.tensor(active, device=device)
                sel_t = torch.nonzero(torch.isin(req_all[:n_t], act))[:, 0]
                sel = torch.cat([sel_t, n_t + act])
                state["sel"] = sel
                L = int(mask_all[sel].sum(1).max())
                sel_rows = [rows[i] for i in sel.tolist()]
                with autocast(hp.precision, device):
                    lp, hid = row_target_logprob(model, ids_all[sel, :L], mask_all[sel, :L], sel_rows)
                nk = len(active)
                kl_logp = torch.log_softmax(head(hid[torch.arange(len(sel_t), len(sel), device=device),
                                                     kl_last[act]]).float(), dim=-1)
                if kl_init is None:
                    kl_init = kl_logp.detach()                       # step 0: delta = 0
                req_t = req_all[sel_t]
                pos = {r: j for j, r in enumerate(active)}
                grp = torch.tensor([pos[int(r)] for r in req_t], device=device)
                nll = -torch.zeros(nk, device=device).index_add(0, grp, lp[:len(sel_t)]) / torch.bincount(grp, minlength=nk)
                kl = torch.nn.functional.kl_div(kl_logp, kl_init[act], log_target=True,
                                                reduction="none").sum(1)         # KL(P_orig || P_edited)
                dn = torch.stack([deltas[r].norm() for r in active])
                ref_act = v_base[act].norm(dim=1) if ref_norm is None else ref[act]
                wd = hp.v_weight_decay * dn / ref_act.float() ** 2
                loss = nll + hp.kl_weight * kl + wd
                bad = [requests[r]["case_id"] for j, r in enumerate(active) if not torch.isfinite(loss[j])]
                if bad:
                    raise EditError(f"rome: non-finite loss while optimising v* for case(s) {bad}")
                done = []
                for j, r in enumerate(active):
                    p_t = float(torch.exp(-nll[j].detach()))
                    cases[r].update(p_target=p_t, nll=float(nll[j].detach()), kl=float(kl[j].detach()))
                    if p_t > hp.stop_prob:
                        done.append(r)
                if step == hp.v_steps:
                    break
                keep = [j for j, r in enumerate(active) if r not in done]
                if not keep:
                    active = []
                    break
                opt.zero_grad(set_to_none=True)
                loss[keep].sum().backward()
                for r in done:
                    deltas[r].grad = None                            # frozen: Adam skips it
                opt.step()
                with torch.no_grad():
                    for r in active:
                        if r in done:
                            continue
                        cases[r]["steps"] += 1
                        nrm = deltas[r].norm()
                        if nrm > max_norm[r]:
                            deltas[r].mul_(float(max_norm[r] / nrm))
                active = [r for r in active if r not in done]
    finally:
        handle.remove()
    D = torch.stack([d.detach() for d in deltas]).to(torch.float64)
    V = v_base + D
    for i in range(n):
        cases[i].update(delta_norm=float(D[i].norm()), v_base_norm=float(v_base[i].norm()),
                        clamped=bool(D[i].norm() >= max_norm[i] * (1 - 1e-6)),
                        converged=cases[i].get("p_target", 0.0) > hp.stop_prob)
    return V, cases


class RomeEditor:
    """Rank-One Model Editing at one layer; see the module docstring."""
    name = "rome"
    hparams_cls = RomeHparams
    uses_stats = True  # needs layer_stats (second moments of the edited layer's keys)

    def edit(self, model, tok, requests: list[dict], hp: RomeHparams | None = None,
             stats: dict[int, torch.Tensor] | None = None, state: dict | None = None) -> EditResult:
        t0, hp, requests = begin_edit(self, hp, requests)
        (layer,) = check_layers(model, [hp.layer], "rome hparams 'layer'")
        warnings: list[str] = []
        W = mlp_out_weight(model, layer).detach()
        if not hp.mom2_adjustment:
            C = None   # chosen: the update direction is k* itself, no statistics read
        elif stats is None:
            C = None
            msg = ("rome: no second-moment statistics given (stats=None); using C = I, which "
                   "disturbs unrelated keys more than ROME's C^-1 k* update")
            log.warning(msg)
            warnings.append(msg)
        else:
            if layer not in stats:
                raise InputError(f"rome: statistics have no layer {layer} (present: {sorted(stats)}); "
                                 "compute them for this layer with the layer_stats stage")
            C = stats[layer].to(W.device, torch.float64)
            if tuple(C.shape) != (W.shape[1],) * 2:
                raise InputError(f"rome: statistics for layer {layer} have shape {tuple(C.shape)}, "
                                 f"expected {(W.shape[1],) * 2}")
        K = compute_keys(model, tok, requests, hp)
        V, cases = compute_values(model, tok, requests, hp, K)
        for what, X in (("k*", K), ("v*", V)):
            bad = [r["case_id"] for r, x in zip(requests, X) if not torch.isfinite(x).all()]
            if bad:
                raise EditError(f"rome: {what} is not finite for case(s) {bad}")
        upd = (sequential_delta if hp.update == "sequential" else joint_delta)(W, K, V, C)
        if not torch.isfinite(upd).all():
            bad = [r["case_id"] for r, k in zip(requests, K) if not torch.isfinite(upd @ k).all()]
            bad = bad or [r["case_id"] for r in requests]
            raise EditError(f"rome: the weight update is not finite (case(s) {bad})")
        delta = upd.T if arch_of(model).out_transposed else upd
        name = mlp_out_name(model, layer)
        Wn = W.to(torch.float64) + upd
        for i, c in enumerate(cases):
            c["key_residual"] = float((Wn @ K[i] - V[i]).norm() / V[i].norm())
        return EditResult(
            deltas={name: delta.to(torch.float32).contiguous()},
            log={"editor": self.name, "n_requests": len(requests), "edited_layers": [layer],
                 "edited_params": [name], "cases": cases, "seconds": time.perf_counter() - t0, "hparams": asdict(hp),
                 "identity_stats": C is None, "warnings": warnings},
        )
