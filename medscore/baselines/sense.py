"""Multi-coil baselines with given (e.g. ESPIRiT) coil maps: SENSE by CG, L1-wavelet and TV compressed sensing.

All take multi-coil k-space ``y`` (B, C, H, W) complex and a :class:`~medscore.physics.MultiCoilMRI` ``op``
(or any operator with ``A`` / ``A_adjoint`` on (B, 2, H, W) real/imaginary images) and return the complex
image as (B, 2, H, W); :func:`magnitude` turns that into (B, H, W) numpy for scoring.

The CS baselines reuse the solvers of :mod:`medscore.baselines.cs` (PDHG for TV, FISTA with cycle spinning
for L1-wavelet): they already take any linear operator, so single- and multi-coil figures come from the same
code, run batched on the GPU, and need no extra dependency beyond sigpy for the maps. sigpy's
``L1WaveletRecon`` / ``TotalVariationRecon`` would fit too, but they are numpy/cupy only and would give the
multi-coil tables a different solver (and stopping rule) from the single-coil ones. One difference from
sigpy: the wavelet prox thresholds the real and imaginary channels separately, not the complex modulus.
Regularisation weights are tuned on validation slices with :func:`tune_sense` (the
:func:`~medscore.baselines.classical.tune` grid search), never on test slices.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .classical import tune
from .cs import tv_cs, wavelet_cs

__all__ = ["sense_cg", "wavelet_sense", "tv_sense", "operator_norm", "magnitude", "SENSE_METHODS", "SENSE_GRIDS",
           "tune_sense"]


def _batched_cg(normal: Callable[[Tensor], Tensor], rhs: Tensor, n_iter: int, tol: float) -> Tensor:
    """Solve ``normal(x) = rhs`` (Hermitian positive semi-definite) by CG from 0, per batch element."""
    dims = tuple(range(1, rhs.ndim))
    shape = (-1,) + (1,) * (rhs.ndim - 1)
    x, r = torch.zeros_like(rhs), rhs.clone()
    p = r.clone()
    rs = (r * r).sum(dims).reshape(shape)
    stop = tol**2 * rs
    for _ in range(n_iter):
        active = rs > stop
        if not bool(active.any()):
            break
        ap = normal(p)
        alpha = torch.where(active, rs / (p * ap).sum(dims).reshape(shape).clamp_min(1e-30), torch.zeros_like(rs))
        x, r = x + alpha * p, r - alpha * ap
        rs_new = (r * r).sum(dims).reshape(shape)
        p = r + torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs)) * p
        rs = torch.where(active, rs_new, rs)
    return x


@torch.no_grad()
def sense_cg(y: Tensor, op: Any, lam: float = 0.0, n_iter: int = 30, tol: float = 1e-6) -> Tensor:
    """SENSE: ``argmin_x ||A x - y||^2 + lam ||x||^2`` by CG on ``(A^H A + lam I) x = A^H y``.

    ``lam = 0`` is plain (unregularised) SENSE; ``n_iter`` then acts as the regulariser (early stopping).
    Stops early once the relative residual of every batch element is below ``tol``.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    return _batched_cg(lambda v: op.A_adjoint(op.A(v)) + lam * v, op.A_adjoint(y), n_iter, tol)


@torch.no_grad()
def operator_norm(op: Any, y: Tensor, n_iter: int = 20, seed: int = 0) -> float:
    """``||A||`` (largest singular value) by power iteration on ``A^H A`` from a seeded random image."""
    shape = op.A_adjoint(y).shape
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(shape, generator=g).to(y.device)
    est = 0.0
    for _ in range(n_iter):
        v = v / v.flatten().norm().clamp_min(1e-30)
        w = op.A_adjoint(op.A(v))
        est = float(w.flatten().norm())
        v = w
    return est**0.5


def wavelet_sense(y: Tensor, op: Any, lam: float, n_iter: int = 100, *, wavelet: str = "db4", seed: int = 0) -> Tensor:
    """L1-wavelet CS (``1/2 ||A x - y||^2 + lam ||W x||_1``) by FISTA with the coil maps of ``op``."""
    return wavelet_cs(y, op, lam, n_iter, wavelet=wavelet, op_norm=max(operator_norm(op, y, seed=seed), 1e-6),
                      seed=seed)


def tv_sense(y: Tensor, op: Any, lam: float, n_iter: int = 200) -> Tensor:
    """TV CS (``1/2 ||A x - y||^2 + lam TV(x)``, complex isotropic TV) by PDHG with the coil maps of ``op``."""
    return tv_cs(y, op, lam, n_iter, op_norm=max(operator_norm(op, y), 1e-6))


def magnitude(x: Tensor) -> np.ndarray:
    """(B, 2, H, W) real/imaginary channels -> (B, H, W) float32 magnitude (numpy, CPU)."""
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(f"expected (B, 2, H, W) real/imaginary images, got {tuple(x.shape)}")
    return torch.linalg.vector_norm(x.float(), dim=1).cpu().numpy()


SENSE_METHODS: dict[str, Callable[..., Tensor]] = {"sense": sense_cg, "l1-wavelet": wavelet_sense, "tv": tv_sense}

#: default grids (images on a [0, 1] scale, orthonormal FFT, normalised maps) for :func:`tune_sense`
SENSE_GRIDS: dict[str, dict[str, list[float]]] = {
    "sense": {"lam": [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]},
    "l1-wavelet": {"lam": [1e-4, 3e-4, 1e-3, 3e-3]},
    "tv": {"lam": [3e-4, 1e-3, 3e-3, 1e-2]},
}


def tune_sense(method: str, problems: Sequence[tuple[Tensor, Any]], references: Sequence[np.ndarray],
               grid: Mapping[str, Sequence[Any]] | None = None, **fixed: Any) -> dict[str, Any]:
    """Parameters of ``SENSE_METHODS[method]`` maximising mean magnitude PSNR over validation slices.

    ``problems`` are ``(y, op)`` pairs, one validation slice each (``y`` (1, C, H, W)); ``references``
    their (H, W) magnitude ground truths on a [0, 1] scale. ``grid`` defaults to ``SENSE_GRIDS[method]``;
    ``fixed`` keyword arguments (e.g. ``n_iter``) are passed unchanged.
    """
    if method not in SENSE_METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {sorted(SENSE_METHODS)}")
    fn = SENSE_METHODS[method]
    return tune(lambda y, op, **p: magnitude(fn(y, op, **fixed, **p))[0], list(problems), list(references),
                SENSE_GRIDS[method] if grid is None else grid)
