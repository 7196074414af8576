"""MEMIT's and AlphaEdit's closed-form layer updates, in float64 (pure functions, no model).

Shapes follow ``rome_math``: a layer's weight W is (d_out, d_in); the batch's keys are the
rows of K (n, d_in), its residuals (what the layer's output must still gain at each key)
the rows of R (n, d_out); C = E[k k^T] (d_in, d_in) over generic text, None for the identity.

    memit_delta(K, R, C, lam)            Delta = R^T K (lam C + K^T K)^-1
        the least-squares solution of  min ||Delta K^T - R^T||^2 + lam tr(Delta C Delta^T),
        i.e. it satisfies the normal equations  Delta (lam C + K^T K) = R^T K
        (MEMIT eq. 14 with K0 K0^T = lam E[k k^T]; lam = "mom2_update_weight").
    nullspace_projector(C, threshold)    P = U0 U0^T over the eigenvectors of C whose
        eigenvalue is < threshold (absolute, as AlphaEdit's nullspace_threshold)
    alphaedit_delta(K, R, P, Kp, l2)     Delta = R^T K P (Kp^T Kp P + K^T K P + l2 I)^-1
        (AlphaEdit eq. 13; Kp = keys of earlier edits). Equal to
        R^T K (P (K^T K + Kp^T Kp) + l2 I)^-1 P, so Delta x = 0 whenever P x = 0.
"""
from __future__ import annotations

import torch

from ..io import InputError

F64 = torch.float64


def _check(K: torch.Tensor, R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if K.ndim != 2 or R.ndim != 2 or K.shape[0] != R.shape[0]:
        raise InputError(f"keys {tuple(K.shape)} and residuals {tuple(R.shape)} must be (n, d_in) and (n, d_out)")
    return K.to(F64), R.to(F64)


def _solve(A: torch.Tensor, B: torch.Tensor, what: str) -> torch.Tensor:
    try:
        return torch.linalg.solve(A, B)
    except RuntimeError as e:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise InputError(f"{what}: the system is singular ({e})") from e


def memit_delta(K: torch.Tensor, R: torch.Tensor, C: torch.Tensor | None, lam: float) -> torch.Tensor:
    """Delta (d_out, d_in) = R^T K (lam C + K^T K)^-1; C None means the identity."""
    K, R = _check(K, R)
    d = K.shape[1]
    C = torch.eye(d, dtype=F64, device=K.device) if C is None else C.to(K.device, F64)
    A = lam * C + K.T @ K                                 # symmetric positive (semi)definite
    X = _solve(A, K.T, "MEMIT update (lam C + K^T K)")    # (d_in, n) = A^-1 K^T
    return R.T @ X.T                                      # R^T K A^-1 (A symmetric)


def nullspace_projector(C: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, eigenvalues): P = U0 U0^T, U0 = the eigenvectors of the symmetric C with eigenvalue
    below ``threshold``. P x ~ 0 for every x in the span of the preserved keys' large
    directions; P has rank = the number of eigenvalues below the threshold (possibly 0)."""
    C = C.to(F64)
    evals, evecs = torch.linalg.eigh(0.5 * (C + C.T))
    U0 = evecs[:, evals < threshold]
    return U0 @ U0.T, evals


def alphaedit_delta(K: torch.Tensor, R: torch.Tensor, P: torch.Tensor, Kp: torch.Tensor | None,
                    l2: float) -> torch.Tensor:
    """Delta (d_out, d_in) = R^T K P (Kp^T Kp P + K^T K P + l2 I)^-1 (Kp None: no earlier edits).

    Computed as the solve of its transpose: Delta^T = (P A + l2 I)^-1 P K^T R with
    A = K^T K + Kp^T Kp (P, A symmetric)."""
    K, R = _check(K, R)
    P = P.to(K.device, F64)
    A = K.T @ K
    if Kp is not None and Kp.shape[0]:
        Kp = Kp.to(K.device, F64)
        A = A + Kp.T @ Kp
    M = P @ A + l2 * torch.eye(K.shape[1], dtype=F64, device=K.device)
    return _solve(M, P @ (K.T @ R), "AlphaEdit update (P (K^T K + Kp^T Kp) + L2 I)").T
