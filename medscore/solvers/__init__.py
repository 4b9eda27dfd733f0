"""Inverse-problem solvers on tensors: a registered sampler with data consistency, for a trained prior.

``options`` (:class:`SamplerOptions`: a preset and the caller's overrides, checked up front), ``driver``
(:func:`solve`, the one driver every task calls; unconditional :func:`sample`) and ``tweedie`` (the one-step
denoiser). Nothing here knows about files; the tasks (:mod:`medscore.tasks`) build operators and guidance.
"""

from __future__ import annotations

from .driver import (GuidanceFactory, LevelCallback, ScoreModel, SolverResult, model_sigmas, presets_of, repeat_chains,
                     sample, score_function, solve)
from .options import WARM_START, SamplerOptions, check_solver_options
from .tweedie import DENOISE_METHODS, tweedie_denoise

__all__ = ["SolverResult", "SamplerOptions", "check_solver_options", "score_function", "solve", "sample", "presets_of",
           "WARM_START", "model_sigmas", "repeat_chains", "tweedie_denoise", "DENOISE_METHODS", "ScoreModel",
           "LevelCallback", "GuidanceFactory"]
