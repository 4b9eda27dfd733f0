"""Sampling with score priors: a registry of samplers (annealed Langevin, predictor-corrector, DDIM, plug-and-play),
presets as data, noise-level schedules, the NCSNv2 step-size rule and toy analytic scores."""

from __future__ import annotations

from .base import SAMPLERS, Guidance, SampleResult, Sampler, build_sampler, register_sampler, sampler_names
from .langevin import Callback, Consistency, LangevinResult, ScoreFn, annealed_langevin, langevin
from .ald import AnnealedLangevin
from .ddim import DenoisingDiffusion
from .pc import PredictorCorrector
from .pnp import PlugAndPlay
from .levels import select_level_indices, select_levels
from .presets import PRESETS, Preset, preset_table, presets_to_json
from .step_size import ncsnv2_step_size, ncsnv2_variance_ratio, resolve_step_size, schedule_ratio

__all__ = [
    "Callback", "Consistency", "Guidance", "LangevinResult", "SampleResult", "ScoreFn",
    "Sampler", "SAMPLERS", "register_sampler", "build_sampler", "sampler_names",
    "AnnealedLangevin", "PredictorCorrector", "DenoisingDiffusion", "PlugAndPlay",
    "annealed_langevin", "langevin",
    "PRESETS", "Preset", "preset_table", "presets_to_json",
    "ncsnv2_step_size", "ncsnv2_variance_ratio", "resolve_step_size", "schedule_ratio",
    "select_level_indices", "select_levels",
]
