"""Inpainting: ``y = m * x`` with a 0/1 pixel mask."""

from __future__ import annotations

from torch import Tensor

from .base import MaskedUnitary

__all__ = ["Inpainting"]


class Inpainting(MaskedUnitary):
    """``y = m * x``; ``mask`` is (H, W) (1 = known pixel), broadcast over (B, C, H, W).

    ``y`` has the image's shape with zeros at unknown pixels; ``project(x, y)`` keeps ``x`` at unknown
    pixels and takes ``y`` at known ones.
    """

    def T(self, x: Tensor) -> Tensor:
        return x

    def T_adjoint(self, k: Tensor) -> Tensor:
        return k
