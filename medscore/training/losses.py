"""Denoising score matching (Vincent 2011) over noise levels, weighted by lambda(sigma) = sigma^2."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["ScoreFn", "dsm_loss"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def dsm_loss(score_fn: ScoreFn, x: Tensor, sigma: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mean over the batch of ``1/2 * sigma^2 * || s(x + sigma z, sigma) + z / sigma ||^2``.

    ``sigma`` has one entry per sample. With the sigma^2 weighting every level contributes on the
    same scale: the loss equals ``1/2 || sigma s + z ||^2`` (the NCSN "anneal_power = 2" objective).
    """
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    s = sigma.view(-1, *([1] * (x.ndim - 1)))
    score = score_fn(x + s * z, sigma)
    return 0.5 * (s * score.float() + z).pow(2).flatten(1).sum(1).mean()
