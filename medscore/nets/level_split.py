"""Two score networks as one: a cheap one for the high noise levels, a better one for the low ones.

A solver spends most of its network evaluations at noise levels where only the coarse structure of the
image is decided; the fine detail (and most of the final PSNR) comes from the last, low levels. Handing
the levels above ``switch_sigma`` to a cheaper network trained on the same levels (the idea of
noise-level experts, as in eDiff-I, Balaji et al. 2022) cuts the cost at the same weights. Both networks
must have been trained on the same noise levels and image channels; no fine-tuning is involved.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LevelSplitScore"]


def _check_compatible(coarse: nn.Module, fine: nn.Module) -> None:
    """Same noise levels, image channels and spatial dimensions, or ValueError naming the difference."""
    for attr, default in (("in_channels", 1), ("spatial_dims", 2)):
        a, b = getattr(coarse, attr, default), getattr(fine, attr, default)
        if a != b:
            raise ValueError(f"the two networks differ in {attr}: {a} (coarse) against {b} (fine)")
    sc, sf = coarse.sigmas, fine.sigmas  # type: ignore[attr-defined]
    if sc.shape != sf.shape or not torch.allclose(sc.cpu(), sf.cpu(), rtol=1e-5):
        raise ValueError("the two networks were trained on different noise levels: a level split needs the same ones")


class LevelSplitScore(nn.Module):
    """``s(x, sigma)``: ``coarse(x, sigma)`` where sigma > ``switch_sigma``, else ``fine(x, sigma)``, per image.

    It carries the fine network's ``sigmas``, ``in_channels``, ``spatial_dims`` and tuned ``presets``, so
    every solver uses it as it would use the fine network alone.

    Args:
        coarse: the network for the high levels (typically the cheaper one).
        fine: the network for the levels at and below ``switch_sigma``.
        switch_sigma: the noise std (on the [0, 1] intensity scale) where the fine network takes over;
            0 uses the coarse network at every level, anything above the largest level only the fine one.
    """

    def __init__(self, coarse: nn.Module, fine: nn.Module, switch_sigma: float) -> None:
        super().__init__()
        if not (math.isfinite(switch_sigma) and switch_sigma >= 0):
            raise ValueError(f"switch_sigma must be a finite number >= 0, got {switch_sigma}")
        _check_compatible(coarse, fine)
        self.coarse, self.fine, self.switch_sigma = coarse, fine, float(switch_sigma)
        self.in_channels = getattr(fine, "in_channels", 1)
        self.spatial_dims = getattr(fine, "spatial_dims", 2)
        self.flip_invariant = bool(getattr(coarse, "flip_invariant", True) and getattr(fine, "flip_invariant", True))
        self.bf16_inference = bool(getattr(coarse, "bf16_inference", False) and getattr(fine, "bf16_inference", False))
        if getattr(fine, "presets", None) is not None:
            self.presets = fine.presets

    @property
    def sigmas(self) -> Tensor:
        """The noise levels both networks were trained on (the fine network's copy)."""
        return self.fine.sigmas  # type: ignore[return-value]

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        per_image = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        high = per_image > self.switch_sigma
        if bool(high.all()):
            return self.coarse(x, sigma)
        if not bool(high.any()):
            return self.fine(x, sigma)
        out = torch.empty_like(x)  # a batch mixing levels (chains at different levels): each image its network
        out[high] = self.coarse(x[high], per_image[high])
        out[~high] = self.fine(x[~high], per_image[~high])
        return out
