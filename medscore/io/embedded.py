"""The embedded brain MRI: MNI ICBM152 2009 T1 with grey/white-matter maps (1 mm, RAS, uint8).

Split along the axial (z, array axis 2) direction, fixed once for the project:

* test slab ``TEST_SLAB`` = z 76..85 (10 axial slices through the lateral ventricles and basal ganglia);
  used for ``medscore reconstruct`` examples, the demo and the benchmark, never for training;
* validation slab ``VAL_SLAB`` = z 100..101, used to tune classical baselines, sampler step sizes and
  to select checkpoints;
* training uses the rest, minus a guard of ``GUARD`` slices around both slabs. Coronal and sagittal
  training slices are cut only from the sub-volumes below the test slab and above the validation slab,
  so no training image crosses a held-out slice.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from ..transforms.array import RobustScaleIntensity

__all__ = ["TEST_SLAB", "VAL_SLAB", "GUARD", "embedded_path", "load_embedded", "training_blocks", "held_out",
           "save_slab"]

TEST_SLAB = (76, 86)
VAL_SLAB = (100, 102)
GUARD = 3
DEFAULT_PERCENTILES = (0.0, 99.5)
_FILES = {"t1": "mni152_t1.nii.gz", "gm": "mni152_gm.nii.gz", "wm": "mni152_wm.nii.gz"}


def embedded_path(name: str = "t1") -> Path:
    """Path of an embedded volume: ``t1``, ``gm`` or ``wm``."""
    return Path(str(resources.files("medscore") / "data" / _FILES[name]))


def load_embedded() -> tuple[np.ndarray, np.ndarray]:
    """``(volume, affine)``: channels (T1, GM, WM) as float32, shape (3, X, Y, Z).

    T1 is scaled with the same rule as user scans (percentiles 0 and 99.5 to 0 and 1); the tissue maps
    are probabilities in [0, 1].
    """
    imgs = [nib.load(embedded_path(k)) for k in _FILES]
    vol = np.stack([np.asarray(img.dataobj, dtype=np.float32) / 255.0 for img in imgs])
    vol[0] = RobustScaleIntensity(*DEFAULT_PERCENTILES)(vol[0])
    return vol, imgs[0].affine


def training_blocks(volume: np.ndarray) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """Training sub-volumes and the slice axes allowed in each: ``[(block, axes), ...]``."""
    z = volume.shape[-1]
    lo_test, hi_test = TEST_SLAB[0] - GUARD, TEST_SLAB[1] + GUARD
    lo_val, hi_val = VAL_SLAB[0] - GUARD, VAL_SLAB[1] + GUARD
    return [
        (volume[..., :lo_test], (0, 1, 2)),
        (volume[..., hi_test:lo_val], (2,)),  # thin slab between test and validation: axial slices only
        (volume[..., hi_val:z], (0, 1, 2)),
    ]


def held_out(which: str = "test") -> np.ndarray:
    """The T1 slices of the test or validation slab as (N, H, W) float32 in [0, 1], axial, RAS."""
    lo, hi = {"test": TEST_SLAB, "val": VAL_SLAB}[which]
    vol, _ = load_embedded()
    return np.ascontiguousarray(np.moveaxis(vol[0, :, :, lo:hi], -1, 0))


def save_slab(which: str, path: str | Path) -> Path:
    """Write the test or validation slab of the embedded T1 as a NIfTI "scan" (stored uint8 units, true affine)."""
    from .atomic import atomic_path

    lo, hi = {"test": TEST_SLAB, "val": VAL_SLAB}[which]
    img = nib.load(embedded_path("t1"))
    data = np.asarray(img.dataobj)[:, :, lo:hi]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([0, 0, lo]) + img.affine[:3, 3]
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(data, affine), str(tmp))
    return Path(path)
