"""Array transforms medscore adds to MONAI's: invertible robust scaling and tissue-contrast randomisation.

MONAI's ``ScaleIntensityRangePercentiles`` does not remember the scale it applied, and outputs must
be mapped back to the scanner's units, so :class:`RobustScaleIntensity` records ``(lo, hi)``: in
``last_scale`` and, for tensors, on the ``MetaTensor``'s ``applied_operations`` (MONAI's invertible
transform protocol), so ``Compose([...]).inverse`` restores scanner units.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, RandomizableTransform
from monai.utils import TraceKeys, TransformBackends, convert_to_tensor

__all__ = ["RobustScaleIntensity", "unscale_intensity", "RandTissueContrast", "extract_slices"]


class RobustScaleIntensity(InvertibleTransform):
    """Map intensities so the ``lower`` percentile goes to 0 and the ``upper`` one to 1 (no clipping).

    After a call, ``self.last_scale`` holds ``(lo, hi)`` so :func:`unscale_intensity` can undo it.
    NumPy arrays stay NumPy arrays (no metadata to carry the scale); tensors come back as
    ``MetaTensor`` with the scale pushed on ``applied_operations``, and :meth:`inverse` pops it.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, lower: float = 0.0, upper: float = 99.5) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
        self.lower, self.upper = lower, upper
        self.last_scale: tuple[float, float] = (0.0, 1.0)

    def scale_of(self, img: NdarrayOrTensor) -> tuple[float, float]:
        """``(lo, hi)``: the two percentiles of the finite values (``hi`` = max if they coincide)."""
        arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            raise ValueError("image has no finite values")
        # np.percentile, not MONAI's percentile helper: the recorded scale must not depend on the backend
        lo, hi = (float(v) for v in np.percentile(arr, [self.lower, self.upper]))
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            hi = float(arr.max())
            if hi - lo <= 1e-12 * max(1.0, abs(hi)):
                raise ValueError("image is constant: it cannot be scaled to [0, 1]")
        return lo, hi

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        lo, hi = self.scale_of(img)
        self.last_scale = (lo, hi)
        if not isinstance(img, torch.Tensor):
            return (img - lo) / (hi - lo)
        out = convert_to_tensor((img - lo) / (hi - lo), track_meta=get_track_meta())
        if isinstance(out, MetaTensor):
            self.push_transform(out, extra_info={"lo": lo, "hi": hi})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Scanner units again, with the ``(lo, hi)`` this transform recorded on ``data``."""
        if not isinstance(data, MetaTensor):
            raise ValueError("RobustScaleIntensity.inverse needs the MetaTensor it returned (use unscale_intensity for "
                             "arrays)")
        info = self.pop_transform(data)[TraceKeys.EXTRA_INFO]
        return unscale_intensity(data, (info["lo"], info["hi"]))


def unscale_intensity(img: NdarrayOrTensor, scale: tuple[float, float]) -> NdarrayOrTensor:
    """Inverse of :class:`RobustScaleIntensity` for a recorded ``(lo, hi)``."""
    lo, hi = scale
    return img * (hi - lo) + lo


class RandTissueContrast(RandomizableTransform):
    """Synthesise a new MR contrast from tissue maps: channels (T1, GM, WM) in, one channel out.

    CSF/other brain tissue is ``brain - GM - WM`` with the brain mask from the T1 channel. With
    probability ``prob`` the output is ``c_gm GM + c_wm WM + c_csf CSF`` with random intensities in
    ``[low, 1]`` (T1-, T2- and PD-like orderings all occur); otherwise the T1 channel is kept.
    The result is rescaled so its 99.5th percentile is 1. A one-channel image (a scan without tissue maps)
    is returned as it is.
    """

    def __init__(self, prob: float = 0.5, low: float = 0.05, brain_threshold: float = 0.05) -> None:
        RandomizableTransform.__init__(self, prob)
        self.low, self.brain_threshold = low, brain_threshold
        self._c = np.ones(3)

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self._c = self.R.uniform(self.low, 1.0, size=3)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if img.shape[0] == 1:
            return img
        if img.shape[0] != 3:
            raise ValueError(f"RandTissueContrast expects channels (T1, GM, WM), got {img.shape[0]} channels")
        if randomize:
            self.randomize()
        t1 = img[0:1]
        if not self._do_transform:
            return t1
        gm, wm = img[1:2], img[2:3]
        brain = (t1 > self.brain_threshold) * 1.0
        csf = (brain - gm - wm).clip(0.0, 1.0)
        out = self._c[0] * gm + self._c[1] * wm + self._c[2] * csf
        q = torch.quantile(out.flatten(), 0.995) if isinstance(out, torch.Tensor) else np.percentile(out, 99.5)
        return out / max(float(q), 1e-6)


def extract_slices(volume: NdarrayOrTensor, axis: int, threshold: float, min_fraction: float) -> list[np.ndarray]:
    """2D slices (C, H, W) of a channel-first volume (C, X, Y, Z) along spatial ``axis`` (0, 1 or 2).

    Slices whose first channel has fewer than ``min_fraction`` of pixels above ``threshold`` are dropped.
    """
    vol = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if vol.ndim != 4:
        raise ValueError(f"expected a channel-first 3D volume (C, X, Y, Z), got shape {vol.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")
    moved = np.moveaxis(vol, axis + 1, 1)  # (C, N, H, W)
    fg = (moved[0] > threshold).reshape(moved.shape[1], -1).mean(axis=1)
    return [np.ascontiguousarray(moved[:, i], dtype=np.float32) for i in np.flatnonzero(fg >= min_fraction)]
