"""Forward operators, data-consistency steps and k-space masks for inverse problems."""

from __future__ import annotations

from .base import LinearOperator, MaskedUnitary, real_inner
from .coils import (calibration_width, estimate_image_maps, estimate_smaps, estimate_smaps_volume, map_correlation,
                    real_image_phase, smooth_image_phase)
from .consistency import DataConsistency, GradientStep, HardProjection, NoisyProjection
from .denoising import Denoising, estimate_noise_std
from .inpainting import Inpainting, largest_hole_radius
from .masks import MaskError, acceleration, expand_mask, make_mask, validate_mask
from .mri import MultiCoilMRI, SingleCoilMRI, channels_to_complex, complex_to_channels, fft2c, ifft2c, normalize_smaps
from .simulate import SimulatedAcquisition, birdcage_smaps, random_phase, simulate_multicoil

__all__ = [
    "LinearOperator",
    "MaskedUnitary",
    "real_inner",
    "Inpainting",
    "largest_hole_radius",
    "estimate_smaps",
    "estimate_smaps_volume",
    "calibration_width",
    "map_correlation",
    "real_image_phase",
    "smooth_image_phase",
    "estimate_image_maps",
    "SimulatedAcquisition",
    "simulate_multicoil",
    "birdcage_smaps",
    "random_phase",
    "Denoising",
    "estimate_noise_std",
    "SingleCoilMRI",
    "MultiCoilMRI",
    "fft2c",
    "ifft2c",
    "channels_to_complex",
    "complex_to_channels",
    "normalize_smaps",
    "DataConsistency",
    "HardProjection",
    "NoisyProjection",
    "GradientStep",
    "MaskError",
    "make_mask",
    "expand_mask",
    "validate_mask",
    "acceleration",
]
