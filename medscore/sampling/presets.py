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
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .langevin import Callback, Consistency, LangevinResult, ScoreFn, annealed_langevin

__all__ = [
    "SamplerPreset",
    "PRESETS",
    "select_level_indices",
    "select_levels",
    "schedule_ratio",
    "ncsnv2_variance_ratio",
    "ncsnv2_step_size",
    "resolve_step_size",
    "nfe_of",
    "run_preset",
    "FALLBACK_R_SINGLE_LEVEL",
]

# NCSN (2019) used eps = 2e-5 with sigma_L = 0.01, i.e. alpha_L = 0.2 sigma_L^2 (r = 0.1).
FALLBACK_R_SINGLE_LEVEL = 0.1


@dataclass(frozen=True)
class SamplerPreset:
    """Plain data describing one sampler setting.

    Attributes:
        name: preset name.
        num_levels: levels taken (geometrically) from the model's schedule; ``None`` = every level.
        n_steps_each: Langevin steps per level (T).
        eps: explicit step size at sigma_L (Algorithm 1 convention); ``None`` = rule times ``multiplier``.
        multiplier: factor on the rule's step size (ignored when ``eps`` is set).
        denoise_last: final Tweedie step (one more evaluation).
        samples: posterior samples averaged into the estimate unless the caller says otherwise.
    """

    name: str
    num_levels: int | None
    n_steps_each: int
    eps: float | None = None
    multiplier: float = 1.0
    denoise_last: bool = True
    samples: int = 1


# NFE per chain = levels x steps + 1 (Tweedie step); chains ("samples") are averaged into the estimate.
# Tuned on the validation slab with the bundled prior (scripts/tune_sampler.py): with warm starts at
# sigma 0.3, a step multiplier of 12 on the NCSNv2 rule (alpha_L ~ 3.8 sigma_L^2 on 33 levels) beat
# 1, 2.5 and 6 on 4x MRI (30.5 vs 29.5 / 25.0 dB at 100 NFE), and at ~200 NFE two 100-NFE chains
# averaged beat four 49-NFE chains (31.9 vs 31.4 dB) and one longer chain. The multipliers apply to
# chains with a measurement projection (MRI, inpainting); see SamplerOptions.unprojected.
#   fast: 33 levels x 3 steps, 1 chain = 100 NFE; default: 2 chains = 200 NFE; best: 8 chains = 800 NFE.
PRESETS: dict[str, SamplerPreset] = {
    "fast": SamplerPreset("fast", num_levels=33, n_steps_each=3, multiplier=12.0),
    "default": SamplerPreset("default", num_levels=33, n_steps_each=3, multiplier=12.0, samples=2),
    "best": SamplerPreset("best", num_levels=33, n_steps_each=3, multiplier=12.0, samples=8),
}


def _levels_tensor(model_sigmas: Tensor | Sequence[float]) -> Tensor:
    sig = torch.as_tensor(model_sigmas).detach().reshape(-1)
    if len(sig) == 0 or bool((sig <= 0).any()):
        raise ValueError("model_sigmas must be a non-empty 1D sequence of positive levels")
    if len(sig) > 1 and bool((sig[1:] >= sig[:-1]).any()):
        raise ValueError("model_sigmas must be strictly decreasing (largest first)")
    return sig


def select_level_indices(
    model_sigmas: Tensor | Sequence[float], num_levels: int | None, sigma_start: float | None = None
) -> Tensor:
    """Indices into ``model_sigmas`` of a geometric sub-schedule (see :func:`select_levels`)."""
    sig = _levels_tensor(model_sigmas)
    if sigma_start is None:
        start = 0
    else:
        # first level <= sigma_start, forgiving float round-off when sigma_start is itself a model level
        below = torch.nonzero(sig.double() <= float(sigma_start) * (1 + 1e-6)).reshape(-1)
        if len(below) == 0:
            raise ValueError(f"sigma_start={sigma_start} is below the smallest model level {float(sig[-1])}")
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
    model_sigmas: Tensor | Sequence[float], num_levels: int | None, sigma_start: float | None = None
) -> Tensor:
    """Geometric sub-schedule of the model's levels, from the first level <= ``sigma_start`` (default
    sigma_1) down to sigma_L, both included; at most ``num_levels`` levels (``None`` = all of them).

    The values returned are model levels themselves, so index-conditioned networks see trained levels.
    """
    sig = _levels_tensor(model_sigmas)
    return sig[select_level_indices(sig, num_levels, sigma_start).to(sig.device)]


def schedule_ratio(sigmas: Tensor | Sequence[float]) -> float:
    """Mean ratio gamma = sigma_{i-1} / sigma_i of a schedule (geometric mean over its steps)."""
    sig = _levels_tensor(sigmas).double()
    if len(sig) < 2:
        raise ValueError("a ratio needs at least two levels")
    return math.exp(math.log(float(sig[0]) / float(sig[-1])) / (len(sig) - 1))


def _criterion(r: np.ndarray | float, gamma: float, n_steps_each: int) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    stat = 2.0 / (2.0 - r)  # stationary variance of the discretised chain, in units of sigma_i^2
    return (1.0 - r) ** (2 * n_steps_each) * (gamma**2 - stat) + stat


def ncsnv2_variance_ratio(eps: float, sigmas: Tensor | Sequence[float], n_steps_each: int) -> float:
    """f above, for step size ``eps`` (alpha_L = eps at sigma_L = ``sigmas[-1]``) on this schedule."""
    sig_l = float(torch.as_tensor(sigmas).reshape(-1)[-1])
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
    sig = _levels_tensor(sigmas)
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
    sig = _levels_tensor(sigmas)
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


def nfe_of(
    preset: SamplerPreset,
    model_sigmas: Tensor | Sequence[float] | None = None,
    sigma_start: float | None = None,
) -> int:
    """Score evaluations of one chain of the preset (on ``model_sigmas`` when given; required if
    ``num_levels`` is None). A warm start keeps the level count, spread over [sigma_L, sigma_start].
    Multiply by ``preset.samples`` for the cost of the averaged estimate."""
    if model_sigmas is None:
        if preset.num_levels is None:
            raise ValueError(f"preset {preset.name!r} uses every model level: pass model_sigmas")
        levels = preset.num_levels
    else:
        levels = len(select_levels(model_sigmas, preset.num_levels, sigma_start))
    return levels * preset.n_steps_each + int(preset.denoise_last)


def run_preset(
    score_fn: ScoreFn,
    x_init: Tensor,
    model_sigmas: Tensor | Sequence[float],
    preset: SamplerPreset | str,
    *,
    sigma_start: float | None = None,
    consistency: Consistency | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> LangevinResult:
    """Select levels (:func:`select_levels`), resolve the step size and run :func:`annealed_langevin`
    with sigma_ref = the model's sigma_L.

    With ``sigma_start``, ``x_init`` should already carry that much noise (see ``warm_start``).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    levels = select_levels(model_sigmas, preset.num_levels, sigma_start)
    sigma_ref = float(_levels_tensor(model_sigmas)[-1])
    eps = resolve_step_size(levels, preset.n_steps_each, preset.eps, preset.multiplier, sigma_ref=sigma_ref)
    return annealed_langevin(
        score_fn, x_init, levels, n_steps_each=preset.n_steps_each, eps=eps, sigma_ref=sigma_ref,
        consistency=consistency, denoise_last=preset.denoise_last, generator=generator, callback=callback,
    )
