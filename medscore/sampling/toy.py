"""Analytic scores and exact samplers for toy distributions (tests and figures).

Perturbing data with N(0, sigma^2 I) turns N(mu, s^2 I) into N(mu, (s^2 + sigma^2) I), and an isotropic
Gaussian mixture into the same mixture with every component variance raised by sigma^2, so the
scores below are exact at every noise level. Samples are (B, *shape); ``sigma`` is (B,).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .langevin import ScoreFn

__all__ = [
    "TWO_MODE_MEANS",
    "TWO_MODE_WEIGHTS",
    "gaussian_score",
    "mixture_score",
    "sample_gaussian",
    "sample_mixture",
    "nearest_mode",
    "mode_weights",
]

# Song & Ermon (2019), Section 3.2.2 / Figure 3: p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I)
TWO_MODE_MEANS: tuple[tuple[float, float], ...] = ((-5.0, -5.0), (5.0, 5.0))
TWO_MODE_WEIGHTS: tuple[float, ...] = (0.2, 0.8)


def _per_sample(sigma: Tensor, x: Tensor) -> Tensor:
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))


def gaussian_score(mu: float | Tensor, s: float) -> ScoreFn:
    """Score of N(mu, s^2 I) perturbed at sigma: ``-(x - mu) / (s^2 + sigma^2)``.

    ``mu`` is a float or a tensor broadcastable to one sample; ``s = 0`` gives a point mass at ``mu``.
    """
    if s < 0:
        raise ValueError(f"s must be >= 0, got {s}")

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        m = torch.as_tensor(mu, dtype=x.dtype, device=x.device)
        return (m - x) / (s**2 + _per_sample(sigma, x) ** 2)

    return score


def _mixture_params(
    means: Sequence[Sequence[float]] | Tensor, weights: Sequence[float] | Tensor
) -> tuple[Tensor, Tensor]:
    mu = torch.as_tensor(means, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if mu.ndim != 2 or len(mu) != len(w):
        raise ValueError(f"need means (K, D) and K weights, got {tuple(mu.shape)} and {len(w)}")
    if bool((w <= 0).any()):
        raise ValueError("mixture weights must be > 0")
    return mu, w / w.sum()


def mixture_score(
    means: Sequence[Sequence[float]] | Tensor = TWO_MODE_MEANS,
    weights: Sequence[float] | Tensor = TWO_MODE_WEIGHTS,
    s: float = 1.0,
) -> ScoreFn:
    """Exact score of sum_k w_k N(mu_k, s^2 I) perturbed at sigma (default: the paper's two-mode mixture).

    With v = s^2 + sigma^2, the score is sum_k r_k(x) (mu_k - x) / v, where the responsibilities
    r_k = softmax_k(log w_k - |x - mu_k|^2 / (2 v)) are computed with logsumexp, so points far from
    every mode stay finite. Samples are flattened to D = prod(shape) dimensions.
    """
    mu64, w64 = _mixture_params(means, weights)
    if s < 0:
        raise ValueError(f"s must be >= 0, got {s}")

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != mu64.shape[1]:
            raise ValueError(f"samples have {flat.shape[1]} dimensions, the means {mu64.shape[1]}")
        mu = mu64.to(dtype=x.dtype, device=x.device)
        v = s**2 + torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1) ** 2  # (B, 1)
        sq = torch.cdist(flat, mu).pow(2)  # (B, K)
        logits = torch.log(w64.to(dtype=x.dtype, device=x.device)) - sq / (2 * v)
        resp = torch.softmax(logits, dim=1)  # logsumexp-normalised responsibilities
        return ((resp @ mu - flat) / v).reshape(x.shape)

    return score


def sample_gaussian(
    mu: float | Tensor, s: float, shape: Sequence[int], generator: torch.Generator | None = None
) -> Tensor:
    """Exact samples of N(mu, s^2 I) of the given shape (float32)."""
    z = torch.randn(tuple(shape), generator=generator)
    return torch.as_tensor(mu, dtype=z.dtype) + s * z


def sample_mixture(
    n: int,
    means: Sequence[Sequence[float]] | Tensor = TWO_MODE_MEANS,
    weights: Sequence[float] | Tensor = TWO_MODE_WEIGHTS,
    s: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n`` exact samples (n, D) of the isotropic mixture (default: the two-mode mixture)."""
    mu, w = _mixture_params(means, weights)
    comp = torch.multinomial(w, n, replacement=True, generator=generator)
    z = torch.randn((n, mu.shape[1]), generator=generator, dtype=torch.float64)
    return (mu[comp] + s * z).float()


def nearest_mode(x: Tensor, means: Sequence[Sequence[float]] | Tensor = TWO_MODE_MEANS) -> Tensor:
    """Index of the nearest mean for each sample (B,)."""
    mu = torch.as_tensor(means, dtype=x.dtype, device=x.device)
    return torch.cdist(x.reshape(x.shape[0], -1), mu).argmin(dim=1)


def mode_weights(x: Tensor, means: Sequence[Sequence[float]] | Tensor = TWO_MODE_MEANS) -> Tensor:
    """Fraction of samples nearest to each mean (K,), float64."""
    k = torch.as_tensor(means).shape[0]
    return torch.bincount(nearest_mode(x, means), minlength=k).double() / x.shape[0]
