"""FT-L and FT (ROME paper baselines): fine-tuning of MLP output projections, batch mode.

Adam on the MLP output projection weight(s) of ``layers``; loss = mean over rows of the
mean-token NLL of target_new (rows: each request's prompt and its aug prompts, all
requests jointly in one right-padded batch; ``precision: bf16`` runs the forward and
backward under bfloat16 autocast). FT-L (``ft_l``): after every step W is
clamped to [W0 - norm_constraint, W0 + norm_constraint] elementwise
(||W - W0||_inf <= eps). FT (``ft``): the same code with ``norm_constraint: null`` by
default, i.e. unconstrained (a number there turns the clamp back on). Stops early once,
for every request, the first target token is the argmax after its prompt.
The weights are restored exactly (from a copy) before returning; the edit is the delta.

Usage::

    from edit_retention.editors import get_editor, make_hparams
    result = get_editor("ft_l").edit(model, tok, requests, make_hparams("ft_l", {"layers": [5]}))
    result = get_editor("ft").edit(model, tok, requests, make_hparams("ft", {"layers": [5]}))
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from ..io import InputError
from ..models import arch_of, autocast, check_layers, check_precision, get_module, mlp_out_name
from .base import (EditError, EditResult, begin_edit, encode_row, frozen_eval, length_buckets, pad_rows,
                   row_target_logprob)


# What one more forward/backward pass costs, in tokens (``length_buckets``).
PASS_TOKENS = 48


@dataclass
class FtLHparams:
    """FT-L hyperparameters, measured on SmolLM2-135M (benchmarks/bench_editors.py, 16 facts,
    layer 5). ROME's GPT-2 XL values (lr = eps = 5e-4) give ES 0/16 here: this model's
    down_proj weights are ~5x larger (mean |w| ~0.145), so eps = 2e-2 (~14% of mean |w|)
    with lr 5e-3 (ES 10/16, NS 7/8); lr 2e-2 reaches ES 14/16 at NS 6/8."""
    layers: list[int] = field(default_factory=lambda: [5], metadata={"help": "layers whose MLP output projection is trained"})
    steps: int = field(default=25, metadata={"help": "max Adam steps"})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate"})
    norm_constraint: float = field(default=2e-2, metadata={"help": "L-inf bound on W - W0 (clamped after each step)"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    stop_at_argmax: bool = field(default=True, metadata={"help": "stop once every target's first token is the argmax"})
    precision: str = field(default="fp32", metadata={"help": "forward/backward of the steps: 'fp32' or 'bf16' (autocast; the weights, Adam and the clamp stay float32)"})

    def validate(self) -> None:
        if not self.layers:
            raise InputError("ft_l hparams: key 'layers' must name at least one layer")
        if self.steps < 0 or self.lr <= 0 or self.norm_constraint <= 0:
            raise InputError(f"ft_l hparams: need steps >= 0, lr > 0, norm_constraint > 0 "
                             f"(got {self.steps}, {self.lr}, {self.norm_constraint})")
        check_precision(self.precision, "ft_l hparams")


@dataclass
class FtHparams:
    """FT (unconstrained) hyperparameters: FT-L's loop with no L-inf clamp by default.

    Defaults = FT-L's layer and lr on SmolLM2-135M, so that FT and FT-L differ only in the
    clamp (benchmarks/bench_editors.py --editors ft, 16 facts, layer 5: ES 14/16, PS 0.53,
    NS 8/8; ROME's GPT-2 XL lr 5e-4 gives ES 3/16 here, lr 2e-2 ES 16/16 at NS 7/8). ROME's
    FT set is layers [1], 25 steps, lr 5e-4, no constraint (hparams/ft/gpt2-xl.yaml)."""
    layers: list[int] = field(default_factory=lambda: [5], metadata={"help": "layers whose MLP output projection is trained"})
    steps: int = field(default=25, metadata={"help": "max Adam steps"})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate"})
    norm_constraint: float | None = field(default=None, metadata={"help": "L-inf bound on W - W0 (clamped after each step); null = unconstrained (FT)"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    stop_at_argmax: bool = field(default=True, metadata={"help": "stop once every target's first token is the argmax"})
    precision: str = field(default="fp32", metadata={"help": "forward/backward of the steps: 'fp32' or 'bf16' (autocast; the weights, Adam and the clamp stay float32)"})

    def validate(self) -> None:
        if not self.layers:
            raise InputError("ft hparams: key 'layers' must name at least one layer")
        if self.steps < 0 or self.lr <= 0 or (self.norm_constraint is not None and self.norm_constraint <= 0):
            raise InputError(f"ft hparams: need steps >= 0, lr > 0, norm_constraint > 0 or null "
                             f"(got {self.steps}, {self.lr}, {self.norm_constraint})")
        check_precision(self.precision, "ft hparams")


def finetune_edit(editor, model, tok, requests: list[dict], hp) -> EditResult:
    """The shared FT / FT-L loop (module docstring); ``hp.norm_constraint`` None = no clamp."""
    t0, hp, requests = begin_edit(editor, hp, requests)
    name = editor.name
    layers = sorted(set(check_layers(model, hp.layers, f"{name} hparams 'layers'")))
    eps = hp.norm_constraint
    device = next(model.parameters()).device
    rows = [encode_row(tok, t, r["subject"], r["target_new"], i)
            for i, r in enumerate(requests) for t in [r["prompt"]] + r["aug_prompts"]]
    main = [next(j for j, row in enumerate(rows) if row.req == i) for i in range(len(requests))]
    # Rows padded in groups of similar length (``length_buckets``); the loss is the same
    # mean over all rows, its gradient summed over the groups.
    batches = []
    for b in length_buckets([len(r.ids) for r in rows], PASS_TOKENS):
        at = {j: n for n, j in enumerate(b)}
        mains = [(i, at[j]) for i, j in enumerate(main) if j in at]
        batches.append((torch.tensor(b, device=device), *pad_rows([rows[j] for j in b], tok.pad_token_id, device),
                        [rows[j] for j in b], mains))
    names = [mlp_out_name(model, l) for l in layers]
    params = [get_module(model, arch_of(model).mlp_out.format(l)).weight for l in layers]
    originals = [p.detach().clone() for p in params]
    base, head = model.base_model, model.get_output_embeddings()
    first = torch.tensor([rows[j].ids[rows[j].n_prompt] for j in main], device=device)
    steps, lp = 0, None
    try:
        with frozen_eval(model), torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
            for step in range(hp.steps + 1):
                lp = torch.zeros(len(rows), device=device)
                argmax_ok = torch.zeros(len(requests), dtype=torch.bool, device=device)
                loss = 0.0
                for idx, ids, mask, rows_b, mains in batches:
                    with autocast(hp.precision, device):
                        lp_b, hid = row_target_logprob(model, ids, mask, rows_b)
                    loss = loss - lp_b.sum() / len(rows)
                    lp[idx] = lp_b.detach()
                    if mains:
                        with torch.no_grad():
                            at = torch.tensor([n for _, n in mains], device=device)
                            pos = torch.tensor([rows_b[n].n_prompt - 1 for _, n in mains], device=device)
                            req = torch.tensor([i for i, _ in mains], device=device)
                            argmax_ok[req] = head(hid[at, pos].to(head.weight.dtype)).argmax(-1) == first[req]
                if not torch.isfinite(loss):
                    bad = [requests[r.req]["case_id"] for r, x in zip(rows, lp) if not torch.isfinite(x)]
                    raise EditError(f"{name}: non-finite loss at step {step} (case(s) {sorted(set(bad))})")
                if step == hp.steps or (hp.stop_at_argmax and bool(argmax_ok.all())):
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                if eps is not None:
                    with torch.no_grad():
                        for p, p0 in zip(params, originals):
                            p.copy_(torch.clamp(p, p0 - eps, p0 + eps))
            deltas = {n: (p.detach() - p0).to(torch.float32).contiguous()
                      for n, p, p0 in zip(names, params, originals)}
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, originals):
                p.copy_(p0)
    for n, d in deltas.items():
        if not torch.isfinite(d).all():
            raise EditError(f"{name}: the delta for {n} is not finite (cases {[r['case_id'] for r in requests]})")
    lp = lp.detach()
    cases = [{"case_id": r["case_id"], "p_target": float(torch.exp(lp[main[i]])),
              "nll": float(-lp[main[i]]), "first_token_argmax": bool(argmax_ok[i]), "steps": steps}
             for i, r in enumerate(requests)]
    return EditResult(
        deltas=deltas,
        log={"editor": name, "n_requests": len(requests), "edited_layers": layers,
             "edited_params": names, "cases": cases, "steps": steps,
             "seconds": time.perf_counter() - t0, "hparams": asdict(hp),
             "linf": max(float(d.abs().max()) for d in deltas.values()), "warnings": []},
    )


class FtLEditor:
    """Fine-tuning with an L-infinity constraint; see the module docstring."""
    name = "ft_l"
    hparams_cls = FtLHparams
    uses_stats = False  # trains the weights directly; no layer_stats needed

    def edit(self, model, tok, requests: list[dict], hp: FtLHparams | None = None,
             stats: dict[int, torch.Tensor] | None = None, state: dict | None = None) -> EditResult:
        return finetune_edit(self, model, tok, requests, hp)


class FtEditor:
    """Unconstrained fine-tuning (FT); see the module docstring."""
    name = "ft"
    hparams_cls = FtHparams
    uses_stats = False  # trains the weights directly; no layer_stats needed

    def edit(self, model, tok, requests: list[dict], hp: FtHparams | None = None,
             stats: dict[int, torch.Tensor] | None = None, state: dict | None = None) -> EditResult:
        return finetune_edit(self, model, tok, requests, hp)
