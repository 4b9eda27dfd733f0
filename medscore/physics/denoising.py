"""Denoising: ``y = x + n``, ``n ~ N(0, noise_std^2 I)``, so ``A`` is the identity.

A hard projection onto {A x = y} would return ``y`` itself (noise included), so ``Denoising`` is not
projectable: ``project`` raises, and ``HardProjection`` / ``NoisyProjection`` refuse it. Use a soft data
term instead (``GradientStep(op, y, weight)`` pulls ``x`` towards ``y`` by ``weight * (x - y)``) or start
annealed Langevin from ``y`` at the level closest to ``noise_std``.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from .base import LinearOperator

__all__ = ["Denoising", "estimate_noise_std"]


class Denoising(LinearOperator):
    """Identity forward model with a stored noise level ``noise_std`` (same units as the images)."""

    projectable = False
    gram_is_projection = True  # A^H A = I

    def __init__(self, noise_std: float) -> None:
        super().__init__()
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.noise_std = float(noise_std)

    def A(self, x: Tensor) -> Tensor:
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y

    def A_dagger(self, y: Tensor) -> Tensor:
        return y

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError(
            "hard projection for denoising would just return the noisy y; use GradientStep or start from y"
        )


def estimate_noise_std(x: Tensor | np.ndarray) -> float:
    """Gaussian noise std of ``x`` via ``skimage.restoration.estimate_sigma`` (wavelet MAD).

    ``x`` is (H, W), (C, H, W) or (B, C, H, W). Estimated per image (channels averaged) and then
    averaged over the batch. Host-side helper, not for use inside sampling loops.
    """
    from skimage.restoration import estimate_sigma

    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected (H, W), (C, H, W) or (B, C, H, W), got shape {a.shape}")
    sig = [estimate_sigma(np.moveaxis(img, 0, -1), channel_axis=-1, average_sigmas=True) for img in a]
    return float(np.mean(sig))
