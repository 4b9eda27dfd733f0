"""Sampler presets: which of the model's noise levels to visit, steps per level, and the step size.

Step size (technique 4 of Song & Ermon 2020). For data that is a single point, T steps at level
sigma_i started from N(0, gamma^2 sigma_i^2 I) (a sample of the previous level, gamma = sigma_{i-1}/sigma_i)
end with variance f * sigma_i^2, where, with r = eps / (2 sigma_L^2) (the ncsnv2 eps is ours / 2),

    f(r) = (1 - r)^(2T) (gamma^2 - 2/(2 - r)) + 2/(2 - r).

The rule picks the eps that brings f closest to 1. f is a convex combination of gamma^2 > 1 and
2/(2 - r) > 1, so f > 1 always: "a root" here means a minimiser with f - 1 <= ``tol``. Coarse
schedules (large gamma, small T) have none.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from torch import Tensor

from .levels import levels_tensor

__all__ = ["FALLBACK_R_SINGLE_LEVEL", "schedule_ratio", "ncsnv2_variance_ratio", "ncsnv2_step_size",
           "resolve_step_size"]

# NCSN (2019) used eps = 2e-5 with sigma_L = 0.01, i.e. alpha_L = 0.2 sigma_L^2 (r = 0.1).
FALLBACK_R_SINGLE_LEVEL = 0.1


def schedule_ratio(sigmas: Tensor | Sequence[float]) -> float:
    """Mean ratio gamma = sigma_{i-1} / sigma_i of a schedule (geometric mean over its steps)."""
    sig = levels_tensor(sigmas).double()
    if len(sig) < 2:
        raise ValueError("a ratio needs at least two levels")
    return math.exp(math.log(float(sig[0]) / float(sig[-1])) / (len(sig) - 1))


def _criterion(r: np.ndarray | float, gamma: float, n_steps_each: int) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    stat = 2.0 / (2.0 - r)  # stationary variance of the discretised chain, in units of sigma_i^2
    return (1.0 - r) ** (2 * n_steps_each) * (gamma**2 - stat) + stat


def ncsnv2_variance_ratio(eps: float, sigmas: Tensor | Sequence[float], n_steps_each: int) -> float:
    """f above, for step size ``eps`` (alpha_L = eps at sigma_L = ``sigmas[-1]``) on this schedule."""
    sig_l = float(levels_tensor(sigmas).reshape(-1)[-1])
    return float(_criterion(eps / (2 * sig_l**2), schedule_ratio(sigmas), n_steps_each))


def _best_r(gamma: float, n_steps_each: int) -> tuple[float, float]:
    """Minimiser of f over r in (0, 1] and the minimum: a log grid, then golden-section refinement."""
    grid = np.logspace(-8, 0, 4001)
    k = int(np.argmin(_criterion(grid, gamma, n_steps_each)))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if _criterion(a, gamma, n_steps_each) < _criterion(b, gamma, n_steps_each):
            hi = b
        else:
            lo = a
    r = 0.5 * (lo + hi)
    return r, float(_criterion(r, gamma, n_steps_each))


def ncsnv2_step_size(
    sigmas: Tensor | Sequence[float], n_steps_each: int, *, tol: float = 0.1
) -> float | None:
    """eps (Algorithm 1 convention, at sigma_L = ``sigmas[-1]``) that brings f closest to 1, or
    ``None`` when even the best eps leaves f - 1 > ``tol`` (or the schedule has a single level)."""
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each must be >= 1, got {n_steps_each}")
    sig = levels_tensor(sigmas)
    if len(sig) < 2:
        return None
    r, f = _best_r(schedule_ratio(sig), n_steps_each)
    if f - 1.0 > tol:
        return None
    return 2.0 * r * float(sig[-1]) ** 2


def resolve_step_size(
    sigmas: Tensor | Sequence[float],
    n_steps_each: int,
    eps: float | None = None,
    multiplier: float = 1.0,
    *,
    sigma_ref: float | None = None,
    tol: float = 0.1,
) -> float:
    """Step size eps for :func:`annealed_langevin` on ``sigmas`` with reference level ``sigma_ref``.

    1. An explicit ``eps`` wins (returned unchanged).
    2. Otherwise the NCSNv2 rule (:func:`ncsnv2_step_size`) times ``multiplier``.
    3. Fallback when the rule has no root: the minimiser of f anyway (the literal "as close to 1 as
       possible" of technique 4; the chain then ends each level with f sigma_i^2 variance) times
       ``multiplier``; for a single level, NCSN's alpha_L = 0.2 sigma_L^2 times ``multiplier``.
    """
    if eps is not None:
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        return float(eps)
    if multiplier <= 0:
        raise ValueError(f"multiplier must be > 0, got {multiplier}")
    sig = levels_tensor(sigmas)
    sig_l = float(sig[-1])
    rule = ncsnv2_step_size(sig, n_steps_each, tol=tol)
    if rule is not None:
        alpha_l = rule
    elif len(sig) >= 2:
        alpha_l = 2.0 * _best_r(schedule_ratio(sig), n_steps_each)[0] * sig_l**2
    else:
        alpha_l = 2.0 * FALLBACK_R_SINGLE_LEVEL * sig_l**2
    ref = sig_l if sigma_ref is None else float(sigma_ref)
    return multiplier * alpha_l * (ref / sig_l) ** 2
