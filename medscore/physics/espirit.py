"""ESPIRiT coil maps from a rectangular autocalibration region (Uecker et al., MRM 2014).

Why medscore has its own: sigpy's ``EspiritCalib`` (which :func:`medscore.physics.estimate_smaps` used for square
regions until 2026-11-30) takes one width for the calibration region and for the kernel on every axis. 1D
undersampling measures a few central phase-encode lines across the whole readout, so its fully sampled region is a
rectangle: at 1D 8x on 187 columns, 9 lines by 151 rows. The 9 x 9 square leaves 49 calibration rows for 72 kernel
unknowns (8 coils, 3 x 3 kernels); 24 rows of readout (BART's default calibration size) with a 6 x 3 kernel halve
the maps' error inside the head (validation slab: 0.031 -> 0.014, :func:`map_subspace_error`) and raised medscore's
1D 8x PSNR by 1 dB (docs/benchmarks.md). On a square region this module gives sigpy's maps where sigpy's power
iterations converge (tests/test_espirit.py), and at fastMRI knee size (15 coils, 640 x 368) better ones 7x faster,
so it now serves squares too.

Steps: the calibration matrix (every kernel-sized patch of every coil, one row each), its singular vectors above
``thresh`` times the largest singular value (the kernels the data obey), and per pixel the C x C Gram matrix of
those kernels in image space, whose top eigenvector is the coil-map vector and whose eigenvalue is ~1 inside the
object. The Gram matrices come from the kernels' autocorrelation (C x C images of (2k - 1) samples per axis) and one
FFT each, so memory stays at C^2 images whatever the number of kernels.
"""

from __future__ import annotations

import numpy as np
import torch

from .mri import ifft2c

__all__ = ["espirit_maps", "calibration_matrix", "centre_block", "map_subspace_error"]

_EIGH_ROWS = 64  # image rows per batched eigendecomposition


def centre_block(n: int, width: int) -> slice:
    """The ``width`` central samples of ``n``: the block sigpy's ``resize`` (so ``EspiritCalib``) crops."""
    start = n // 2 - width // 2
    return slice(start, start + width)


def calibration_matrix(kspace: np.ndarray, calib: tuple[int, int], kernel: tuple[int, int]) -> np.ndarray:
    """Rows: every ``kernel``-sized patch (all coils) of the centred ``calib`` region of ``kspace`` (C, H, W)."""
    c, h, w = kspace.shape
    region = kspace[:, centre_block(h, calib[0]), centre_block(w, calib[1])]
    patches = np.lib.stride_tricks.sliding_window_view(region, kernel, axis=(1, 2))  # (C, y, x, kh, kw)
    return patches.transpose(1, 2, 0, 3, 4).reshape(-1, c * kernel[0] * kernel[1])


def _kernel_autocorrelation(kernels: np.ndarray) -> np.ndarray:
    """``R[c, d, dy, dx] = sum_k sum_(y, x) K[k, c, y, x] conj(K[k, d, y - dy, x - dx])`` for kernels (K, C, kh, kw);
    lags from -(kh - 1) to kh - 1 (and so for x), stored from index 0."""
    n, c, kh, kw = kernels.shape
    flat = kernels.reshape(n, -1)
    outer = (flat.T @ flat.conj()).reshape(c, kh, kw, c, kh, kw)  # sum over kernels of K K^H
    out = np.zeros((c, c, 2 * kh - 1, 2 * kw - 1), dtype=np.complex128)
    for dy in range(-(kh - 1), kh):
        ys = np.arange(max(0, dy), min(kh, kh + dy))
        rows = outer[:, ys, :, :, ys - dy, :]  # (len ys, C, kw, C, kw): the pairs y, y - dy
        for dx in range(-(kw - 1), kw):
            xs = np.arange(max(0, dx), min(kw, kw + dx))
            out[:, :, dy + kh - 1, dx + kw - 1] = rows[:, :, xs, :, xs - dx].sum(axis=(0, 1))
    return out


def _image_gram(kernels: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """Per pixel the C x C matrix ``sum_k v_k v_k^H``, ``v_k`` the k-th kernel in image space: (H, W, C, C)."""
    _, c, kh, kw = kernels.shape
    h, w = shape
    auto = _kernel_autocorrelation(kernels)
    gram = torch.empty((h, w, c, c), dtype=torch.complex64)
    for i in range(c):  # one coil's row at a time: the FFT's temporaries stay at C images
        padded = torch.zeros((c, h, w), dtype=torch.complex64)
        padded[:, h // 2 - (kh - 1):h // 2 + kh, w // 2 - (kw - 1):w // 2 + kw] = torch.from_numpy(auto[i])
        gram[:, :, i, :] = (ifft2c(padded) * (np.sqrt(h * w) / (kh * kw))).permute(1, 2, 0)
    return gram


def espirit_maps(kspace: np.ndarray, calib: tuple[int, int], kernel: tuple[int, int], *, thresh: float = 0.02,
                 crop: float = 0.95) -> np.ndarray:
    """ESPIRiT maps (C, H, W) complex64 of one slice of centred k-space (C, H, W) from its ``calib`` = (rows, columns)
    fully sampled centre, with ``kernel`` = (rows, columns) kernels.

    ``thresh``: kernels kept above this fraction of the largest singular value; ``crop``: pixels whose eigenvalue is
    below it get zero maps (0 keeps every pixel). Maps have unit norm over coils and coil 0's phase removed, as
    sigpy's and BART's. The eigenvectors are exact (``torch.linalg.eigh``), where sigpy iterates the power method.
    """
    k = np.asarray(kspace, dtype=np.complex64)
    _, h, w = k.shape
    if not all(kk < cc for kk, cc in zip(kernel, calib)) or calib[0] > h or calib[1] > w:
        raise ValueError(f"kernel {kernel} must be smaller than the calibration region {calib} within {(h, w)}")
    _, s, vh = np.linalg.svd(calibration_matrix(k / (np.abs(k).max() or 1.0), calib, kernel), full_matrices=False)
    kernels = vh[s > thresh * s[0]].reshape(-1, k.shape[0], *kernel)
    gram = _image_gram(kernels, (h, w))
    maps = torch.empty(gram.shape[:3], dtype=gram.dtype)  # (H, W, C)
    for rows in range(0, h, _EIGH_ROWS):  # in blocks of rows: all eigenvectors of every pixel would double the memory
        values, vectors = torch.linalg.eigh(gram[rows:rows + _EIGH_ROWS])
        top = vectors[..., -1]  # the eigenvector of the largest eigenvalue
        maps[rows:rows + _EIGH_ROWS] = top * torch.sgn(top[..., :1]).conj() * (values[..., -1:] > crop)
    return np.ascontiguousarray(maps.permute(2, 0, 1).numpy(), dtype=np.complex64)


def map_subspace_error(estimated: np.ndarray, true: np.ndarray, support: np.ndarray) -> float:
    """RMS over ``support`` of the part of the true map vector (unit-normalised per pixel) outside the span of the
    estimated one: 0 for maps equal up to a per-pixel complex factor. Stricter than a correlation, which stays near 1
    for map errors that cost decibels."""
    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.maximum(np.sqrt((np.abs(m) ** 2).sum(0)), 1e-12)

    t, e = unit(np.asarray(true)), unit(np.asarray(estimated))
    residual = t - e * (e.conj() * t).sum(0)
    return float(np.sqrt((np.abs(residual[:, support]) ** 2).sum(0).mean()))
