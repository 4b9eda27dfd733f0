"""Reading one scan (NIfTI, DICOM series, .npy) and writing results with the input's geometry.

NIfTI is read with nibabel in its stored voxel order (no reorientation), so an output written with
the input's affine and header lines up voxel for voxel. DICOM series are read with MONAI's
``PydicomReader`` (one folder = one series); their outputs are NIfTI with the series' affine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .errors import InputError
from .fileio import atomic_path, check_not_input

__all__ = ["Scan", "load_scan", "save_like", "output_paths"]


@dataclass
class Scan:
    """Voxel data (float32, 2D or 3D) with its geometry."""

    data: np.ndarray
    affine: np.ndarray
    header: Any = None
    kind: str = "nifti"
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(0))[: self.data.ndim])


def _is_nifti(p: Path) -> bool:
    return p.name.lower().endswith((".nii", ".nii.gz"))


def load_scan(path: str | Path) -> Scan:
    """Read a NIfTI file, a DICOM series folder (or one .dcm file) or a .npy array."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"scan not found: {path}")
    try:
        if path.is_file() and _is_nifti(path):
            img = nib.load(str(path))
            data = np.asarray(img.dataobj, dtype=np.float32)
            scan = Scan(data, np.asarray(img.affine, dtype=np.float64), img.header.copy(), "nifti", path)
        elif path.is_file() and path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
            if np.iscomplexobj(data):
                raise InputError(f"{path.name} holds complex values: pass measured k-space with --kspace, not as SCAN")
            scan = Scan(np.asarray(data, dtype=np.float32), np.eye(4), None, "npy", path)
        elif path.is_dir() or path.suffix.lower() == ".dcm":
            scan = _load_dicom(path)
        else:
            raise InputError(f"unsupported scan {path.name}: expected .nii, .nii.gz, .npy, .dcm or a DICOM folder")
    except InputError:
        raise
    except Exception as exc:  # readers raise many exception types; the user needs one line
        raise InputError(f"cannot read {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}") from None
    if scan.data.ndim == 4 and scan.data.shape[-1] == 1:
        scan.data = scan.data[..., 0]
    if scan.data.ndim not in (2, 3):
        raise InputError(f"{path.name}: expected a 2D or 3D scan, got shape {scan.data.shape}")
    if not np.isfinite(scan.data).all():
        raise InputError(f"{path.name}: the scan contains NaN or infinite values")
    if float(scan.data.max() - scan.data.min()) <= 0:
        raise InputError(f"{path.name}: the scan is constant")
    return scan


def _load_dicom(path: Path) -> Scan:
    from monai.data import PydicomReader

    reader = PydicomReader()
    obj = reader.read(str(path))
    data, meta = reader.get_data(obj)
    affine = np.asarray(meta.get("affine", np.eye(4)), dtype=np.float64)
    return Scan(np.asarray(data, dtype=np.float32), affine, None, "dicom", path, {"spacing": meta.get("spacing")})


def save_like(scan: Scan, data: np.ndarray, path: str | Path) -> Path:
    """Write ``data`` (same shape as the scan) as NIfTI with the scan's affine and header, atomically."""
    path = Path(path)
    check_not_input(path, scan.path)
    if not _is_nifti(path):
        raise InputError(f"output must be a .nii or .nii.gz file, got {path.name}")
    arr = np.asarray(data, dtype=np.float32)
    if arr.shape != scan.data.shape:
        raise ValueError(f"output shape {arr.shape} differs from the scan's {scan.data.shape}")
    header = scan.header.copy() if isinstance(scan.header, nib.Nifti1Header) else None
    img = nib.Nifti1Image(arr, scan.affine, header=header)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    if header is None:
        img.header.set_xyzt_units("mm")
    img.set_qform(scan.affine, code=int(header["qform_code"]) if header is not None and header["qform_code"] > 0 else 1)
    img.set_sform(scan.affine, code=int(header["sform_code"]) if header is not None and header["sform_code"] > 0 else 1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def output_paths(scan_path: str | Path, out: str | Path | None, suffix: str) -> Path:
    """Default output next to the input: ``<stem>_<suffix>.nii.gz``; never the input itself."""
    p = Path(scan_path)
    if out is not None:
        return Path(out)
    stem = p.name
    for ext in (".nii.gz", ".nii", ".npy", ".dcm"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    parent = p.parent if p.is_file() else p.parent
    return parent / f"{stem}_{suffix}.nii.gz"
