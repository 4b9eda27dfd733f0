"""Two-pass multi-coil solves: the smooth phase of a first estimate moves into the coil maps before the main pass.

Coil maps are defined up to a per-pixel complex factor that the image absorbs (``S_k x = (S_k c)(x / c)``), and
the priors applied to the real and imaginary parts of a complex image need a nearly real image
(:mod:`medscore.tasks.coil_phase`). The maps medscore estimates carry the phase of a short TV-CS reconstruction; a first
medscore pass (the preset's ``prepass``) gives a better estimate of the whole image, so its low-passed phase is
moved into the maps too, and the main pass warm-starts from that estimate, rotated to be nearly real, at its own
``sigma_start``. The result is rotated back, so the output keeps the convention of the maps the caller gave.

Why (validation slab, 8 coils, 1D 8x, docs/benchmarks.md "Two-pass multi-coil solves"): 10 + 10 levels gave
28.91 dB against 28.66 for ``fast``'s 20 levels in one pass, and 28.54 for the same two passes without the phase
update, so the gain is the phase, not the restart.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import Tensor

from .coil_phase import PHASE_SMOOTHING
from ..physics import channels_to_complex, complex_to_channels, smooth_image_phase
from ..sampling import Preset, select_levels
from ..solvers import (WARM_START, GuidanceFactory, LevelCallback, SamplerOptions, ScoreModel, SolverResult,
                       model_sigmas, solve)

__all__ = ["solve_two_pass", "PREPASS_SEED_OFFSET"]

#: added to the seeds of the first pass, so its starting noise is independent of the main pass's
PREPASS_SEED_OFFSET = 7919


def solve_two_pass(model: ScoreModel, zero_filled: Tensor, smaps: Tensor, opts: SamplerOptions, preset: Preset,
                   guidance_for: Callable[[Tensor], GuidanceFactory], *, key: str,
                   callback: LevelCallback | None = None) -> SolverResult:
    """The first pass (``preset.first_pass()``) from ``zero_filled`` (B, 2, H, W) with ``smaps`` (B, K, H, W), then
    ``preset`` with the maps times the first estimate's smooth phase; returns the main pass's result rotated back
    to the convention of ``smaps``, with the first pass's cost in ``prepass_nfe`` and ``seconds``.

    ``guidance_for(maps)`` builds the data consistency with the given maps. The std's channel norm (what is
    reported for complex images) does not change under the rotation, so the std is returned as computed.
    """
    first_preset = preset.first_pass()
    assert first_preset is not None, "solve_two_pass needs a preset with a prepass"
    first_cb, main_cb = _split_progress(callback, model, (first_preset, preset))
    if first_preset.prepass:  # a preset of three or more passes: the first pass is itself a two-pass solve
        first = solve_two_pass(model, zero_filled, smaps, _shifted_seeds(opts), first_preset, guidance_for, key=key,
                               callback=first_cb)
    else:
        first = solve(model, zero_filled, _shifted_seeds(opts), key, guidance_for(smaps), start=WARM_START,
                      complex_image=True, callback=first_cb, preset=first_preset)
    phase = smooth_image_phase(first.mean, PHASE_SMOOTHING * max(first.mean.shape[-2:])).to(smaps.dtype)
    start = complex_to_channels(channels_to_complex(first.mean) * phase.conj())
    res = solve(model, start, opts, key, guidance_for(smaps * phase), start=WARM_START, complex_image=True,
                callback=main_cb, preset=preset)
    res.mean = complex_to_channels(channels_to_complex(res.mean) * phase)
    res.prepass_nfe, res.seconds = first.total_nfe, res.seconds + first.seconds
    return res


def _shifted_seeds(opts: SamplerOptions) -> SamplerOptions:
    seeds = None if opts.slice_seeds is None else tuple(s + PREPASS_SEED_OFFSET for s in opts.slice_seeds)
    return dataclasses.replace(opts, seed=opts.seed + PREPASS_SEED_OFFSET, slice_seeds=seeds)


def _split_progress(callback: LevelCallback | None, model: ScoreModel,
                    passes: tuple[Preset, Preset]) -> tuple[LevelCallback | None, LevelCallback | None]:
    """Level callbacks of the two passes that report the levels of both as one count."""
    if callback is None:
        return None, None
    n1, total = (_levels(model_sigmas(model), p) for p in passes)  # the first pass's levels, all levels
    return (lambda i, _t: callback(i, total)), (lambda i, _t: callback(n1 + i, total))


def _levels(sigmas: Tensor, preset: Preset) -> int:
    """Levels visited by ``preset``'s chains, its earlier passes included."""
    first = preset.first_pass()
    own = len(select_levels(sigmas, preset.num_levels, preset.sigma_start or WARM_START, preset.sigma_end))
    return own + (_levels(sigmas, first) if first is not None else 0)
