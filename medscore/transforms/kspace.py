"""Retrospective k-space undersampling as MONAI transforms, with medscore's single-coil operator.

MONAI's ``RandomKspaceMask`` / ``EquispacedKspaceMask`` take k-space and return the zero-filled
root-sum-of-squares image; medscore's solvers need the masked, centred orthonormal k-space of a real
image and its zero-filled magnitude computed with the same operator the solver projects with
(:class:`medscore.physics.SingleCoilMRI`), so the two cannot drift apart. A MONAI mask transform can
still be given: its line pattern (the semantics users know) is drawn and applied here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.apps.reconstruction.transforms.array import KspaceMask
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import convert_to_tensor

from ..physics import SingleCoilMRI, validate_mask

__all__ = ["KspaceUndersample", "KspaceUndersampled", "KspaceUndersampleD", "KspaceUndersampleDict"]


class KspaceUndersample(Randomizable, Transform):
    """Real image (H, W) or stack (N, H, W) -> ``(masked k-space, zero-filled magnitude)``.

    ``mask``: a fixed 0/1 mask, (W,) lines or (H, W), or a MONAI ``KspaceMask`` whose random line
    pattern (over W) is drawn on every call (``set_random_state`` seeds it). The k-space is complex64
    of the input's shape, ``M F x`` with F the centred orthonormal 2D FFT; the zero-filled image is
    ``|F^H M F x|`` (float32), the baseline medscore reports.
    """

    def __init__(self, mask: NdarrayOrTensor | KspaceMask) -> None:
        self.mask = mask
        self.last_mask: np.ndarray | None = None

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> KspaceUndersample:
        super().set_random_state(seed, state)
        if isinstance(self.mask, KspaceMask):
            self.mask.set_random_state(seed, state)
        return self

    def randomize(self, data: tuple[int, int]) -> None:
        """Draw the mask for slices of shape ``data`` = (H, W) (a fixed mask is only validated)."""
        h, w = data
        if isinstance(self.mask, KspaceMask):
            self.mask(torch.zeros((1, h, w, 2)))  # MONAI draws its pattern over the W columns of complex k-space
            self.last_mask = np.asarray(self.mask.mask, dtype=np.float32).reshape(w)
        else:
            self.last_mask = validate_mask(self.mask, (h, w))

    def __call__(self, img: NdarrayOrTensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = convert_to_tensor(img, dtype=torch.float32, track_meta=False)
        if x.ndim not in (2, 3):
            raise ValueError(f"KspaceUndersample expects (H, W) or (N, H, W), got {tuple(x.shape)}")
        shape = tuple(x.shape)
        self.randomize(shape[-2:])
        op = SingleCoilMRI(torch.from_numpy(np.ascontiguousarray(self.last_mask)), real_input=True)
        y = op.A(x.reshape(-1, 1, *shape[-2:]))
        return y.reshape(shape), op.zero_filled_magnitude(y).reshape(shape)


class KspaceUndersampled(Randomizable, MapTransform):
    """Dictionary version: ``d[f"{key}_kspace"]`` and ``d[f"{key}_zerofilled"]`` from ``d[key]``, plus
    ``d[f"{key}_mask"]`` (the mask used). Channel-first (1, H, W) inputs are undersampled per channel."""

    def __init__(self, keys: KeysCollection, mask: NdarrayOrTensor | KspaceMask,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.undersample = KspaceUndersample(mask)

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> KspaceUndersampled:
        super().set_random_state(seed, state)
        self.undersample.set_random_state(seed, state)
        return self

    def randomize(self, data: tuple[int, int]) -> None:
        self.undersample.randomize(data)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[f"{key}_kspace"], d[f"{key}_zerofilled"] = self.undersample(d[key])
            d[f"{key}_mask"] = self.undersample.last_mask
        return d


KspaceUndersampleD = KspaceUndersampleDict = KspaceUndersampled
