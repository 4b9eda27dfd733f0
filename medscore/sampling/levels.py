"""Which noise levels a chain visits: geometric sub-schedules of the model's trained levels."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["levels_tensor", "select_level_indices", "select_levels"]


def levels_tensor(model_sigmas: Tensor | Sequence[float]) -> Tensor:
    """The model's levels as a 1D tensor, checked positive and strictly decreasing."""
    sig = torch.as_tensor(model_sigmas).detach().reshape(-1)
    if len(sig) == 0 or bool((sig <= 0).any()):
        raise ValueError("model_sigmas must be a non-empty 1D sequence of positive levels")
    if len(sig) > 1 and bool((sig[1:] >= sig[:-1]).any()):
        raise ValueError("model_sigmas must be strictly decreasing (largest first)")
    return sig


def select_level_indices(
    model_sigmas: Tensor | Sequence[float], num_levels: int | None, sigma_start: float | None = None,
    sigma_end: float | None = None,
) -> Tensor:
    """Indices into ``model_sigmas`` of a geometric sub-schedule (see :func:`select_levels`)."""
    sig = levels_tensor(model_sigmas)
    if sigma_end is not None:
        keep = int((sig.double() >= float(sigma_end) * (1 - 1e-6)).sum())
        if keep == 0:
            raise InputError(f"sigma_end={sigma_end} is above the largest model level {float(sig[0])}")
        sig = sig[:keep]
    if sigma_start is None:
        start = 0
    else:
        # first level <= sigma_start, forgiving float round-off when sigma_start is itself a model level
        below = torch.nonzero(sig.double() <= float(sigma_start) * (1 + 1e-6)).reshape(-1)
        if len(below) == 0:
            raise InputError(f"sigma_start={sigma_start} is below the smallest model level {float(sig[-1])}")
        start = int(below[0])
    available = len(sig) - start
    if num_levels is None or num_levels >= available:
        return torch.arange(start, len(sig))
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return torch.tensor([len(sig) - 1])
    # equal index steps on a geometric schedule are equal ratios
    idx = torch.round(torch.linspace(start, len(sig) - 1, num_levels, dtype=torch.float64)).long()
    return torch.unique_consecutive(idx)


def select_levels(
    model_sigmas: Tensor | Sequence[float], num_levels: int | None, sigma_start: float | None = None,
    sigma_end: float | None = None,
) -> Tensor:
    """Geometric sub-schedule of the model's levels, from the first level <= ``sigma_start`` (default
    sigma_1) down to the last level >= ``sigma_end`` (default sigma_L), both included; at most
    ``num_levels`` levels (``None`` = all of them).

    The values returned are model levels themselves, so index-conditioned networks see trained levels.
    """
    sig = levels_tensor(model_sigmas)
    return sig[select_level_indices(sig, num_levels, sigma_start, sigma_end).to(sig.device)]
