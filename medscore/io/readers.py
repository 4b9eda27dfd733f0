"""medscore's scan reader as a MONAI ``ImageReader``, so training (MONAI's ``LoadImage``) and inference
(:func:`~medscore.io.scans.load_scan`) read files the same way and refuse the same bad files.

:func:`~medscore.io.scans.load_scan` reads NIfTI with nibabel in stored voxel order, DICOM series with MONAI's
``PydicomReader`` and ``.npy`` with NumPy, and checks the values (finite, not constant, within float32's range for
scaling). :class:`ScanReader` gives MONAI that reader; :class:`LoadScand` is ``LoadImaged`` restricted to it (MONAI's
``LoadImaged(reader=...)`` falls back to its other readers when the given one refuses a file, which would let a file
that medscore refuses at inference into training).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.data import ImageReader
from monai.transforms import LoadImage, MapTransform
from monai.utils import ensure_tuple

from ..errors import InputError
from .scans import Scan, load_scan

__all__ = ["ScanReader", "LoadScand"]

_SUFFIXES = (".nii", ".nii.gz", ".npy", ".dcm")


class ScanReader(ImageReader):
    """A MONAI ``ImageReader`` over :func:`~medscore.io.scans.load_scan`: one scan per file name (or DICOM folder),
    with its affine (RAS), spatial shape and space in the metadata MONAI's transforms use."""

    def __init__(self, series_uid: str | None = None) -> None:
        super().__init__()
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        """NIfTI, NumPy and DICOM files, and folders (DICOM series)."""
        names = [Path(f) for f in ensure_tuple(filename)]
        return all(p.is_dir() or p.name.lower().endswith(_SUFFIXES) for p in names)

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> Scan:
        """The scan named by ``data`` (one path; MONAI passes it as a 1-tuple)."""
        paths = ensure_tuple(data)
        if len(paths) != 1:
            raise InputError(f"one scan per image: got {len(paths)} files ({', '.join(map(str, paths[:3]))}, ...)")
        return load_scan(paths[0], self.series_uid)

    def get_data(self, img: Scan) -> tuple[np.ndarray, dict[str, Any]]:
        """The voxels (float32, stored order) and the metadata of MONAI's readers for them."""
        meta = {"affine": img.affine.copy(), "original_affine": img.affine.copy(),
                "spatial_shape": np.asarray(img.data.shape), "original_channel_dim": float("nan"), "space": "RAS"}
        return img.data, meta


class LoadScand(MapTransform):
    """``LoadImaged`` through :class:`ScanReader` only: every key's file read by medscore's reader, as a
    ``MetaTensor`` (``image_only``) in float32."""

    def __init__(self, keys: KeysCollection, series_uid: str | None = None) -> None:
        super().__init__(keys)
        self.reader = ScanReader(series_uid)
        self.loader = LoadImage(image_only=True, dtype=np.float32)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key], reader=self.reader)
        return d
