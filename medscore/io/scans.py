"""Reading one scan (NIfTI, DICOM series, .npy) and writing results with the input's geometry.

NIfTI is read with nibabel in its stored voxel order (no reorientation), so an output written with
the input's affine and header lines up voxel for voxel. DICOM series are read with MONAI's
``PydicomReader`` (one folder = one series; a folder holding several series is refused with a list of
them unless ``series_uid`` picks one); their outputs are NIfTI with the series' affine.

Values must lie within +-``MAX_MAGNITUDE`` so that intensity scaling and its inverse stay finite in
float32, and an output holding NaN or inf is never written. Before any voxel is read, a NIfTI header must declare
real voxels that the file holds and free memory allows, and every scan needs a finite, non-singular affine (its
outputs are written with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..checks import check_memory, format_bytes
from ..errors import InputError
from .atomic import atomic_path, check_not_input

__all__ = ["Scan", "load_scan", "save_like", "output_paths", "peek_shape", "dicom_series", "MAX_MAGNITUDE"]

MAX_MAGNITUDE = float(np.finfo(np.float32).max) / 16  # ~2.1e37: headroom for (x - lo) / (hi - lo) and back
MIN_RANGE = 1e-12  # smallest value range scaled to [0, 1], relative to max(1, |max|): RobustScaleIntensity's rule


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


def load_scan(path: str | Path, series_uid: str | None = None) -> Scan:
    """Read a NIfTI file, a DICOM series folder (or one .dcm file) or a .npy array.

    ``series_uid`` picks one series of a DICOM folder that holds several.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"scan not found: {path}")
    if series_uid is not None and not path.is_dir():
        raise InputError(f"--series applies to DICOM folders only; {path.name} is not a folder")
    try:
        if path.is_file() and _is_nifti(path):
            scan = _load_nifti(path)
        elif path.is_file() and path.suffix.lower() == ".npy":
            scan = _load_npy(path)
        elif path.is_dir() or path.suffix.lower() == ".dcm":
            scan = _load_dicom(path, series_uid)
        else:
            raise InputError(f"unsupported scan {path.name}: expected .nii, .nii.gz, .npy, .dcm or a DICOM folder")
    except InputError:
        raise
    except Exception as exc:  # readers raise many exception types; the user needs one line
        first = (str(exc).splitlines() or [""])[0][:200]  # MemoryError and EOFError may carry no message
        raise InputError(f"cannot read {path}: {exc.__class__.__name__}{': ' + first if first else ''}") from None
    if scan.data.ndim == 4 and scan.data.shape[-1] == 1:
        scan.data = scan.data[..., 0]
    if scan.data.ndim not in (2, 3):
        raise InputError(f"{path.name}: expected a 2D or 3D scan, got shape {scan.data.shape}")
    _check_affine(scan.affine, path.name)
    _check_values(scan.data, path.name)
    return scan


def _check_read_memory(name: str, shape: tuple[int, ...], itemsize: int) -> None:
    """The stored voxels and their float32 copy fit in free memory (checked from the header, before reading)."""
    n = math.prod(shape)
    check_memory(f"reading {name} ({' x '.join(map(str, shape))} voxels)", n * (itemsize + 4),
                 "check the header's dimensions, or crop the scan")


def _load_nifti(path: Path) -> Scan:
    """A NIfTI file; its header is checked first: real voxels, a declared size the file holds (uncompressed
    files) and free memory allows."""
    img = nib.load(str(path))
    dtype, shape = img.get_data_dtype(), tuple(int(n) for n in img.shape)
    if dtype.kind == "c":
        raise InputError(f"{path.name} holds complex voxels ({dtype}): pass the magnitude as a real NIfTI, or the "
                         "k-space as a complex .npy / .h5 file to reconstruct")
    stored = math.prod(shape) * dtype.itemsize
    if not path.name.lower().endswith(".gz"):
        held = path.stat().st_size - int(img.header.get_data_offset())
        if held < stored:
            raise InputError(f"{path.name}: the header declares {' x '.join(map(str, shape))} voxels "
                             f"({format_bytes(stored)}) but the file holds {format_bytes(max(held, 0))} of voxel "
                             "data: truncated, or a wrong header")
    _check_read_memory(path.name, shape, dtype.itemsize)
    data = np.asarray(img.dataobj, dtype=np.float32)
    return Scan(data, np.asarray(img.affine, dtype=np.float64), img.header.copy(), "nifti", path)


def _load_npy(path: Path) -> Scan:
    """A real .npy array (its header checked against free memory before it is read)."""
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    if np.iscomplexobj(mapped):
        raise InputError(f"{path.name} holds complex values: pass measured k-space with --kspace, not as SCAN")
    _check_read_memory(path.name, tuple(mapped.shape), mapped.dtype.itemsize)
    return Scan(np.array(mapped, dtype=np.float32), np.eye(4), None, "npy", path)


def _check_affine(affine: np.ndarray, name: str) -> None:
    """A finite, non-singular voxel-to-world matrix (outputs are written with it; nibabel refuses others)."""
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{name}: the affine (voxel-to-world matrix) holds NaN or inf values: fix the header's "
                         "sform / qform")
    if np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise InputError(f"{name}: the affine (voxel-to-world matrix) is singular (all zero, or a zero voxel size): "
                         "fix the header's sform / qform")


def _check_values(data: np.ndarray, name: str) -> None:
    """Not empty, finite, not constant, and small enough to scale in float32 (range computed in float64)."""
    if data.size == 0:
        raise InputError(f"{name}: the scan is empty, shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(f"{name}: the scan contains NaN or infinite values")
    lo, hi = float(np.min(data)), float(np.max(data))
    if hi - lo <= 0:
        raise InputError(f"{name}: the scan is constant")
    if hi - lo <= MIN_RANGE * max(1.0, abs(hi)):
        raise InputError(f"{name}: the scan is constant to within {MIN_RANGE:g} (values {lo:.3g} to {hi:.3g}): it "
                         "cannot be scaled to [0, 1]; rescale it")
    if max(abs(lo), abs(hi)) > MAX_MAGNITUDE:
        raise InputError(f"{name}: values reach {max(abs(lo), abs(hi)):.3g}, beyond the {MAX_MAGNITUDE:.2g} that "
                         "float32 intensity scaling can handle; rescale the scan")


def dicom_series(folder: str | Path) -> dict[str, tuple[str, list[str]]]:
    """The DICOM series in ``folder`` (not recursive): ``{SeriesInstanceUID: (description, files)}``."""
    import glob
    import os

    import pydicom

    series: dict[str, tuple[str, list[str]]] = {}
    for f in sorted(glob.glob(os.path.join(str(folder), "*"))):
        if not pydicom.misc.is_dicom(f):
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "SeriesDescription"])
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "?")
        series.setdefault(uid, (str(getattr(ds, "SeriesDescription", "") or "no description"), []))[1].append(f)
    return series


def _pick_series(path: Path, series_uid: str | None) -> tuple[list[str], bool]:
    """Files of the chosen series, and whether the reader must filter them (the folder holds other series)."""
    series = dicom_series(path)
    if series_uid is None and len(series) <= 1:
        return (next(iter(series.values()))[1] if series else []), False
    listing = "; ".join(f"{uid} ({desc}, {len(files)} files)" for uid, (desc, files) in series.items())
    if series_uid is None:
        raise InputError(f"{path.name} holds {len(series)} DICOM series: choose one with --series UID "
                         f"(series_uid=): {listing}")
    if series_uid not in series:
        raise InputError(f"--series {series_uid} is not in {path.name}, which holds: {listing}")
    return series[series_uid][1], True


def _check_positions(path: Path, files: list[str]) -> None:
    """The files of a series lie at distinct slice positions (ImagePositionPatient), so they stack into a volume."""
    import pydicom

    positions = set()
    for f in files:
        pos = getattr(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["ImagePositionPatient"]),
                      "ImagePositionPatient", None)
        if pos is None:
            return  # no positions to compare: the reader orders such series by other tags
        positions.add(tuple(round(float(v), 4) for v in pos))
    if len(files) > 1 and len(positions) < len(files):
        raise InputError(f"{path.name}: its {len(files)} DICOM files lie at only {len(positions)} distinct slice "
                         "position(s) (ImagePositionPatient), so they do not stack into a volume; pass a folder "
                         "holding one file per slice position, or one .dcm file")


def _load_dicom(path: Path, series_uid: str | None = None) -> Scan:
    import re

    from monai.data import PydicomReader

    files, filtered = _pick_series(path, series_uid) if path.is_dir() else ([], False)
    _check_positions(path, files)
    regex = "^(" + "|".join(re.escape(f) for f in files) + ")$" if filtered else None
    reader = PydicomReader(fname_regex=regex)
    obj = reader.read(str(path))
    data, meta = reader.get_data(obj)
    affine = np.asarray(meta.get("affine", np.eye(4)), dtype=np.float64)
    return Scan(np.asarray(data, dtype=np.float32), affine, None, "dicom", path, {"spacing": meta.get("spacing")})


def save_like(scan: Scan, data: np.ndarray, path: str | Path, step: str = "solver") -> Path:
    """Write ``data`` (same shape as the scan) as NIfTI with the scan's affine and header, atomically.

    Non-finite data is refused (NonFiniteError naming ``step``, the computation that produced it).
    """
    path = Path(path)
    check_not_input(path, scan.path)
    if not _is_nifti(path):
        raise InputError(f"output must be a .nii or .nii.gz file, got {path.name}")
    arr = np.asarray(data, dtype=np.float32)
    if arr.shape != scan.data.shape:
        raise ValueError(f"output shape {arr.shape} differs from the scan's {scan.data.shape}")
    if not np.isfinite(arr).all():
        from ..errors import NonFiniteError

        raise NonFiniteError(f"refusing to write {path.name}: the {step} produced NaN or infinite values")
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
    for ext in (".nii.gz", ".nii", ".npy", ".dcm", ".h5"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    parent = p.parent if p.is_file() else p.parent
    return parent / f"{stem}_{suffix}.nii.gz"


def peek_shape(path: str | Path) -> tuple[int, ...] | None:
    """The array shape of a NIfTI or .npy file from its header alone (None for other or unreadable files)."""
    p = Path(path)
    try:
        if p.is_file() and _is_nifti(p):
            shape = tuple(int(n) for n in nib.load(str(p)).shape)
        elif p.is_file() and p.suffix.lower() == ".npy":
            shape = tuple(int(n) for n in np.load(p, mmap_mode="r", allow_pickle=False).shape)
        else:
            return None
    except Exception:  # unreadable: load_scan reports it as one line
        return None
    return shape[:-1] if len(shape) == 4 and shape[-1] == 1 else shape
