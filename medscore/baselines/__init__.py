"""Non-learned baselines: compressed sensing for MRI, classical denoising/inpainting, nearest training slice."""

from __future__ import annotations

from .classical import METHODS, denoise_bm3d, denoise_nlm, denoise_tv, inpaint_biharmonic, tune
from .cs import total_variation, tv_cs, tv_objective, wavelet_cs, wavelet_objective
from .nearest import nearest_training_slice

__all__ = [
    "METHODS",
    "denoise_bm3d",
    "denoise_nlm",
    "denoise_tv",
    "inpaint_biharmonic",
    "nearest_training_slice",
    "total_variation",
    "tune",
    "tv_cs",
    "tv_objective",
    "wavelet_cs",
    "wavelet_objective",
]
