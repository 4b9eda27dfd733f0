"""Data-consistency steps for annealed Langevin sampling: callables ``step(x, sigma) -> x``.

``sigma`` is the current noise level: a float, a 0-d tensor or a (B,) tensor. The steps run thousands of
times per reconstruction, so they are pure tensor code: no per-pixel Python loops and no host syncs.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from ..rng import Generators, RowGenerators
from .base import LinearOperator, broadcast_level

__all__ = ["HardProjection", "NoisyProjection", "GradientStep", "DataConsistency"]


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

    def __init__(self, op: LinearOperator, y: Tensor, generator: Generators = None) -> None:
        _require_projectable(op, "NoisyProjection")
        self.op = op
        self.y = y
        self.generator = generator
        self._z: Tensor | None = None  # noise buffer reused across the thousands of steps of a run

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        if self._z is None or self._z.shape != x.shape or self._z.dtype != x.dtype or self._z.device != x.device:
            self._z = torch.empty_like(x)
        if isinstance(self.generator, RowGenerators):
            z = self.generator.fill_normal_(self._z)
        else:
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


class DataConsistency:
    """The measurements as samplers see them (``medscore.sampling.base.Guidance``).

    ``noisy(x, sigma, step)`` acts on an iterate carrying noise ``sigma``: ``mode="noisy"`` projects onto
    the measurements noised to that level (:class:`NoisyProjection`), ``"hard"`` onto the measurements,
    ``"gradient"`` takes the likelihood step of the posterior score, ``x -= w A^H(A x - y)`` with
    ``w = min(1, dc_weight (step / 2) / (noise_std^2 + sigma^2))`` (Jalal et al. 2021; ``step`` is the
    Langevin step size alpha of the update just made, 0 means none).
    ``clean(x0, sigma)`` acts on a denoised estimate: for noiseless measurements (``exact``) the
    projection onto {A x = y}; otherwise ``x0`` unchanged, and samplers impose the noisy data through
    ``noisy`` (a likelihood step) on their next noisy iterate instead. A weighted solve on ``x0``
    (trusting y by ``sigma^2 / (sigma^2 + noise_std^2)``) was tried and over-fitted the noise: the
    estimates of later levels already carry the data of earlier ones.
    """

    def __init__(self, op: LinearOperator, y: Tensor, *, noise_std: float = 0.0,
                 mode: Literal["noisy", "hard", "gradient"] = "noisy", dc_weight: float = 1.0,
                 generator: Generators = None, projection_rounds: int | None = None, prox_iters: int = 10) -> None:
        if mode not in ("noisy", "hard", "gradient"):
            raise ValueError(f"consistency mode must be noisy, hard or gradient, got {mode!r}")
        self.op, self.y, self.noise_std, self.mode, self.dc_weight = op, y, float(noise_std), mode, dc_weight
        self.prox_iters = prox_iters
        # alternating rounds are only needed for real images (``real_input``); one projection is exact otherwise
        self.projection_rounds = projection_rounds or (10 if getattr(op, "real_input", False) else 1)
        self._noisy = NoisyProjection(op, y, generator) if mode == "noisy" else None
        if mode == "hard":
            _require_projectable(op, "HardProjection")
        #: True when ``clean`` imposes the measurements exactly (noiseless data, a projectable operator)
        self.exact = self.noise_std == 0 and getattr(op, "projectable", True)

    def fidelity(self, x0: Tensor) -> Tensor:
        """Per image, the misfit of a denoised estimate to the measurements, ``||A x0 - y||^2 / ||y||^2``
        (scale-free; the loss of test-time adaptation, :mod:`medscore.solvers.adapt`)."""
        r = self.op.A(x0) - self.y
        num = (r.abs() ** 2).flatten(1).sum(1)
        return num / (self.y.abs() ** 2).flatten(1).sum(1).clamp_min(1e-12)

    def noisy(self, x: Tensor, sigma: float, step: Tensor | float) -> Tensor:
        if self._noisy is not None:
            return self._noisy(x, sigma)
        if self.mode == "hard":
            return self.op.project(x, self.y)
        if isinstance(step, float) and step == 0:
            return x
        w = self.dc_weight * 0.5 * step / (self.noise_std**2 + float(sigma) ** 2)
        # Capped at 1: one step never moves past the measurements (w = 1 is the projection for a masked unitary
        # operator, and w > 2 diverges). Large Langevin steps on coarse schedules reach w of 3-5 at the smallest
        # levels (19-49-NFE presets, k-space noise 0.01), which blew up; the first release's 200-NFE setting
        # peaked at w = 1.9, so the cap changes its noisy-k-space results slightly (its noiseless ones not at all).
        w = w.clamp(max=1.0) if isinstance(w, Tensor) else min(w, 1.0)
        return x - broadcast_level(w, x) * self.op.data_grad(x, self.y)

    def proximal(self, z: Tensor, sigma: float) -> Tensor:
        """The data step on a denoised estimate ``z`` at level ``sigma``: ``clean`` for noiseless data, else
        ``argmin_x dc_weight ||A x - y||^2 / (2 noise_std^2) + ||x - z||^2 / (2 sigma^2)``.

        For operators whose ``A^H A`` is a projection (masks) that is the likelihood step ``noisy(z, sigma,
        2 sigma^2)``; for the others (multi-coil SENSE) one gradient step falls far short of it, so it is solved
        by ``prox_iters`` CG iterations (8-coil validation slices, ``fast``: 38.2 -> 42.6 dB at Poisson 8x,
        24.8 -> 26.6 dB at 1D 8x; 10 iterations rather than 5: +0.14 dB on average over 4x / 8x / Poisson).
        """
        if self.exact:
            return self.clean(z, sigma)
        if getattr(self.op, "gram_is_projection", False) or self.noise_std == 0:
            return self.noisy(z, sigma, 2.0 * sigma**2)
        return self.op.prox(z, self.y, self.noise_std**2 / (self.dc_weight * sigma**2), iters=self.prox_iters)

    def clean(self, x0: Tensor, sigma: float) -> Tensor:
        if not self.exact:
            return x0
        # One projection is exact for complex images and pixel masks; for a real image under a mask that is not
        # conjugate-symmetric it is the real part of the complex projection, and alternating the two (real images,
        # measured k-space) converges onto {real x: M F x = y}: 10 rounds of FFTs cost little beside one network call.
        for _ in range(self.projection_rounds):
            x0 = self.op.project(x0, self.y)
        return x0
