"""Noise levels: geometric sigma schedules and the NCSNv2 rules that pick them from data.

Song & Ermon (2020), "Improved techniques for training score-based generative models":
technique 1 sets sigma_1 to the largest pairwise Euclidean distance between training images;
technique 2 picks the ratio gamma = sigma_{i-1}/sigma_i so that a sample perturbed at one level has
about a 50 % chance of looking typical at the next one,
Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) ~= 0.5.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["geometric_sigmas", "max_pairwise_distance", "ncsnv2_num_levels", "auto_sigmas", "sample_levels",
           "levels_up_to"]


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> Tensor:
    """``num_levels`` noise levels from ``sigma_max`` down to ``sigma_min``, equally spaced in log."""
    if not (sigma_max > sigma_min > 0):
        raise ValueError(f"need sigma_max > sigma_min > 0, got {sigma_max}, {sigma_min}")
    if num_levels < 2:
        raise ValueError(f"need at least 2 noise levels, got {num_levels}")
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), num_levels, dtype=torch.float64)).float()


def max_pairwise_distance(images: Tensor, chunk: int = 256) -> float:
    """Largest Euclidean distance between any two images of a (N, ...) stack (technique 1)."""
    flat = images.reshape(images.shape[0], -1).double()
    best = 0.0
    for i in range(0, len(flat), chunk):
        best = max(best, float(torch.cdist(flat[i : i + chunk], flat).max()))
    return best


def _typicality_overlap(gamma: float, dim: int) -> float:
    normal = torch.distributions.Normal(0.0, 1.0)
    a = math.sqrt(2 * dim) * (gamma - 1)
    return float(normal.cdf(torch.tensor(a + 3 * gamma)) - normal.cdf(torch.tensor(a - 3 * gamma)))


def ncsnv2_num_levels(sigma_max: float, sigma_min: float, dim: int, target: float = 0.5) -> int:
    """Number of geometric levels whose ratio meets NCSNv2's technique 2 for data of dimension ``dim``."""
    lo, hi = 1.0 + 1e-9, 10.0  # overlap falls as gamma grows: bisect for overlap == target
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _typicality_overlap(mid, dim) > target:
            lo = mid
        else:
            hi = mid
    gamma = 0.5 * (lo + hi)
    return max(2, math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1)


def auto_sigmas(images: Tensor, sigma_min: float = 0.01, max_levels: int | None = None) -> Tensor:
    """Techniques 1 and 2: sigma_1 from the data, L from the dimension, optionally capped at ``max_levels``."""
    sigma_max = max_pairwise_distance(images)
    dim = images[0].numel()
    levels = ncsnv2_num_levels(sigma_max, sigma_min, dim)
    if max_levels is not None:
        levels = min(levels, max_levels)
    return geometric_sigmas(sigma_max, sigma_min, levels)


def levels_up_to(sigmas: Tensor, sigma_max: float | None) -> Tensor:
    """The levels at or below ``sigma_max`` (all of them for None): those a fine-level expert trains on.

    The network keeps the full table, so it plugs into a ``LevelSplitScore`` beside one trained on all levels.
    """
    if sigma_max is None:
        return sigmas
    kept = sigmas[sigmas <= sigma_max * (1 + 1e-6)]
    if len(kept) == 0:
        raise ValueError(f"no noise level is <= {sigma_max} (the smallest is {float(sigmas.min()):.4g})")
    return kept


def sample_levels(sigmas: Tensor, batch: int, generator: torch.Generator | None = None) -> Tensor:
    """One noise level per sample, drawn uniformly over the L levels (as in NCSN's training)."""
    idx = torch.randint(0, len(sigmas), (batch,), generator=generator, device=sigmas.device)
    return sigmas[idx]
