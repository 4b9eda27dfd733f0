"""Training data: scans -> MONAI transforms -> cached volumes -> 2D slices -> augmented images.

Inputs (``DataConfig.path``): a NIfTI file, a folder of NIfTI files, a folder of DICOM series (one
volume per folder that holds .dcm files), a .npy array, or a .txt file listing such paths (one per
line). ``None`` means the embedded MNI152 brain (with tissue maps for contrast randomisation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from monai.data import CacheDataset, Dataset
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandSpatialCropd,
    Resized,
    ResizeWithPadOrCropd,
    SpatialPadd,
)

from ..config import DataConfig
from ..io.embedded import load_embedded, training_blocks
from ..io.readers import LoadScand
from ..errors import InputError
from ..transforms import RandTissueContrastd, extract_slices, inference_transforms
from ..transforms.augment import RandPixelSized, RandRicianSNRd, oblique_copies

__all__ = ["find_scans", "load_transforms", "load_volumes", "training_slices", "extra_slices", "train_transforms"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_nifti(p: Path) -> bool:
    return p.name.lower().endswith(NIFTI_SUFFIXES)


def find_scans(path: str | Path, _lists: tuple[Path, ...] = ()) -> list[str]:
    """Expand a user path into the list of scans it names (files, or DICOM series folders).

    A ``.txt`` list may name other lists, but not itself (directly or through another list).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"data path not found: {path}")
    if path.is_file():
        if path.suffix.lower() == ".txt":
            if path.resolve() in _lists:
                via = "" if path.resolve() == _lists[-1] else f" through {_lists[-1].name}"
                raise InputError(f"data list {path.name} names itself{via}: remove that line")
            listed = [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]
            listed = [p if p.is_absolute() else path.parent / p for p in listed]
            return [s for p in listed for s in find_scans(p, (*_lists, path.resolve()))]
        if _is_nifti(path) or path.suffix.lower() in (".npy", ".dcm"):
            return [str(path)]
        raise InputError(f"unsupported scan file {path.name}: expected .nii, .nii.gz, .npy, .dcm or a .txt list")
    scans = [str(p) for p in sorted(path.iterdir()) if p.is_file() and (_is_nifti(p) or p.suffix.lower() == ".npy")]
    scans += [str(d) for d in _dicom_series_dirs(path)]
    if not scans:
        raise InputError(f"no NIfTI, .npy or DICOM scans found in {path}")
    return scans


def _dicom_series_dirs(folder: Path) -> list[Path]:
    """Folders holding .dcm/.ima files; each must hold one series (training reads one volume per folder)."""
    from ..io.scans import dicom_series

    dirs = sorted({p.parent for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ".ima")})
    for d in dirs:
        n = len(dicom_series(d))
        if n > 1:
            raise InputError(f"{d} holds {n} DICOM series: training reads one series per folder; "
                             "move each series into a folder of its own")
    return dirs


def load_transforms(cfg: DataConfig) -> Compose:
    """Deterministic loading: read, channel-first, reorient, float32, robust scaling to [0, 1]; the one
    preprocessing definition training shares with inference (``inference_transforms``)."""
    return inference_transforms(cfg.percentiles, cfg.orientation, track_meta=False, loader=LoadScand("image"))


def load_volumes(cfg: DataConfig) -> list[np.ndarray]:
    """Decoded, scaled volumes (C, X, Y, Z) of the user's scans; cached once (MONAI CacheDataset)."""
    scans = find_scans(cfg.path)  # type: ignore[arg-type]
    items = [{"image": s} for s in scans]
    try:
        ds = CacheDataset(items, load_transforms(cfg), cache_rate=1.0 if cfg.cache else 0.0, num_workers=0,
                          progress=False)
    except Exception:  # caching stopped at an unreadable scan: read lazily below so the error names the file
        ds = Dataset(items, load_transforms(cfg))
    vols = []
    for i, scan in enumerate(scans):
        try:
            img = np.asarray(ds[i]["image"])
        except Exception as exc:  # MONAI readers raise many types; the user needs the file name
            while exc.__cause__ is not None:  # MONAI wraps the reader's error in "applying transform ..."
                exc = exc.__cause__
            msg = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise InputError(f"cannot read scan {scan}: {exc.__class__.__name__}: {msg}") from None
        if img.ndim == 3:  # a 2D image: (C, H, W) -> one-slice volume
            img = img[..., None]
        if img.ndim != 4:
            raise InputError(f"{scan}: expected a 2D or 3D image, got array of shape {img.shape[1:]}")
        vols.append(img)
    return vols


_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def training_slices(cfg: DataConfig) -> list[np.ndarray]:
    """All 2D training images (C, H, W): channels (T1, GM, WM) for embedded data, one channel otherwise."""
    slices: list[np.ndarray] = []
    if cfg.path is None:
        vol, _ = load_embedded()
        wanted = {_AXES[p] for p in cfg.planes}
        for block, allowed in training_blocks(vol):
            for axis in sorted(wanted & set(allowed)):
                slices += extract_slices(block, axis, cfg.foreground_threshold, cfg.min_foreground_fraction)
        if cfg.extra is not None:
            slices += extra_slices(cfg)
    else:
        for vol in load_volumes(cfg):
            axis = cfg.axis if vol.shape[-1] > 1 else 2
            slices += extract_slices(vol, axis, cfg.foreground_threshold, cfg.min_foreground_fraction)
    if not slices:
        raise InputError("no slice passes the foreground threshold: check the data or lower min_foreground_fraction")
    return slices


def extra_slices(cfg: DataConfig) -> list[np.ndarray]:
    """Slices (1, H, W) of ``cfg.extra``'s scans in every plane of ``cfg.planes``, with ``cfg.oblique``
    turned copies of each scan (seeded by the scan's position in the list)."""
    out: list[np.ndarray] = []
    for i, vol in enumerate(load_volumes(dataclasses.replace(cfg, path=cfg.extra))):
        for v in [vol, *oblique_copies(vol, cfg.oblique, cfg.oblique_deg, seed=i)]:
            for plane in cfg.planes:
                out += extract_slices(v, _AXES[plane], cfg.foreground_threshold, cfg.min_foreground_fraction)
    return out


def _real_scan_ops(cfg: DataConfig, keys: list[str]) -> tuple[list, list]:
    """(before cropping, after the final size): pixel size on the whole slice, noise on the final grid."""
    first = [RandPixelSized(keys, prob=cfg.pixel_prob, mm=cfg.pixel_mm)] if cfg.pixel_mm else []
    last = [RandRicianSNRd(keys, prob=cfg.noise_prob, snr=cfg.snr)] if cfg.snr else []
    return first, last


def train_transforms(cfg: DataConfig) -> Compose:
    """Per-sample augmentation and sizing of a 2D slice to (C, image_size, image_size)."""
    s = cfg.image_size
    k = ["image"]
    if cfg.spatial == "crop":  # a 1.5x patch first, so rotation/zoom do not pull zeros into the final crop
        big = (s + s // 2, s + s // 2)
        ops: list = [SpatialPadd(k, big), RandSpatialCropd(k, big, random_size=False)]
        final: list = [ResizeWithPadOrCropd(k, (s, s))]
    else:
        ops = [_SquarePadd()]
        final = [Resized(k, (s, s), mode="area")]
    first, last = _real_scan_ops(cfg, k) if cfg.augment else ([], [])
    ops = first + ops
    if cfg.augment:
        zmin, zmax = cfg.zoom
        ops += [
            RandAffined(k, prob=0.8, rotate_range=np.deg2rad(cfg.rotate_deg), scale_range=(zmin - 1.0, zmax - 1.0),
                        padding_mode="zeros", mode="bilinear"),
            RandFlipd(k, prob=cfg.flip_prob, spatial_axis=0),
            RandFlipd(k, prob=cfg.flip_prob, spatial_axis=1),
            RandTissueContrastd(k, prob=cfg.contrast_prob),
            RandBiasFieldd(k, prob=cfg.bias_field_prob, coeff_range=(0.0, 0.3)),
            RandAdjustContrastd(k, prob=cfg.gamma_prob, gamma=(0.7, 1.5)),
        ]
    else:
        ops.append(RandTissueContrastd(k, prob=0.0))
    ops += final + last + [EnsureTyped(k, data_type="tensor", dtype=np.float32, track_meta=False)]
    return Compose(ops)


class _SquarePadd:
    """Zero-pad a (C, H, W) slice to a square so resizing keeps the aspect ratio."""

    def __call__(self, d: dict) -> dict:
        d = dict(d)
        h, w = d["image"].shape[-2:]
        m = max(h, w)
        return SpatialPadd("image", (m, m))(d)
