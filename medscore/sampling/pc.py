"""Predictor-corrector sampling for the variance-exploding SDE (Song et al., ICLR 2021, Algorithm 2).

At each level sigma_i: ``n_corrector`` Langevin corrector steps whose size follows the
signal-to-noise rule ``eps = 2 (snr ||z|| / ||s||)^2`` (per sample), then the reverse-diffusion
predictor to the next level in its ancestral form (score_sde's ``AncestralSamplingPredictor`` for the
VE SDE),

    x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + sigma_{i+1} sqrt(1 - sigma_{i+1}^2 / sigma_i^2) z.

The Euler-Maruyama form (noise sqrt(sigma_i^2 - sigma_{i+1}^2) z) adds too much noise on coarse level
schedules: with 100 levels from 20 to 0.01 it moved the seed's mixture weights from 0.2 to 0.24;

the last level ends with the Tweedie step x + sigma_L^2 s(x, sigma_L). ``guidance.noisy`` follows
every update. The snr rule adapts the step to how far the iterate is from the level's typical set,
which keeps large unmeasured regions (box inpainting) stable where a fixed step multiplier diverges.
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

__all__ = ["PredictorCorrector"]


def _per_sample_norm(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1).reshape(-1, *([1] * (t.ndim - 1)))


@register_sampler
@dataclass
class PredictorCorrector(Sampler):
    """Reverse-diffusion predictor + ``n_corrector`` Langevin corrector steps at signal-to-noise ``snr``."""

    name = "pc"
    n_corrector: int = 1
    snr: float = 0.16

    def __post_init__(self) -> None:
        if self.n_corrector < 0 or not self.snr > 0:
            raise ValueError(f"need n_corrector >= 0 and snr > 0, got {self.n_corrector}, {self.snr}")

    def nfe(self, num_levels: int) -> int:
        return num_levels * (1 + self.n_corrector)

    @property
    def follows_reverse_process(self) -> bool:
        return self.n_corrector == 0

    def _correct(self, x: Tensor, score: Tensor, sigma: float, generator: Generators) -> tuple[Tensor, Tensor]:
        z = noise_like(x, generator)
        eps = 2.0 * (self.snr * _per_sample_norm(z) / _per_sample_norm(score).clamp_min(1e-12)) ** 2
        # Norms are per sample, so slices batched together stay independent (score_sde averages them over the
        # batch). A sample where the score nearly vanishes (between modes) would get a huge step and hop between
        # modes: cap the step at the rule's value for a pure-noise sample (||s|| = ||z|| / sigma), 2 (snr sigma)^2.
        eps = eps.clamp_max(2.0 * (self.snr * sigma) ** 2)
        return x + eps * score + torch.sqrt(2.0 * eps) * z, 2.0 * eps.reshape(-1)

    def __call__(self, score_fn: ScoreFn, x_init: Tensor, levels: Sequence[float], *, guidance: Guidance | None = None,
                 generator: Generators = None, callback: Callback | None = None,
                 sigma_ref: float | None = None) -> SampleResult:
        lv = as_levels(levels)
        x = x_init.detach().clone()
        nfe = 0
        with torch.no_grad():
            rows = sigma_rows(lv, x)
            for i, sigma in enumerate(lv):
                for _ in range(self.n_corrector):
                    x, step = self._correct(x, score_fn(x, rows[i]), sigma, generator)
                    x = x if guidance is None else guidance.noisy(x, sigma, step)
                score = score_fn(x, rows[i])
                nfe += self.n_corrector + 1
                nxt = lv[i + 1] if i + 1 < len(lv) else 0.0
                d = sigma**2 - nxt**2
                x = x + d * score
                if nxt > 0:
                    x = x + nxt * math.sqrt(d) / sigma * noise_like(x, generator)
                x = x if guidance is None else guidance.noisy(x, nxt, 2.0 * d if nxt > 0 else 0.0)
                if callback is not None:
                    callback(i, len(lv), x)
        return SampleResult(x=x.clone(), nfe=nfe)
