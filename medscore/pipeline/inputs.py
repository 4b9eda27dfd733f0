"""Reading what the file-level tasks take besides the scan: 0/1 masks and measured k-space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.utils import OptionalImportError

from ..errors import InputError
from ..physics import validate_mask

__all__ = ["load_mask", "is_kspace_file", "load_kspace"]


def load_mask(mask: str | Path | np.ndarray, slice_shape: tuple[int, int]) -> np.ndarray:
    """A 0/1 mask from .npy (or an array), validated against the slice shape; returned as (H, W)."""
    if isinstance(mask, (str, Path)):
        p = Path(mask)
        if not p.is_file():
            raise InputError(f"mask not found: {p}")
        if p.suffix.lower() != ".npy":
            raise InputError(f"the mask must be a NumPy .npy file (make one with `medscore mask`), got {p.name}")
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError/OSError/EOFError/UnpicklingError for bad files
            raise InputError(f"cannot read mask {p.name}: not a valid .npy array ({exc.__class__.__name__})") from None
    else:
        arr = np.asarray(mask)
    arr = validate_mask(arr, slice_shape)
    return np.broadcast_to(arr, slice_shape).astype(np.float32) if arr.ndim == 1 else arr.astype(np.float32)


def is_kspace_file(path: str | Path) -> bool:
    """True for measured k-space: a fastMRI .h5 file or a readable .npy holding complex values.
    Unreadable files return False and are then reported by the scan reader as one line."""
    p = Path(path)
    if p.suffix.lower() == ".h5":
        return True
    if p.suffix.lower() != ".npy" or not p.is_file():
        return False
    try:
        return bool(np.iscomplexobj(np.load(p, mmap_mode="r", allow_pickle=False)))
    except Exception:  # corrupt or pickled
        return False


def load_kspace(path: str | Path) -> np.ndarray:
    """Single-coil k-space as complex64 (N, H, W), centred: a complex .npy ((H, W) or (N, H, W)) or a
    fastMRI .h5 file read with MONAI's ``FastMRIReader`` (needs h5py: ``pip install h5py``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"k-space file not found: {p}")
    if p.suffix.lower() == ".h5":
        try:
            from monai.apps.reconstruction.fastmri_reader import FastMRIReader

            reader = FastMRIReader()
            data, _ = reader.get_data(reader.read(str(p)))
        except (ImportError, OptionalImportError) as exc:  # h5py missing
            raise InputError(f"reading fastMRI .h5 needs h5py (pip install h5py): {exc.__class__.__name__}") from None
        except Exception as exc:
            raise InputError(f"cannot read {p.name}: {exc.__class__.__name__}: {str(exc)[:160]}") from None
    elif p.suffix.lower() == ".npy":
        try:
            data = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {p.name}: {exc.__class__.__name__}") from None
    else:
        raise InputError(f"k-space must be a complex .npy or a fastMRI .h5 file, got {p.name}")
    data = np.asarray(data)
    if not np.iscomplexobj(data):
        raise InputError(f"{p.name}: k-space must be complex-valued")
    if data.ndim == 2:
        data = data[None]
    if data.ndim == 4:
        raise InputError(f"{p.name}: multi-coil k-space {data.shape} needs coil sensitivity maps; "
                         "use the Python API (reconstruct_mri with smaps) or coil-combine first")
    if data.ndim != 3 or not np.isfinite(data).all():
        raise InputError(f"{p.name}: expected finite single-coil k-space (H, W) or (N, H, W), got {data.shape}")
    return data.astype(np.complex64)
