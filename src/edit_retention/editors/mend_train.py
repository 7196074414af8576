"""Train MEND's hypernetwork on an edit-training split; save and load it.

One optimiser step = ``accumulate`` MEND edits of ``train_batch`` requests each (sampled
with a seeded RNG). Per edit (arXiv 2110.11309, Algorithm 1):
  1. the edit gradient's factors (x, delta) at every edited weight, from the edit prompt
     (detached; ``editors.mend.capture_factors``);
  2. the hypernetwork's update for them (differentiable in its parameters);
  3. L_edit = mean NLL of target_new on the prompt and each aug prompt (paraphrases)
     with the update applied; L_loc = KL(P_base || P_edited) over every token of the
     locality texts (the request's ``locality_prompts`` if it has any, else the filled
     prompts of other training requests outside the batch);
  4. loss = c_edit * L_edit + c_loc * L_loc, backpropagated into the hypernetwork and
     the per-weight edit steps (Adam, lr ``train_lr`` / ``lr_lr``, grad-norm clip).
The model itself is never changed (hooks only; it is bit-identical afterwards). The
normalisation statistics are first estimated on ``norm_batches`` batches, then updated
online during training (as MEND does), and frozen at edit time.

Scale: each edit costs about three forward passes of the model (the backward passes only
reach the edited layers, the last ones). The tiny test model trains in seconds; for
SmolLM2-135M on 2 CPU cores a step of 10 edits takes seconds (a few hundred steps: tens
of minutes); the paper-scale sets (hparams/mend/gpt2-xl.yaml ...) are GPU jobs.

Usage::

    from edit_retention.editors import make_hparams
    from edit_retention.editors.mend_train import train_mend
    from edit_retention.editors.mend_net import save_hypernet, load_hypernet
    hp = make_hparams("mend", {"layers": [27, 28, 29], "train_steps": 300})
    tensors, config = train_mend(model, tok, train_requests, hp, seed=0, val_requests=val)
    save_hypernet("data/mend/smollm2-135m/seed0", tensors, config)
    tensors, config = load_hypernet("data/mend/smollm2-135m/seed0")
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict

import torch

from ..io import InputError
from ..records import fill
from .base import EditError, encode_row, frozen_eval, pad_rows, row_target_logprob, validate_requests
from .mend import (MendHparams, Target, capture_factors, edit_targets, fingerprint, net_spec,
                   updates_applied)
from .mend_net import FORMAT, MendNet, net_from

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- one MEND edit
def _check_train_requests(requests: list[dict]) -> list[dict]:
    requests = validate_requests(requests, "train_mend")
    for r in requests:
        loc = r.get("locality_prompts", [])
        if not isinstance(loc, list) or not all(isinstance(t, str) and t.strip() for t in loc):
            raise InputError(f"train_mend: case_id {r['case_id']!r}: field 'locality_prompts' must be a "
                             "list of non-empty strings")
    return requests


def _loc_rows(tok, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [list(tok(t)["input_ids"]) for t in texts]
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def _loc_logp(model, ids, mask) -> torch.Tensor:
    """Next-token log-probs at every real token of the locality texts (n_tokens, vocab)."""
    h = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)[0]
    return torch.log_softmax(model.get_output_embeddings()(h[mask.bool()]).float(), dim=-1)


class _Sampler:
    """Seeded batches of training requests and their locality texts."""

    def __init__(self, requests: list[dict], batch: int, seed: int):
        self.requests, self.batch, self.rng = requests, batch, random.Random(seed)
        if len(requests) < batch:
            raise InputError(f"train_mend: {len(requests)} training request(s), fewer than train_batch {batch}")
        if len(requests) < batch + 1 and not all(r.get("locality_prompts") for r in requests):
            raise InputError("train_mend: locality texts come from requests outside the batch; give more "
                             "requests than train_batch, or 'locality_prompts' on each")

    def __call__(self) -> tuple[list[dict], list[str]]:
        idx = self.rng.sample(range(len(self.requests)), self.batch)
        batch = [self.requests[i] for i in idx]
        others = [i for i in range(len(self.requests)) if i not in idx]
        loc = []
        for r in batch:
            if r.get("locality_prompts"):
                loc.append(self.rng.choice(r["locality_prompts"]))
            else:
                o = self.requests[self.rng.choice(others)]
                loc.append(fill(o["prompt"], o["subject"]))
        return batch, loc


def _edit_rows(tok, batch: list[dict]):
    return [encode_row(tok, r["prompt"], r["subject"], r["target_new"], i) for i, r in enumerate(batch)]


def _outer_rows(tok, batch: list[dict], target: str = "target_new"):
    return [encode_row(tok, t, r["subject"], r[target], i)
            for i, r in enumerate(batch) for t in [r["prompt"]] + r["aug_prompts"]]


def _per_request(lp: torch.Tensor, rows, n: int) -> torch.Tensor:
    req = torch.tensor([r.req for r in rows], device=lp.device)
    s = torch.zeros(n, device=lp.device, dtype=lp.dtype).index_add(0, req, lp)
    return s / torch.bincount(req, minlength=n).to(lp.dtype)


def _mend_loss(model, tok, net: MendNet, targets: list[Target], batch: list[dict], loc: list[str],
               hp: MendHparams, update_stats: bool) -> tuple[torch.Tensor, float, float]:
    """c_edit * L_edit + c_loc * L_loc of one MEND edit (differentiable in ``net``)."""
    device = next(model.parameters()).device
    factors, _ = capture_factors(model, _edit_rows(tok, batch), tok.pad_token_id, targets)
    if update_stats:
        net.update_stats(factors)
    outer = _outer_rows(tok, batch)
    ids, mask = pad_rows(outer, tok.pad_token_id, device)
    lids, lmask = _loc_rows(tok, loc, device)
    with torch.no_grad():
        base = _loc_logp(model, lids, lmask)
    with torch.enable_grad():
        updates = net(factors)
        with updates_applied(model, targets, updates):
            lp, _ = row_target_logprob(model, ids, mask, outer)
            post = _loc_logp(model, lids, lmask)
        l_edit = -_per_request(lp, outer, len(batch)).mean()
        l_loc = (base.exp() * (base - post)).sum(-1).mean()
        loss = hp.c_edit * l_edit + hp.c_loc * l_loc
    if not torch.isfinite(loss):
        raise EditError(f"train_mend: non-finite loss (case(s) {[r['case_id'] for r in batch]})")
    return loss, float(l_edit.detach()), float(l_loc.detach())


@torch.no_grad()
def _evaluate(model, tok, net: MendNet, targets: list[Target], requests: list[dict], batch: int) -> dict:
    """Held-out edits of ``batch`` requests each: NLL / P(target_new) (mean over prompt and
    aug prompts, then requests) before and after the MEND update; ES after (edit prompt,
    logP(new) > logP(true)) where requests carry target_true; ``kl_loc``: KL(P_base ||
    P_edited) per token of one locality text per request (its first ``locality_prompts``
    entry, else the filled prompt of the request ``batch`` places further on)."""
    device = next(model.parameters()).device
    out = {"nll_before": 0.0, "nll_after": 0.0, "p_new_before": 0.0, "p_new_after": 0.0, "kl_loc": 0.0}
    n_es, es = 0, 0.0
    for k in range(0, len(requests), batch):
        chunk = requests[k:k + batch]
        loc = []
        for i, r in enumerate(chunk):
            o = requests[(k + i + batch) % len(requests)]
            loc.append(r["locality_prompts"][0] if r.get("locality_prompts") else fill(o["prompt"], o["subject"]))
        lids, lmask = _loc_rows(tok, loc, device)
        base = _loc_logp(model, lids, lmask)
        factors, _ = capture_factors(model, _edit_rows(tok, chunk), tok.pad_token_id, targets)
        updates = net(factors)
        outer = _outer_rows(tok, chunk)
        ids, mask = pad_rows(outer, tok.pad_token_id, device)
        before = _per_request(row_target_logprob(model, ids, mask, outer)[0], outer, len(chunk))
        have_true = all(r.get("target_true") for r in chunk)
        if have_true:
            pair = _edit_rows(tok, chunk) + [encode_row(tok, r["prompt"], r["subject"], r["target_true"], i)
                                             for i, r in enumerate(chunk)]
            pids, pmask = pad_rows(pair, tok.pad_token_id, device)
        with updates_applied(model, targets, updates):
            after = _per_request(row_target_logprob(model, ids, mask, outer)[0], outer, len(chunk))
            post = _loc_logp(model, lids, lmask)
            out["kl_loc"] += float((base.exp() * (base - post)).sum(-1).mean()) * len(chunk)
            if have_true:
                lp = row_target_logprob(model, pids, pmask, pair)[0]
                es += float((lp[:len(chunk)] > lp[len(chunk):]).sum())
                n_es += len(chunk)
        out["nll_before"] += float(-before.sum())
        out["nll_after"] += float(-after.sum())
        out["p_new_before"] += float(before.exp().sum())
        out["p_new_after"] += float(after.exp().sum())
    out = {k: v / len(requests) for k, v in out.items()}
    out["n"] = len(requests)
    if n_es:
        out["es_after"] = es / n_es
    return out


def evaluate_hypernet(model, tok, requests: list[dict], tensors: dict[str, torch.Tensor], config: dict,
                      batch: int = 1) -> dict:
    """Held-out edit quality of a trained hypernetwork (see ``_evaluate``); model unchanged."""
    requests = _check_train_requests(requests)
    targets = edit_targets(model, config["layers"], config["mlp_weights"])
    net = net_from(tensors, config).to(next(model.parameters()).device).eval()
    with frozen_eval(model):
        return _evaluate(model, tok, net, targets, requests, batch)


# ---------------------------------------------------------------------------- training
def train_mend(model, tok, train_requests: list[dict], hp: MendHparams, seed: int, *,
               val_requests: list[dict] | None = None, log_every: int = 10
               ) -> tuple[dict[str, torch.Tensor], dict]:
    """Train a MEND hypernetwork for ``hp.layers``/``hp.mlp_weights`` of ``model`` on
    ``train_requests`` (editor requests, optionally with ``locality_prompts``). Returns
    (tensors, config) for :func:`save_hypernet`; ``config["train"]`` holds the loss
    history and, with ``val_requests``, held-out edit quality before and after training.
    Deterministic for a seed on one device; the model is returned bit-identical."""
    t0 = time.perf_counter()
    hp.validate()
    requests = _check_train_requests(train_requests)
    val = _check_train_requests(val_requests) if val_requests else None
    device = next(model.parameters()).device
    targets = edit_targets(model, hp.layers, hp.mlp_weights)
    spec = net_spec(model, targets, hp.rank, hp.n_hidden, hp.edit_lr)
    net = MendNet(spec, torch.Generator().manual_seed(seed)).to(device)
    sample = _Sampler(requests, hp.train_batch, seed)
    history, val_log = [], []
    with frozen_eval(model):
        for _ in range(max(hp.norm_batches, 1)):                  # at least 2 tokens: std defined
            batch, _ = sample()
            net.update_stats(capture_factors(model, _edit_rows(tok, batch), tok.pad_token_id, targets)[0])
        if val:
            val_log.append({"step": 0, **_evaluate(model, tok, net.eval(), targets, val, hp.train_batch)})
        net.train()
        opt = torch.optim.Adam([{"params": [p for n, p in net.named_parameters() if n != "edit_lrs"], "lr": hp.train_lr},
                                {"params": [net.edit_lrs], "lr": hp.lr_lr}])
        t_train = time.perf_counter()
        for step in range(1, hp.train_steps + 1):
            opt.zero_grad(set_to_none=True)
            tot = {"loss": 0.0, "edit_nll": 0.0, "loc_kl": 0.0}
            for _ in range(hp.accumulate):
                batch, loc = sample()
                loss, l_edit, l_loc = _mend_loss(model, tok, net, targets, batch, loc, hp, update_stats=True)
                (loss / hp.accumulate).backward()
                for k, v in (("loss", float(loss.detach())), ("edit_nll", l_edit), ("loc_kl", l_loc)):
                    tot[k] += v / hp.accumulate
            gnorm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), hp.grad_clip))
            opt.step()
            history.append({"step": step, **tot, "grad_norm": gnorm})
            if log_every and (step % log_every == 0 or step == hp.train_steps):
                log.info("train_mend step %d/%d loss %.4f edit_nll %.4f loc_kl %.4f (%.2fs/step)", step,
                         hp.train_steps, tot["loss"], tot["edit_nll"], tot["loc_kl"],
                         (time.perf_counter() - t_train) / step)
        train_seconds = time.perf_counter() - t_train
        net.eval()
        if val and hp.train_steps:
            val_log.append({"step": hp.train_steps, **_evaluate(model, tok, net, targets, val, hp.train_batch)})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    config = {
        "format": FORMAT, "model_type": model.config.model_type,
        "layers": sorted({int(l) for l in hp.layers}), "mlp_weights": hp.mlp_weights, "net": spec,
        "fingerprint": fingerprint(model, targets),
        "train": {"seed": seed, "steps": hp.train_steps, "n_train_requests": len(requests),
                  "n_val_requests": len(val) if val else 0,
                  "hparams": {k: v for k, v in asdict(hp).items() if k != "hypernet"},
                  "seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
                  "s_per_step": train_seconds / hp.train_steps if hp.train_steps else None,
                  "device": str(device), "edit_lrs": [float(x) for x in net.edit_lrs.detach().cpu()],
                  "history": history, "val": val_log},
    }
    return tensors, config
