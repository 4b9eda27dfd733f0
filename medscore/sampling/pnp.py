"""Annealed plug-and-play: half-quadratic splitting with the score network as the denoiser.

At each level sigma_i (largest first) the network's Tweedie estimate ``z = x + sigma_i^2 s(x, sigma_i)`` is
the denoising step, and the data step makes it consistent with the measurements:

    z   = x + sigma_i^2 s(x, sigma_i)                      (prior: MMSE denoiser at level sigma_i)
    x0  = argmin_x ||A x - y||^2 / (2 s_n^2) + ||x - z||^2 / (2 sigma_i^2)     (data)
    x   = x0 + renoise * sigma_{i+1} * n,   n ~ N(0, I)

This is DPIR's schedule (Zhang et al., TPAMI 2021) with the NCSN denoiser, and DiffPIR (Zhu et al., CVPR 2023)
without its eps-hat term. Unlike the samplers it does not draw from the posterior: with ``renoise = 0`` it is a
deterministic fixed-point iteration towards a consistent image the denoiser leaves unchanged, which on a weak
prior lies closer to the posterior mean (the PSNR-optimal estimate) than any single sample. ``renoise`` in
(0, 1] re-injects fresh noise at the next level (1: the iterate carries exactly the noise the network expects).
For noiseless data the data step is the exact projection (``guidance.clean``); for noisy data it is the
proximal step above (``guidance.proximal``): a likelihood step of weight ``sigma_i^2 / (sigma_i^2 + s_n^2)``
for masked unitary operators, where that is exact, and a few CG iterations for the others (multi-coil SENSE).
One network evaluation per level.

``flips`` turns on a periodic flip ensemble (DPIR's periodical geometric self-ensemble, restricted to the
flips the prior was trained with): level i evaluates the network on the image flipped by the i-th of the four
flips (none, left-right, up-down, both) and flips the score back. The exact score of a flip-invariant prior is
flip-equivariant, so this changes nothing in exact arithmetic; with a real network it spreads the network's
systematic error over four orientations instead of repeating it at every level. It costs no extra NFE. When
several chains run per image, ``medscore.solvers.solve`` also gives the odd ones the complementary flips
(:func:`alternate_chain_flips`), so their mean averages the orientations at every level. ``transposes`` extends the
cycle to the whole dihedral group: levels 4-7 (and 12-15, ...) take the same four flips of the image with its two
in-plane axes swapped. The prior never saw transposed images, but on the validation slab the eight orientations
beat the four on every MRI task (1D 8x / 4x / Poisson 8x at ``default``: +0.19 / +0.24 / +0.19 dB), as they did for
the Tweedie denoiser (docs/benchmarks.md).

``momentum`` is heavy-ball over-relaxation of that fixed-point iteration (as in accelerated proximal gradient and
its plug-and-play forms, e.g. PnP-FISTA): from the second level on, the denoiser sees the last estimate pushed on
along its last move, ``x_i + momentum (x_i - x_{i-1})`` (``x_{-1}`` the warm start), plus any fresh noise. A fixed
point is unchanged (there ``x_i = x_{i-1}``); the iteration gets there in fewer levels, which is what a 20-level
chain lacks: on the validation slab and the real EPI's validation slice, 1D 8x at 20 levels rose from 26.14 / 22.36
dB to 26.76 / 24.13 with ``momentum = 0.6`` (docs/benchmarks.md, "Momentum"). It costs no NFE.

Averaging several chains (``samples``) helps a little (they differ by the warm-start noise), but with
``renoise = 0`` their spread measures sensitivity to the start, not posterior uncertainty: for an uncertainty
map use a sampler (``ald``, or ``pnp`` with ``renoise = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..rng import Generators
from .base import (Callback, Guidance, SampleResult, Sampler, ScoreFn, as_levels, noise_like, register_sampler,
                   sigma_rows)

__all__ = ["PlugAndPlay", "flipped_score", "oriented_score", "alternate_chain_flips"]

# The flips of the last two (in-plane) axes that the priors were trained with.
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def flipped_score(score_fn: ScoreFn, x: Tensor, sigma: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``F s(F x, sigma)`` for the flip ``F`` of ``dims`` (the plain score when ``dims`` is empty)."""
    if not dims:
        return score_fn(x, sigma)
    return score_fn(x.flip(dims), sigma).flip(dims)


def oriented_score(score_fn: ScoreFn, x: Tensor, sigma: Tensor, dims: tuple[int, ...], transpose: bool) -> Tensor:
    """:func:`flipped_score` of ``x`` with its last two axes swapped first when ``transpose`` (and swapped back)."""
    if not transpose:
        return flipped_score(score_fn, x, sigma, dims)
    return flipped_score(score_fn, x.transpose(-1, -2), sigma, dims).transpose(-1, -2)


def alternate_chain_flips(score_fn: ScoreFn, chains: int) -> ScoreFn:
    """``score_fn`` for a batch of ``chains`` chains per image (rows ``b * chains + j``) in which every odd chain
    ``j`` sees its image rotated by 180 degrees (both flips) and its score rotated back.

    With the flip ensemble this gives the chains of one image complementary flips at every level (chain 0: none,
    left-right, up-down, both; chain 1: both, up-down, left-right, none), so their mean averages the network's
    orientation error instead of repeating it. It depends only on ``j``, not on how images are batched, and
    changes nothing for a flip-invariant prior in exact arithmetic.
    """
    if chains < 2:
        return score_fn

    masks: dict[tuple, Tensor] = {}  # the odd-chain mask per (batch, ndim, device): built once, not every level

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        key = (x.shape[0], x.ndim, x.device)
        if key not in masks:
            rows = torch.arange(x.shape[0], device=x.device)
            masks[key] = (rows % chains % 2 == 1).view(-1, *([1] * (x.ndim - 1)))
        odd = masks[key]
        out = score_fn(torch.where(odd, x.flip((-2, -1)), x), sigma)
        return torch.where(odd, out.flip((-2, -1)), out)

    return score


@register_sampler
@dataclass
class PlugAndPlay(Sampler):
    """Annealed HQS plug-and-play with the Tweedie denoiser (see the module docstring)."""

    name = "pnp"
    renoise: float = 0.0
    flips: bool = False
    transposes: bool = False
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.renoise <= 1.0:
            raise ValueError(f"renoise must be in [0, 1], got {self.renoise}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")

    def nfe(self, num_levels: int) -> int:
        return num_levels

    def orientation(self, i: int) -> tuple[tuple[int, ...], bool]:
        """The flip and transpose of level ``i``: the four flips in turn, each block of four transposed every other
        time with ``transposes``; none without ``flips``."""
        if not self.flips:
            return (), False
        return _FLIPS[i % 4], self.transposes and (i // 4) % 2 == 1

    @staticmethod
    def data_step(guidance: Guidance | None, z: Tensor, sigma: float) -> Tensor:
        """The HQS data step on a denoised estimate at level ``sigma``."""
        return z if guidance is None else guidance.proximal(z, sigma)

    def __call__(self, score_fn: ScoreFn, x_init: Tensor, levels: Sequence[float], *, guidance: Guidance | None = None,
                 generator: Generators = None, callback: Callback | None = None,
                 sigma_ref: float | None = None) -> SampleResult:
        lv = as_levels(levels)
        x = x_init.detach().clone()
        previous = x  # the estimate before the last one (the warm start at first), for the momentum
        with torch.no_grad():
            rows = sigma_rows(lv, x)
            for i, sigma in enumerate(lv):
                z = x
                if i > 0:
                    if self.momentum > 0:
                        z = z + self.momentum * (x - previous)
                    if self.renoise > 0:
                        z = z + self.renoise * sigma * noise_like(x, generator)
                dims, transpose = self.orientation(i)
                score = oriented_score(score_fn, z, rows[i], dims, transpose)
                previous, x = x, self.data_step(guidance, z + sigma**2 * score, sigma)
                if callback is not None:
                    callback(i, len(lv), x)
        return SampleResult(x=x.clone(), nfe=len(lv))
