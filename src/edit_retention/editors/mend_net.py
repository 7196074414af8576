"""MEND's hypernetwork (``MendNet``: one ``GradTransform`` per weight shape) and its folder
(``hypernet.safetensors`` + ``config.json``): written by ``mend_train``, read by ``mend``."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..checksums import verify
from ..io import InputError, atomic_dir, read_json, without_timings, write_json
from .base import EditError

FORMAT = "edit_retention.mend_hypernet/1"
TENSORS, CONFIG = "hypernet.safetensors", "config.json"


# ---------------------------------------------------------------------------- hypernetwork
class LowRankResidual(nn.Module):
    """x + act(((x U^T) V^T + b) * scale[mode] + shift[mode]); V = 0 at init (identity)."""

    def __init__(self, dim: int, rank: int, n_modes: int, relu: bool, generator: torch.Generator | None = None):
        super().__init__()
        self.u = nn.Parameter(torch.randn(rank, dim, generator=generator) / math.sqrt(dim))
        self.v = nn.Parameter(torch.zeros(dim, rank))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))
        self.relu = relu

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (x @ self.u.T) @ self.v.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return x + (torch.relu(pre) if self.relu else pre)


class GradTransform(nn.Module):
    """Normalise (x, delta), pass [x; delta] through n_hidden + 1 residual low-rank layers
    (ReLU on the hidden ones), split back into pseudo (x~, delta~)."""

    def __init__(self, x_dim: int, delta_dim: int, n_modes: int, rank: int, n_hidden: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.x_dim, self.delta_dim = x_dim, delta_dim
        dim = x_dim + delta_dim
        self.layers = nn.ModuleList([LowRankResidual(dim, min(rank, dim), n_modes, i < n_hidden, generator)
                                     for i in range(n_hidden + 1)])
        for name, d in (("x", x_dim), ("d", delta_dim)):          # running statistics (Chan et al.)
            self.register_buffer(f"{name}_mean", torch.zeros(d, dtype=torch.float64))
            self.register_buffer(f"{name}_m2", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update_stats(self, x: torch.Tensor, d: torch.Tensor) -> None:
        n_b = x.shape[0]
        if n_b == 0:
            return
        n_a, n = self.count.clone(), self.count + n_b
        for name, v in (("x", x.double()), ("d", d.double())):
            mean_a, m2_a = getattr(self, f"{name}_mean"), getattr(self, f"{name}_m2")
            mean_b = v.mean(0)
            diff = mean_b - mean_a
            mean_a.add_(diff * n_b / n)
            m2_a.add_(((v - mean_b) ** 2).sum(0) + diff ** 2 * n_a * n_b / n)
        self.count.copy_(n)

    def forward(self, x: torch.Tensor, d: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        if float(self.count) < 2:
            raise EditError("mend: the hypernetwork has no normalisation statistics (train it with mend_train)")
        std = lambda m2: (m2 / (self.count - 1)).sqrt().float() + 1e-7  # noqa: E731
        h = torch.cat([(x.float() - self.x_mean.float()) / std(self.x_m2),
                       (d.float() - self.d_mean.float()) / std(self.d_m2)], dim=-1)
        for layer in self.layers:
            h = layer(h, mode)
        return h[:, :self.x_dim], h[:, self.x_dim:]


class MendNet(nn.Module):
    """All hypernetworks of one MEND editor plus the learned per-weight edit steps.

    ``spec`` is the ``"net"`` part of a hypernet config (:func:`net_spec`)."""

    def __init__(self, spec: dict, generator: torch.Generator | None = None):
        super().__init__()
        self.spec = spec
        self.nets = nn.ModuleDict({key: GradTransform(v["x_dim"], v["delta_dim"], v["n_modes"], spec["rank"],
                                                      spec["n_hidden"], generator)
                                   for key, v in spec["nets"].items()})
        self.edit_lrs = nn.Parameter(torch.full((len(spec["weights"]),), float(spec["edit_lr"])))

    def update_stats(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        for w in self.spec["weights"]:
            self.nets[w["net"]].update_stats(*factors[w["param"]])

    def forward(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Weight updates -alpha_w * sum_t delta~_t x~_t^T, each (d_out, d_in), float32."""
        out = {}
        for i, w in enumerate(self.spec["weights"]):
            x, d = factors[w["param"]]
            xt, dt = self.nets[w["net"]](x, d, w["mode"])
            out[w["param"]] = -self.edit_lrs[i] * (dt.T @ xt)
        return out


# ---------------------------------------------------------------------------- save / load
def save_hypernet(out_dir: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict) -> None:
    """Write ``hypernet.safetensors`` and ``config.json`` into ``out_dir`` atomically (the
    training timings go to the job's log, ``io.without_timings``)."""
    t = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_dir(out_dir) as tmp:
        save_file(t, str(tmp / TENSORS), metadata={"format": FORMAT})
        write_json(tmp / CONFIG, without_timings(config, f"MEND training {out_dir}"))


def load_hypernet(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config) of a folder written by :func:`save_hypernet`; InputError naming
    the path when it is missing or unreadable."""
    path = Path(path)
    for f in (TENSORS, CONFIG):
        if not (path / f).is_file():
            raise InputError(f"{path}: not a MEND hypernetwork folder (no {f}); run the train_mend stage")
    verify(path)
    config = read_json(path / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{path / CONFIG}: not a MEND hypernetwork config (expected format {FORMAT!r})")
    try:
        tensors = load_file(str(path / TENSORS))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise InputError(f"{path / TENSORS}: unreadable safetensors file ({e})") from e
    return tensors, config


def net_from(tensors: dict[str, torch.Tensor], config: dict, where: str = "<hypernet>") -> MendNet:
    """The :class:`MendNet` of a saved hypernetwork (CPU); InputError if the tensors do not fit."""
    try:
        net = MendNet(config["net"])
        net.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, RuntimeError) as e:
        raise InputError(f"{where}: the hypernetwork tensors do not match its config ({e})") from e
    return net
