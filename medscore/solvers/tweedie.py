"""Denoising in one step: Tweedie's formula with the score averaged over the image's symmetries."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..nets.accelerate import autocast_score, chunked_score, images_per_call
from .driver import ScoreModel, SolverResult

__all__ = ["DENOISE_METHODS", "tweedie_denoise"]

DENOISE_METHODS = ("tweedie", "sampler", "langevin")


#: the four flips of the last two axes; :func:`tweedie_denoise` also uses each with those axes transposed
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _dihedral(x: Tensor, flip: tuple[int, ...], transpose: bool) -> Tensor:
    x = x.flip(flip) if flip else x
    return x.transpose(-1, -2) if transpose else x


def _undo_dihedral(x: Tensor, flip: tuple[int, ...], transpose: bool) -> Tensor:
    x = x.transpose(-1, -2) if transpose else x
    return x.flip(flip) if flip else x


def tweedie_denoise(model: ScoreModel, image: Tensor, noise_std: float, flip_average: bool = True,
                    transpose: bool = True, precision: str = "auto", network_batch: int | None = None) -> SolverResult:
    """One-step MMSE estimate x + sigma^2 s(x, sigma), the score averaged over symmetries of the image.

    ``flip_average``: over the four horizontal/vertical flips (4 NFE); the prior was trained with flips, so
    its exact score is flip-equivariant and averaging only removes network error (+0.3 dB on the validation
    slab). ``transpose`` (with ``flip_average``): the same four with the in-plane axes swapped as well, the
    whole dihedral group (8 NFE). The prior never saw transposed images, but at denoising noise levels its
    score is local, and the transposed evaluations added 0.11-0.12 dB at sigma 0.05 and 0.1 on the validation
    slab (docs/benchmarks.md, "a fine-level expert and the 8-NFE Tweedie denoiser"). medscore's networks are
    fully convolutional, so any image shape works; a score model that only takes one in-plane shape needs
    ``transpose=False`` for non-square images. ``precision`` and ``network_batch`` (images per network call at
    most, e.g. for a whole volume): as :class:`SamplerOptions`'.
    """
    t0 = time.perf_counter()
    s = torch.full((image.shape[0],), float(noise_std), device=image.device, dtype=image.dtype)
    transposes = (False, True) if transpose else (False,)
    group = [(f, t) for t in transposes for f in _FLIPS] if flip_average else [((), False)]
    rows = images_per_call(image.shape[-2:], image.device)
    rows = network_batch if rows is None else min(rows, network_batch or rows)
    net = chunked_score(autocast_score(model, precision, image.device), rows)
    with torch.inference_mode():
        score = sum(_undo_dihedral(net(_dihedral(image, f, t), s), f, t) for f, t in group) / len(group)
        out = image + noise_std**2 * score
    return SolverResult(out, None, len(group), time.perf_counter() - t0)


