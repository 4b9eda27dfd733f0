"""The one preprocessing definition shared by training and inference, as a MONAI ``Compose``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, MapTransform, Orientationd

from .dictionary import RobustScaleIntensityd

__all__ = ["inference_transforms"]


def inference_transforms(percentiles: Sequence[float] = (0.0, 99.5), orientation: str | None = "RAS",
                         keys: KeysCollection = "image", track_meta: bool = True,
                         loader: MapTransform | None = None) -> Compose:
    """Read a scan, make it channel-first, reorient it (``None``: keep the stored voxel order), float32,
    robust scaling of ``percentiles`` to [0, 1].

    With ``track_meta`` (inference) the image stays a ``MetaTensor`` that records every invertible step,
    so ``compose.inverse(d)`` (or ``Invertd``) maps a result back to the stored voxel order and the
    scanner's units. ``track_meta=False`` gives plain NumPy arrays, as cached training data are
    (``medscore.training.dataset.load_transforms``). ``loader`` reads the files (default: MONAI's ``LoadImaged``
    with its own choice of reader; training passes medscore's, :class:`medscore.io.readers.LoadScand`).
    """
    lower, upper = (float(p) for p in percentiles)
    load = loader if loader is not None else LoadImaged(keys, image_only=True, dtype=np.float32)
    steps = [load, EnsureChannelFirstd(keys, channel_dim="no_channel")]
    if orientation is not None:
        steps.append(Orientationd(keys, axcodes=orientation))
    data_type = "tensor" if track_meta else "numpy"
    steps.append(EnsureTyped(keys, data_type=data_type, dtype=np.float32, track_meta=track_meta))
    steps.append(RobustScaleIntensityd(keys, lower, upper))
    return Compose(steps)
