"""ROME's closed-form weight update, in float64 (pure functions, no model).

W is (d_out, d_in), keys k* are rows of K (n, d_in), target values v* rows of V (n, d_out),
C = E[k k^T] (d_in, d_in) or None for the identity.

    rank_one_delta(W, k, v, C)   u = C^-1 k;  Delta = (v - W k) u^T / (u^T k)  so (W+Delta) k = v
    sequential_delta(W, K, V, C) one rank-one update per row, each against the updated W
                                 (the last key is matched exactly, earlier ones approximately)
    joint_delta(W, K, V, C)      Delta = R (K C^-1 K^T)^-1 K^T C^-1 with R = V^T - W K^T:
                                 the least C-weighted change with (W+Delta) K^T = V^T exactly
"""
from __future__ import annotations

import torch

from ..io import InputError


def _solve_c(C: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor:
    """C^-1 X (X is (d_in, m)); identity when C is None."""
    if C is None:
        return X.clone()
    try:
        return torch.linalg.solve(C.to(torch.float64), X)
    except RuntimeError as e:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise InputError(f"second-moment statistics are singular ({e}); compute them over more "
                         "tokens than the key dimension") from e


def rank_one_delta(W: torch.Tensor, k: torch.Tensor, v: torch.Tensor, C: torch.Tensor | None,
                   u: torch.Tensor | None = None) -> torch.Tensor:
    """``u``: C^-1 k when the caller has it already (it does not depend on W)."""
    W, k, v = W.to(torch.float64), k.to(torch.float64), v.to(torch.float64)
    if u is None:
        u = _solve_c(C, k[:, None])[:, 0]
    return torch.outer(v - W @ k, u) / (u @ k)


def sequential_delta(W: torch.Tensor, K: torch.Tensor, V: torch.Tensor, C: torch.Tensor | None) -> torch.Tensor:
    """``rank_one_delta`` applied row after row, each against the updated W. u_i = C^-1 k_i
    does not depend on W, so C is solved once for every key (one d_in x d_in solve with n
    right-hand sides instead of n solves: 0.10 s -> 1.6 ms per fact at 1,024 facts on SmolLM2's
    d_in 1536, README "Edit cost against the number of facts")."""
    W0 = W.to(torch.float64)
    U = _solve_c(C, K.to(torch.float64).T).T   # (n, d_in), row i = C^-1 k_i
    cur = W0.clone()
    for k, v, u in zip(K, V, U):
        cur += rank_one_delta(cur, k, v, C, u)
    return cur - W0


def joint_delta(W: torch.Tensor, K: torch.Tensor, V: torch.Tensor, C: torch.Tensor | None) -> torch.Tensor:
    W, K, V = W.to(torch.float64), K.to(torch.float64), V.to(torch.float64)
    U = _solve_c(C, K.T)                      # (d_in, n)
    R = V.T - W @ K.T                         # (d_out, n)
    G = K @ U                                 # (n, n) = K C^-1 K^T, symmetric
    try:
        return R @ torch.linalg.solve(G, U.T)
    except RuntimeError as e:
        raise InputError(f"joint ROME update: the keys are linearly dependent ({e}); "
                         "two requests probably share a subject — use update='sequential'") from e
