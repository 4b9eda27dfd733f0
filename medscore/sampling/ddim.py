"""Denoiser-based few-step sampler for the variance-exploding process (DDIM on NCSN levels).

At level sigma_i the network gives the Tweedie estimate of the clean image,
``x0 = x + sigma_i^2 s(x, sigma_i)``; the measurements are imposed on ``x0`` exactly
(``guidance.clean``: a closed-form projection for masks, as in DDS / DiffPIR), and the chain moves to the
next level by re-noising the corrected estimate:

    x <- x0 + sqrt(sigma_{i+1}^2 - c^2) eps_hat + c z,   eps_hat = (x - x0_net) / sigma_i,
    c = eta * sigma_{i+1} * sqrt(1 - sigma_{i+1}^2 / sigma_i^2).

``eta = 0`` is deterministic DDIM, ``eta = 1`` ancestral sampling from q(x_{i+1} | x_i, x0) (Song,
Meng & Ermon 2021, in the VE parameterisation). One network evaluation per level; the last level
returns the corrected estimate itself. Noisy measurements cannot be imposed exactly (``guidance.exact``
is False): then the re-noised iterate takes the likelihood step of the posterior score instead,
``guidance.noisy(x, sigma_{i+1}, 2 (sigma_i^2 - sigma_{i+1}^2))``, as a reverse-diffusion step would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..rng import Generators
from .base import (Callback, Guidance, SampleResult, Sampler, ScoreFn, as_levels, noise_like, register_sampler,
                   sigma_rows)

__all__ = ["DenoisingDiffusion"]


@register_sampler
@dataclass
class DenoisingDiffusion(Sampler):
    """DDIM-style sampler; ``eta`` in [0, 1] is the share of fresh noise (see the module docstring)."""

    name = "ddim"
    eta: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")

    def nfe(self, num_levels: int) -> int:
        return num_levels

    @property
    def follows_reverse_process(self) -> bool:
        return True

    def renoise_coefficients(self, sigma: float, sigma_next: float) -> tuple[float, float]:
        """(weight of eps_hat, weight of fresh noise) for the move from ``sigma`` to ``sigma_next``."""
        c = self.eta * sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))
        return math.sqrt(max(0.0, sigma_next**2 - c**2)), c

    def __call__(self, score_fn: ScoreFn, x_init: Tensor, levels: Sequence[float], *, guidance: Guidance | None = None,
                 generator: Generators = None, callback: Callback | None = None,
                 sigma_ref: float | None = None) -> SampleResult:
        lv = as_levels(levels)
        x = x_init.detach().clone()
        with torch.no_grad():
            rows = sigma_rows(lv, x)
            for i, sigma in enumerate(lv):
                x0 = x + sigma**2 * score_fn(x, rows[i])
                if i == len(lv) - 1:
                    x = x0 if guidance is None else guidance.clean(x0, sigma)
                else:
                    eps_hat = (x - x0) / sigma
                    x0 = x0 if guidance is None else guidance.clean(x0, sigma)
                    a, c = self.renoise_coefficients(sigma, lv[i + 1])
                    x = x0 + a * eps_hat
                    if c > 0:
                        x = x + c * noise_like(x, generator)
                    if guidance is not None and not guidance.exact:
                        x = guidance.noisy(x, lv[i + 1], 2.0 * (sigma**2 - lv[i + 1] ** 2))
                if callback is not None:
                    callback(i, len(lv), x)
        return SampleResult(x=x.clone(), nfe=len(lv))
