"""Annealed Langevin dynamics (Algorithm 1 of Song & Ermon 2019) as a registered sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import Tensor

from ..rng import Generators
from .base import Callback, Guidance, SampleResult, Sampler, ScoreFn, as_levels, register_sampler
from .langevin import annealed_langevin
from .step_size import resolve_step_size

__all__ = ["AnnealedLangevin"]


@register_sampler
@dataclass
class AnnealedLangevin(Sampler):
    """``n_steps_each`` Langevin steps per level with alpha_i = eps * sigma_i^2 / sigma_ref^2.

    ``eps`` explicit, or the NCSNv2 rule (technique 4) on the visited levels times ``multiplier``
    (see :func:`medscore.sampling.presets.resolve_step_size`, the one place the rule lives).
    ``guidance.noisy`` runs after every step with the step size just used; ``denoise_last`` ends with
    the Tweedie step x + sigma_L^2 s(x, sigma_L) (one more evaluation) followed by ``noisy(x, 0, 0)``.
    """

    name = "ald"
    n_steps_each: int = 3
    eps: float | None = None
    multiplier: float = 1.0
    denoise_last: bool = True

    def nfe(self, num_levels: int) -> int:
        return num_levels * self.n_steps_each + int(self.denoise_last)

    def step_size(self, levels: Sequence[float], sigma_ref: float) -> float:
        """eps of Algorithm 1 at ``sigma_ref`` for these levels."""
        return resolve_step_size(levels, self.n_steps_each, self.eps, self.multiplier, sigma_ref=sigma_ref)

    def __call__(self, score_fn: ScoreFn, x_init: Tensor, levels: Sequence[float], *, guidance: Guidance | None = None,
                 generator: Generators = None, callback: Callback | None = None,
                 sigma_ref: float | None = None) -> SampleResult:
        lv = as_levels(levels)
        ref = lv[-1] if sigma_ref is None else float(sigma_ref)
        eps = self.step_size(lv, ref)
        consistency = None
        if guidance is not None:
            consistency = lambda x, s: guidance.noisy(x, s, eps * (float(s) / ref) ** 2)  # noqa: E731
        return annealed_langevin(score_fn, x_init, lv, n_steps_each=self.n_steps_each, eps=eps, sigma_ref=ref,
                                 consistency=consistency, denoise_last=self.denoise_last, generator=generator,
                                 callback=callback)
