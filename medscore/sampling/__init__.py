"""Sampling with score priors: (annealed) Langevin dynamics, level/step-size presets, toy scores."""

from __future__ import annotations

from .langevin import (
    Callback,
    Consistency,
    LangevinResult,
    ScoreFn,
    annealed_langevin,
    langevin,
    warm_start,
)
from .presets import (
    PRESETS,
    SamplerPreset,
    ncsnv2_step_size,
    ncsnv2_variance_ratio,
    nfe_of,
    resolve_step_size,
    run_preset,
    schedule_ratio,
    select_level_indices,
    select_levels,
)

__all__ = [
    "Callback",
    "Consistency",
    "LangevinResult",
    "ScoreFn",
    "annealed_langevin",
    "langevin",
    "warm_start",
    "PRESETS",
    "SamplerPreset",
    "ncsnv2_step_size",
    "ncsnv2_variance_ratio",
    "nfe_of",
    "resolve_step_size",
    "run_preset",
    "schedule_ratio",
    "select_level_indices",
    "select_levels",
]
