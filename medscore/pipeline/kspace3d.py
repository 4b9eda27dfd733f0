"""3D Cartesian k-space: the readout is fully sampled, the two phase-encode axes are undersampled.

An inverse FFT along the readout splits a 3D acquisition into independent 2D problems, one per readout position,
each the (ky, kz) k-space of one plane with the same 2D mask (``medscore mask --shape NY NZ``). So a measured 3D
file, (kx, ky, kz) single-coil or (coils, kx, ky, kz) multi-coil, is opened here as the stack of those planes,
(X, ky, kz) or (X, coils, ky, kz), and solved by the file driver like any multi-slice k-space (with ``--volume`` the
planes are coupled along the readout). Outputs put the readout axis back where the file had it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from monai.networks.blocks.fft_utils_t import ifftn_centered_t

from ..checks import MIN_SLICE, check_int
from ..errors import InputError
from ..io.arrays import ComplexArrayFile, open_kspace

__all__ = ["ifft_along", "open_kspace_3d", "readout_planes"]


def ifft_along(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1D inverse FFT of a complex tensor along ``dim`` (MONAI's centred FFT, on one axis)."""
    moved = k.movedim(dim, -1)
    out = torch.view_as_complex(ifftn_centered_t(torch.view_as_real(moved), spatial_dims=1, is_complex=True))
    return out.movedim(-1, dim)


def readout_planes(kspace: np.ndarray, readout_axis: int) -> np.ndarray:
    """(kx, ky, kz) or (coils, kx, ky, kz) centred k-space -> the stack of 2D k-space planes along the readout
    (``readout_axis``: 0, 1 or 2 of the three k-space axes), (X, ky, kz) or (X, coils, ky, kz) complex64; the two
    remaining axes keep their order."""
    spatial0 = kspace.ndim - 3
    axis = spatial0 + readout_axis
    planes = ifft_along(torch.from_numpy(np.ascontiguousarray(kspace)), axis).movedim(axis, 0)
    return np.ascontiguousarray(planes.numpy().astype(np.complex64, copy=False))


@contextlib.contextmanager
def open_kspace_3d(path: str | Path, readout_axis: int) -> Iterator[ComplexArrayFile]:
    """A 3D k-space file (complex .npy or fastMRI-style .h5 ``kspace``) opened as its readout planes (in memory;
    the file's dtype, finiteness and size are checked as for any k-space file)."""
    check_int("--readout-axis", readout_axis, 0, 2)
    with open_kspace(path) as src:
        shape = src.shape
        data = src.read(slice(None))
    if data.ndim not in (3, 4):  # open_kspace accepts (S, H, W) and (S, C, H, W): the same ranks
        raise InputError(f"{Path(path).name}: 3D k-space must be (kx, ky, kz) or (coils, kx, ky, kz), got {shape}")
    planes = readout_planes(data, readout_axis)
    if min(planes.shape[-2:]) < MIN_SLICE:
        raise InputError(f"{Path(path).name}: the phase-encode planes of {planes.shape[-2]} x {planes.shape[-1]} "
                         f"are too small (need at least {MIN_SLICE} x {MIN_SLICE}); got shape {shape} with "
                         f"--readout-axis {readout_axis}")
    yield ComplexArrayFile(Path(path), planes, "k-space")
