"""Data-consistency steps for annealed Langevin sampling: callables ``step(x, sigma) -> x``.

``sigma`` is the current noise level: a float, a 0-d tensor or a (B,) tensor. The steps run thousands of
times per reconstruction, so they are pure tensor code: no per-pixel Python loops and no host syncs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import LinearOperator, broadcast_level

__all__ = ["HardProjection", "NoisyProjection", "GradientStep"]


def _require_projectable(op: LinearOperator, name: str) -> None:
    if not getattr(op, "projectable", True):
        raise ValueError(
            f"{name} would return the noisy measurements for {type(op).__name__}; use GradientStep instead"
        )


class HardProjection:
    """``x <- project(x, y)``: enforce ``A x = y`` exactly, whatever the level."""

    def __init__(self, op: LinearOperator, y: Tensor) -> None:
        _require_projectable(op, "HardProjection")
        self.op = op
        self.y = y

    def __call__(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        return self.op.project(x, self.y)


class NoisyProjection:
    """``x <- project(x, y + sigma A z)``, ``z ~ N(0, I)`` drawn in image space (shaped like ``x``).

    ``x`` at level ``sigma`` is the clean image plus ``sigma z``, so its measurements are
    ``y + sigma A z``: projecting onto those keeps the data term at the noise level of the prior.
    Drawing ``z`` in image space and mapping it through ``A`` gives k-space noise with exactly the
    forward model's statistics (complex for 2-channel images, conjugate-symmetric for real images,
    coil-correlated through the sensitivity maps). For inpainting it replaces known pixels by
    ``y + sigma z`` (NCSN inpainting). At ``sigma = 0`` it equals ``HardProjection``.
    """

    def __init__(self, op: LinearOperator, y: Tensor, generator: torch.Generator | None = None) -> None:
        _require_projectable(op, "NoisyProjection")
        self.op = op
        self.y = y
        self.generator = generator
        self._z: Tensor | None = None  # noise buffer reused across the thousands of steps of a run

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        if self._z is None or self._z.shape != x.shape or self._z.dtype != x.dtype or self._z.device != x.device:
            self._z = torch.empty_like(x)
        z = torch.randn(x.shape, generator=self.generator, out=self._z)
        s = broadcast_level(sigma, x)
        return self.op.project(x, self.y + s * self.op.A(z))


class GradientStep:
    """``x <- x - weight * A^H(A x - y)``, one gradient step on ``0.5 ||A x - y||^2``.

    For noisy k-space, multi-coil data and denoising. ``weight`` is a float or ``weight(sigma)``
    returning a float or tensor (e.g. ``lambda s: 0.5 * s**2 / s_min**2``); for a decrease of the data
    term it must stay below ``2 / ||A||^2``, i.e. below 2 for every operator here (multi-coil: with
    normalised coil maps).
    """

    def __init__(
        self, op: LinearOperator, y: Tensor, weight: float | Callable[[Tensor | float], Tensor | float]
    ) -> None:
        self.op = op
        self.y = y
        self.weight = weight

    def __call__(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        w = self.weight(sigma) if callable(self.weight) else self.weight
        return x - broadcast_level(w, x) * self.op.data_grad(x, self.y)
