"""Langevin dynamics with a score function: plain, and annealed (Algorithm 1 of Song & Ermon 2019).

One Langevin step at noise level sigma_i with step size alpha_i is

    x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z,    z ~ N(0, I),

the convention of the 2019 paper. (The ncsnv2 code writes ``x + a s + sqrt(2 a) z``, i.e. a = alpha / 2.)
The annealed sampler uses alpha_i = eps * sigma_i^2 / sigma_ref^2.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..rng import Generators, RowGenerators
from .base import Callback, SampleResult, ScoreFn, as_levels, sigma_rows

__all__ = ["ScoreFn", "Consistency", "Callback", "LangevinResult", "annealed_langevin", "langevin"]

Consistency = Callable[[Tensor, float], Tensor]
LangevinResult = SampleResult  # the historical name of the result type


def _check_common(x_init: Tensor, n_steps: int) -> None:
    if x_init.ndim < 1 or x_init.shape[0] < 1:
        raise ValueError(f"x_init must have a batch dimension, got shape {tuple(x_init.shape)}")
    if not x_init.is_floating_point():
        raise ValueError(f"x_init must be a real floating-point tensor, got {x_init.dtype}")
    if n_steps < 1:
        raise ValueError(f"need at least one Langevin step per level, got {n_steps}")


class _Stepper:
    """Holds the sample buffer and the preallocated noise buffer; applies steps in place."""

    def __init__(self, x_init: Tensor, consistency: Consistency | None, generator: Generators) -> None:
        self.x = x_init.detach().clone()
        self.noise = torch.empty_like(self.x)
        self.consistency = consistency
        self.generator = generator

    def constrain(self, sigma: float) -> None:
        if self.consistency is None:
            return
        out = self.consistency(self.x, sigma)
        if out is not self.x:  # keep owning our buffer: the hook may return a tensor it still uses
            self.x.copy_(out)

    def step(self, score: Tensor, alpha: float, sigma: float) -> None:
        if isinstance(self.generator, RowGenerators):
            self.generator.fill_normal_(self.noise)
        else:
            self.noise.normal_(generator=self.generator)
        self.x.add_(score, alpha=0.5 * alpha).add_(self.noise, alpha=math.sqrt(alpha))
        self.constrain(sigma)

    def result(self, nfe: int) -> SampleResult:
        return SampleResult(x=self.x.clone(), nfe=nfe)


def annealed_langevin(
    score_fn: ScoreFn,
    x_init: Tensor,
    sigmas: Tensor | Sequence[float],
    *,
    n_steps_each: int,
    eps: float,
    sigma_ref: float | None = None,
    consistency: Consistency | None = None,
    denoise_last: bool = True,
    generator: Generators = None,
    callback: Callback | None = None,
) -> LangevinResult:
    """Annealed Langevin dynamics (Algorithm 1 of Song & Ermon 2019), batched over the first dim of ``x_init``.

    Args:
        score_fn: ``score_fn(x, sigma)`` with ``sigma`` of shape (B,).
        x_init: starting batch (not modified).
        sigmas: the noise levels to visit, largest first.
        n_steps_each: T, Langevin steps per level.
        eps: step size at ``sigma_ref``; level i uses alpha_i = eps * sigma_i^2 / sigma_ref^2.
        sigma_ref: reference level (default ``sigmas[-1]``); pass the model's smallest trained level
            when ``sigmas`` is a subset or a warm-started tail of the model's levels.
        consistency: ``consistency(x, sigma_i) -> x`` applied after every Langevin step (sigma a float),
            and as ``consistency(x, 0.0)`` after the final denoising step.
        denoise_last: finish with the Tweedie step x + sigma_L^2 s(x, sigma_L) (one more evaluation).
        generator: the only source of randomness (on ``x_init``'s device; ``None`` = torch's default), or
            per-row generators (:class:`medscore.rng.RowGenerators`).
        callback: ``callback(level_index, num_levels, x)`` after each level; ``x`` is the live buffer
            (clone it to keep it).

    Returns:
        :class:`LangevinResult` with the sample and the number of score evaluations.
    """
    _check_common(x_init, n_steps_each)
    levels = as_levels(sigmas)
    ref = levels[-1] if sigma_ref is None else float(sigma_ref)
    if not (eps > 0 and ref > 0):
        raise ValueError(f"need eps > 0 and sigma_ref > 0, got {eps}, {ref}")
    alphas = [eps * (s / ref) ** 2 for s in levels]
    num_levels = len(levels)
    nfe = 0
    with torch.no_grad():  # not inference_mode: guidance may re-enable autograd
        stepper = _Stepper(x_init, consistency, generator)
        sig_rows = sigma_rows(levels, stepper.x)
        for i in range(num_levels):
            sig = sig_rows[i]
            for _ in range(n_steps_each):
                stepper.step(score_fn(stepper.x, sig), alphas[i], levels[i])
            nfe += n_steps_each
            if callback is not None:
                callback(i, num_levels, stepper.x)
        if denoise_last:
            stepper.x.add_(score_fn(stepper.x, sig_rows[-1]), alpha=levels[-1] ** 2)
            nfe += 1
            stepper.constrain(0.0)
    return stepper.result(nfe)


def langevin(
    score_fn: ScoreFn,
    x_init: Tensor,
    *,
    sigma: float,
    n_steps: int,
    step_size: float,
    consistency: Consistency | None = None,
    generator: Generators = None,
    callback: Callback | None = None,
) -> LangevinResult:
    """Plain Langevin dynamics at one noise level: ``n_steps`` steps of size alpha = ``step_size``.

    ``sigma`` is handed to ``score_fn`` (and to ``consistency``); 0 or a tiny value means the
    unperturbed score, if ``score_fn`` accepts it. ``callback(step_index, n_steps, x)`` runs after
    every step. No final denoising step.
    """
    _check_common(x_init, n_steps)
    if not (sigma >= 0 and step_size > 0):
        raise ValueError(f"need sigma >= 0 and step_size > 0, got {sigma}, {step_size}")
    sigma = float(sigma)
    with torch.no_grad():  # not inference_mode: guidance may re-enable autograd
        stepper = _Stepper(x_init, consistency, generator)
        sig = sigma_rows([sigma], stepper.x)[0]
        for t in range(n_steps):
            stepper.step(score_fn(stepper.x, sig), step_size, sigma)
            if callback is not None:
                callback(t, n_steps, stepper.x)
    return stepper.result(n_steps)
