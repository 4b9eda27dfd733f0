"""Inpainting: ``y = m * x`` with a 0/1 pixel mask."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MaskedUnitary

__all__ = ["Inpainting", "largest_hole_radius"]


class Inpainting(MaskedUnitary):
    """``y = m * x``; ``mask`` is (H, W) (1 = known pixel), broadcast over (B, C, H, W).

    ``y`` has the image's shape with zeros at unknown pixels; ``project(x, y)`` keeps ``x`` at unknown
    pixels and takes ``y`` at known ones.
    """

    def T(self, x: Tensor) -> Tensor:
        return x

    def T_adjoint(self, k: Tensor) -> Tensor:
        return k


def largest_hole_radius(mask: Tensor) -> Tensor:
    """Per image, the largest distance in pixels from an unknown pixel to the nearest known one (0 when every
    pixel is known). ``mask`` is (H, W) or (B, ..., H, W), 1 = known; returns a (B,) tensor ((1,) for (H, W)).

    It tells scattered missing pixels (radius 1-3) from large holes (a box of side 2r has radius ~r), which need a
    chain started at a higher noise level. scipy's Euclidean distance transform does the work.
    """
    from scipy.ndimage import distance_transform_edt

    m = mask.detach().cpu().float()
    m = m.reshape(-1, *m.shape[-2:]) if m.ndim > 2 else m[None]
    radii = [float(distance_transform_edt(mi.numpy() < 0.5).max()) if bool((mi < 0.5).any()) else 0.0
             for mi in m.reshape(m.shape[0], *m.shape[-2:])]
    return torch.tensor(radii)
