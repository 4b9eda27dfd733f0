"""Reading what the file-level tasks take besides the scan: 0/1 masks, measured k-space and coil maps.

k-space and coil-map files are opened rather than loaded: :class:`ComplexArrayFile` reads batches of
slices from a memory-mapped ``.npy`` or an HDF5 dataset, so a multi-coil volume is never held in memory
whole. Layouts (centred k-space, DC at (H // 2, W // 2)): single-coil (H, W) or (S, H, W); multi-coil
(S, C, H, W), the fastMRI ``kspace`` dataset; coil maps (S, C, H, W) or (C, H, W) shared by all slices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..physics import expand_mask
from ..checks import MIN_SLICE, check_memory

__all__ = ["read_mask", "load_mask", "is_kspace_file", "load_kspace", "ComplexArrayFile", "open_kspace", "open_smaps",
           "check_smaps", "kspace_bytes", "KSPACE_KEYS", "SMAPS_KEYS"]

KSPACE_KEYS = ("kspace",)
"""HDF5 dataset holding k-space (the fastMRI name)."""
SMAPS_KEYS = ("smaps", "sens_maps", "maps")
"""HDF5 datasets tried, in order, for coil maps; a file with a single dataset may use any name."""


def read_mask(path: str | Path) -> np.ndarray:
    """The array in a mask ``.npy`` file (checked as a mask by the task that uses it)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"mask not found: {p}")
    if p.suffix.lower() != ".npy":
        raise InputError(f"the mask must be a NumPy .npy file (make one with `medscore mask`), got {p.name}")
    try:
        mapped = np.load(p, mmap_mode="r", allow_pickle=False)  # the header first: nothing read yet
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError/UnpicklingError for bad files
        raise InputError(f"cannot read mask {p.name}: not a valid .npy array ({exc.__class__.__name__})") from None
    check_memory(f"reading mask {p.name} (shape {tuple(mapped.shape)})", mapped.nbytes + mapped.size * 4,
                 "a mask is (W,) or (H, W), the size of one slice")
    return np.array(mapped)


def load_mask(mask: str | Path | np.ndarray, slice_shape: tuple[int, int]) -> np.ndarray:
    """A 0/1 mask from .npy (or an array), validated against the slice shape; returned as (H, W) float32."""
    arr = read_mask(mask) if isinstance(mask, (str, Path)) else np.asarray(mask)
    return expand_mask(arr, slice_shape)


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


@dataclass
class ComplexArrayFile:
    """A complex array in a file (or in memory), read in batches along its first axis.

    ``data`` is a memory-mapped array, an in-memory array or an ``h5py.Dataset``; ``what`` names the
    content in messages ("k-space", "coil maps").
    """

    path: Path
    data: Any
    what: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    def read(self, sl: slice) -> np.ndarray:
        """Entries ``sl`` of the first axis as complex64; an InputError naming the file if any is NaN/inf."""
        try:
            arr = np.array(self.data[sl], dtype=np.complex64)  # a writable copy of the batch
        except (OSError, ValueError) as exc:  # a truncated .npy or a damaged HDF5 chunk
            raise InputError(f"cannot read {self.path.name}: {exc.__class__.__name__}: {str(exc)[:120]}") from None
        if not np.isfinite(arr).all():
            raise InputError(f"{self.path.name}: NaN or inf values in the {self.what}")
        return arr


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise InputError("reading .h5 files needs h5py: pip install h5py") from None
    return h5py


def _dataset(f: Any, p: Path, keys: Sequence[str], what: str) -> Any:
    """The first of ``keys`` in the HDF5 file ``f``; else, for coil maps, its only dataset."""
    h5py = _h5py()
    for key in keys:
        if isinstance(f.get(key), h5py.Dataset):
            return f[key]
    found = [k for k in f if isinstance(f[k], h5py.Dataset)]
    if len(found) == 1 and keys is SMAPS_KEYS:
        return f[found[0]]
    names = ", ".join(found[:5]) or "none"
    raise InputError(f"{p.name} has no {' or '.join(repr(k) for k in keys)} dataset for the {what} (found: {names})")


def _checked(src: ComplexArrayFile) -> ComplexArrayFile:
    if not np.issubdtype(src.data.dtype, np.complexfloating):
        raise InputError(f"{src.path.name}: {src.what} must be complex-valued, got {src.data.dtype}")
    if src.data.ndim == 2:  # one slice: give it its slice axis
        src.data = np.asarray(src.data[()])[None]
    return src


@contextlib.contextmanager
def _open(path: str | Path, keys: Sequence[str], what: str) -> Iterator[ComplexArrayFile]:
    """Open a complex .npy (memory-mapped) or an .h5 dataset; one-line InputErrors for unreadable files."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".h5"):
        raise InputError(f"{what} must be a complex .npy or a fastMRI-style .h5 file, got {p.name}")
    if suffix == ".npy":
        try:
            data = np.load(p, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {p.name}: not a valid .npy array ({exc.__class__.__name__})") from None
        yield _checked(ComplexArrayFile(p, data, what))
        return
    h5py = _h5py()
    try:
        f = h5py.File(p, "r")
    except Exception as exc:
        raise InputError(f"cannot read {p.name}: not a readable HDF5 file ({exc.__class__.__name__})") from None
    with f:
        yield _checked(ComplexArrayFile(p, _dataset(f, p, keys, what), what))


@contextlib.contextmanager
def open_kspace(path: str | Path) -> Iterator[ComplexArrayFile]:
    """Measured centred k-space: a complex .npy or a fastMRI .h5 (dataset ``kspace``), opened for batch reads.

    Accepted layouts: single-coil (H, W) (read as one slice) or (S, H, W), multi-coil (S, C, H, W);
    anything else, a real dtype or slices smaller than ``MIN_SLICE`` is an InputError naming the file.
    """
    with _open(path, KSPACE_KEYS, "k-space") as src:
        shape = src.shape
        if len(shape) not in (3, 4) or min(shape) < 1:
            raise InputError(f"{src.path.name}: expected single-coil (S, H, W) or multi-coil (S, C, H, W) "
                             f"k-space, got shape {shape}")
        if min(shape[-2:]) < MIN_SLICE:
            raise InputError(f"{src.path.name}: k-space slices of {shape[-2]} x {shape[-1]} are too small "
                             f"(need at least {MIN_SLICE} x {MIN_SLICE}); got shape {shape}")
        check_memory(f"{src.path.name}: k-space of shape {shape}", kspace_bytes(shape), "check the file's shape")
        yield src


BATCH = 8  # slices per read of a k-space or coil-map file in the memory estimate (the survey's batch)


def kspace_bytes(shape: Sequence[int]) -> int:
    """Estimated working set of solving k-space of ``shape`` ((S, H, W) or (S, C, H, W)), from the header alone:
    four float32 image volumes (zero-filled image, estimate, std, baseline) plus one batch of ``BATCH`` slices of
    complex64 k-space and its inverse FFT."""
    s, h, w = int(shape[0]), int(shape[-2]), int(shape[-1])
    coils = int(shape[1]) if len(shape) == 4 else 1
    return 4 * s * h * w * 4 + 2 * min(s, BATCH) * coils * h * w * 8


def load_kspace(path: str | Path) -> np.ndarray:
    """Single-coil k-space as complex64 (N, H, W), centred: a complex .npy ((H, W) or (N, H, W)) or a
    fastMRI .h5 file (needs h5py). Multi-coil files are refused: see ``reconstruct_multicoil_file``."""
    with open_kspace(path) as src:
        if len(src.shape) == 4:
            raise InputError(f"{src.path.name}: multi-coil k-space {src.shape} is read by reconstruct_multicoil_file "
                             "(coil maps estimated, or given with smaps=)")
        return src.read(slice(None))


@contextlib.contextmanager
def open_smaps(smaps: str | Path | np.ndarray, kspace_shape: tuple[int, ...]) -> Iterator[ComplexArrayFile]:
    """Coil maps for multi-coil k-space of ``kspace_shape`` (S, C, H, W): a complex .npy, an .h5 (dataset
    ``smaps``, ``sens_maps``, ``maps`` or its only one) or an array, shaped (S, C, H, W) or (C, H, W); read once
    before they are yielded (:func:`check_smaps`: finite, no slice all zero)."""
    s, c, h, w = kspace_shape
    if isinstance(smaps, (str, Path)):
        opened = _open(smaps, SMAPS_KEYS, "coil maps")
    else:
        arr = np.asarray(smaps)
        if not np.iscomplexobj(arr):
            raise InputError(f"smaps must be complex-valued, got {arr.dtype}")
        opened = contextlib.nullcontext(ComplexArrayFile(Path("smaps array"), arr, "coil maps"))
    with opened as maps:
        if maps.shape not in ((s, c, h, w), (c, h, w)):
            raise InputError(f"{maps.path.name}: coil maps of shape {maps.shape} do not fit the k-space: "
                             f"expected (S, C, H, W) = {(s, c, h, w)} or (C, H, W) = {(c, h, w)}")
        check_smaps(maps)
        yield maps


def check_smaps(maps: ComplexArrayFile) -> None:
    """Read every slice of the coil maps once, in batches: NaN/inf values are refused (by ``read``), and so is a
    slice whose maps are all zero (no coil would see it)."""
    if len(maps.shape) == 3:  # (C, H, W): one set for every slice
        if not np.any(maps.read(slice(None))):
            raise InputError(f"{maps.path.name}: the coil maps are all zero: give non-zero maps, or leave out "
                             "--smaps (smaps=) to estimate them")
        return
    for start in range(0, maps.shape[0], BATCH):
        energy = np.abs(maps.read(slice(start, start + BATCH))).sum(axis=(1, 2, 3))
        if not energy.all():
            raise InputError(f"{maps.path.name}: the coil maps of slice {start + int(np.argmin(energy))} are all "
                             "zero: give non-zero maps, or leave out --smaps (smaps=) to estimate them")
