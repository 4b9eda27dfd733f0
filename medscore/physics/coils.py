"""Coil sensitivity maps: ESPIRiT estimation from the autocalibration region, and a map-agreement metric.

k-space is *centred* (DC at (H // 2, W // 2)) as everywhere in :mod:`medscore.physics`. Estimation is ESPIRiT
(Uecker et al., MRM 2014) by :func:`medscore.physics.espirit.espirit_maps`, on the square calibration regions of 2D
masks and the rectangular ones of 1D masks alike; it follows sigpy's ``EspiritCalib`` conventions (centred
orthonormal FFT, centre crop) and gives its maps where sigpy's power iterations converge (tests/test_espirit.py).

Maps are only defined up to a per-pixel complex factor (the image absorbs it: ``S_k x = (S_k c)(x / c)``).
ESPIRiT returns maps with ``sum_k |S_k|^2 = 1`` inside the object, zero outside, phase relative to coil 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .espirit import centre_block, espirit_maps
from .mri import ifft2c

__all__ = [
    "estimate_smaps",
    "estimate_smaps_volume",
    "calibration_width",
    "calibration_region",
    "sampling_mask_from_kspace",
    "map_correlation",
    "real_image_phase",
    "estimate_image_maps",
    "estimate_kspace_noise",
    "smooth_image_phase",
]

#: ESPIRiT kernel width of sigpy and BART, used when the calibration region is at least 18 samples wide
KERNEL_WIDTH = 6
#: narrowest calibration region accepted (a 3x3 kernel still recovers maps with correlation > 0.99 from 8x8)
MIN_CALIB = 8
#: a fully sampled side of the calibration region grows up to this (BART's default calibration size), or up to the
#: square's side if that is larger: 1D 8x on the validation slab, map error 0.014 from 9 x 24 against 0.031 from 9 x 9
#: and no better from 9 x 32 to 9 x 64
MAX_CALIB_SIDE = 24


def sampling_mask_from_kspace(kspace: np.ndarray) -> np.ndarray:
    """The (H, W) 0/1 float32 mask of samples measured in any coil (unsampled entries are exact zeros)."""
    k = np.asarray(kspace)
    if k.ndim < 2:
        raise InputError(f"k-space must be (..., H, W), got shape {k.shape}")
    return np.any(k.reshape(-1, *k.shape[-2:]) != 0, axis=0).astype(np.float32)


def calibration_width(mask: np.ndarray, min_width: int = MIN_CALIB) -> int:
    """Side of the largest fully sampled square centred on DC (the autocalibration region).

    ``mask`` is (W,) (phase-encode lines, every row sampled) or (H, W), on centred k-space. The square is
    the one ESPIRiT crops (rows/columns ``n // 2 - w // 2 ...``). Raises :class:`InputError` when it is
    smaller than ``min_width`` (the ESPIRiT kernel needs a few samples more than its width).
    """
    m = np.asarray(mask) != 0
    if m.ndim == 1:
        m = np.broadcast_to(m, (m.shape[0], m.shape[0]))
    if m.ndim != 2:
        raise InputError(f"mask must be (W,) or (H, W), got shape {m.shape}")
    h, w = m.shape
    width = 0
    # the squares are nested (going from w to w + 1 adds one row and one column), so stop at the first gap
    while width < min(h, w) and m[centre_block(h, width + 1), centre_block(w, width + 1)].all():
        width += 1
    if width < min_width:
        raise InputError(
            f"the fully sampled k-space centre is {width}x{width}, too small to estimate coil maps "
            f"(need at least {min_width}x{min_width}): sample more central lines (e.g. a larger --center) "
            "or pass the coil maps"
        )
    return width


def calibration_region(mask: np.ndarray, min_width: int = MIN_CALIB, max_side: int = MAX_CALIB_SIDE) -> tuple[int, int]:
    """(rows, columns) of the fully sampled centred rectangle ESPIRiT calibrates from, for an (H, W) ``mask``.

    It starts from the square of :func:`calibration_width` (which raises when that is too small) and grows each side
    while the rectangle stays fully sampled, up to ``max(max_side, square side)``: a 1D mask with 9 central lines
    gives 24 x 9 (every row of those lines is measured), a 2D mask with a square centre its square.
    """
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise InputError(f"mask must be (H, W), got shape {m.shape}")
    side = calibration_width(m, min_width)
    rows, cols = side, side
    h, w = m.shape
    limit = max(max_side, side)
    while rows < min(h, limit) and m[centre_block(h, rows + 1), centre_block(w, cols)].all():
        rows += 1
    while cols < min(w, limit) and m[centre_block(h, rows), centre_block(w, cols + 1)].all():
        cols += 1
    return rows, cols


def _check_kspace(kspace: np.ndarray, ndim: int, what: str) -> np.ndarray:
    k = np.asarray(kspace)
    if k.ndim != ndim or not np.iscomplexobj(k):
        raise InputError(f"{what} must be complex with {ndim} dims, got {k.dtype} {k.shape}")
    if not np.isfinite(k).all():
        raise InputError(f"{what} contains NaN or inf")
    return k.astype(np.complex64, copy=False)


def estimate_smaps(
    kspace: np.ndarray, calib: int | None = None, *, kernel_width: int | None = None,
    thresh: float = 0.02, crop: float = 0.95,
) -> np.ndarray:
    """ESPIRiT coil maps (C, H, W) complex64 from one slice of centred multi-coil k-space (C, H, W).

    ``calib`` is the side of a square autocalibration region; by default the fully sampled centre rectangle found
    from the zero pattern of ``kspace`` (:func:`calibration_region`): a square for 2D masks, a rectangle for 1D
    ones. :func:`medscore.physics.espirit.espirit_maps` computes them, with exact eigenvectors: on a square it gives
    sigpy's ``EspiritCalib`` maps where sigpy's 100 power iterations converge, and better maps, 7x faster, where
    they do not (15 coils at 640 x 368, a 24 x 24 square: map error 0.060 against sigpy's 0.121, 3.7 against
    27.8 s; docs/benchmarks.md).
    ``kernel_width`` defaults per side to ``clip(side // 3, 3, 6)``: sigpy's fixed 6 needs a wide region (about
    18), and from the 10-12 lines of a fastMRI-style 8 % centre on 128 samples its eigenvalues fall below ``crop``
    inside the object, which zeroes the maps there (measured: 0 % of a brain kept at 10x10 with width 6, 100 % with
    width 3, map correlation 0.9995). ``thresh`` and ``crop`` are sigpy's (and BART's) defaults: singular-value
    threshold of the calibration matrix, eigenvalue below which a pixel's maps are set to zero (outside the
    object). CPU, no progress bar.
    """
    k = _check_kspace(kspace, 3, "multi-coil k-space (C, H, W)")
    if k.shape[0] < 2:
        raise InputError(f"need at least 2 coils to estimate coil maps, got {k.shape[0]}")
    region = calibration_region(sampling_mask_from_kspace(k)) if calib is None else (int(calib), int(calib))
    kernel = tuple(min(KERNEL_WIDTH, max(3, side // 3)) if kernel_width is None else int(kernel_width)
                   for side in region)
    if not all(kk < side <= n for kk, side, n in zip(kernel, region, k.shape[1:])):
        raise InputError(f"calib {region} must exceed the kernel {kernel} and fit k-space {k.shape}")
    return espirit_maps(k, region, kernel, thresh=thresh, crop=crop)  # scales k to unit maximum itself


def estimate_smaps_volume(kspace: np.ndarray, calib: int | None = None, *, image_phase: bool = False,
                          **kwargs: Any) -> np.ndarray:
    """:func:`estimate_smaps` slice by slice: (S, C, H, W) k-space -> (S, C, H, W) complex64 maps.

    With ``calib=None`` the calibration width is found per slice (the masks may differ between slices).
    ``image_phase``: each slice's maps also take its image's smooth phase (:func:`real_image_phase`).
    """
    k = _check_kspace(kspace, 4, "multi-coil k-space volume (S, C, H, W)")
    maps = [estimate_smaps(s, calib, **kwargs) for s in k]
    return np.stack([real_image_phase(s, m) for s, m in zip(k, maps)] if image_phase else maps)


def map_correlation(estimated: np.ndarray, true: np.ndarray, support: np.ndarray | None = None) -> float:
    """Agreement of two coil-map sets (C, H, W) in [0, 1]; 1 means equal up to a global phase.

    Coil maps are defined only up to a per-pixel complex factor ``c(r)`` (the image absorbs it), so both
    sets are first brought to one convention: unit norm over coils at each pixel, and the per-pixel phase
    of ``estimated`` aligned to ``true``. The result is then the normalised ``|<a, b>| / (||a|| ||b||)``
    over ``support`` (a boolean (H, W) object mask; default: pixels where both sets are non-zero), which
    equals the mean over the support of the per-pixel ``|<a(r), b(r)>| / (||a(r)|| ||b(r)||)``; support
    pixels where either set is zero (e.g. cropped by ESPIRiT) count as 0.
    """
    a, b = np.asarray(estimated), np.asarray(true)
    if a.shape != b.shape or a.ndim != 3:
        raise InputError(f"coil maps must both be (C, H, W) with equal shapes, got {a.shape} and {b.shape}")
    na = np.sqrt((np.abs(a) ** 2).sum(0))
    nb = np.sqrt((np.abs(b) ** 2).sum(0))
    sup = (na > 0) & (nb > 0) if support is None else np.asarray(support, dtype=bool)
    if sup.shape != a.shape[1:] or not sup.any():
        raise InputError(f"support must be a non-empty (H, W) = {a.shape[1:]} mask, got {sup.shape}")
    both = (na > 0) & (nb > 0)
    per_pixel = np.zeros(na.shape)
    per_pixel[both] = np.abs((a.conj() * b).sum(0))[both] / (na[both] * nb[both])
    return float(per_pixel[sup].mean())  # a support pixel where either set is zero counts as 0


def real_image_phase(kspace: np.ndarray, smaps: np.ndarray) -> np.ndarray:
    """``smaps`` (K, H, W) times the phase of the image they combine from the calibration region alone.

    Coil maps are defined up to a per-pixel factor that the image absorbs. ESPIRiT's leaves the object's
    phase in the image (relative to coil 0); this one moves its smooth part into the maps, so the image to
    reconstruct is close to real and positive, as the magnitude prior (applied to the real and the imaginary
    channel) expects. The phase is that of ``sum_k conj(S_k) F^H (B y_k)``, ``B`` the fully sampled centre
    block of ``kspace`` (no taper: a Hann window left 5-12x more imaginary energy on the benchmark slices):
    measured data only, the same maps for every method.
    """
    c = calibration_width(sampling_mask_from_kspace(kspace))
    h, w = kspace.shape[-2:]
    block = np.zeros_like(kspace)
    rows, cols = slice(h // 2 - c // 2, h // 2 - c // 2 + c), slice(w // 2 - c // 2, w // 2 - c // 2 + c)
    block[:, rows, cols] = kspace[:, rows, cols]
    low = ifft2c(torch.from_numpy(block.astype(np.complex64, copy=False))).numpy()
    phase = np.exp(1j * np.angle((smaps.conj() * low).sum(0)))
    return (smaps * phase).astype(np.complex64)


def smooth_image_phase(image: torch.Tensor, width: float) -> torch.Tensor:
    """The smooth phase of ``image`` (B, 2, H, W) real/imaginary channels as unit factors (B, 1, H, W) complex64.

    The phase is that of the image low-passed by a Gaussian of std ``width`` pixels (MONAI's ``GaussianFilter``
    on the two channels, so the average is weighted by the magnitude; where the low-passed image is zero the
    factor is 1). Coil maps times this factor, with the image divided by it, give the same ``S_k x``: the
    forward model stays exact while the image to reconstruct becomes nearly real.
    """
    from monai.networks.layers import GaussianFilter

    if image.ndim != 4 or image.shape[1] != 2:
        raise ValueError(f"expected an image (B, 2, H, W) of real/imaginary channels, got {tuple(image.shape)}")
    low = GaussianFilter(2, float(width)).to(image.device)(image.float())
    return torch.polar(torch.ones_like(low[:, :1]), torch.atan2(low[:, 1:], low[:, :1]))


def estimate_image_maps(kspace: np.ndarray) -> np.ndarray:
    """The coil maps medscore reconstructs with: ESPIRiT maps (:func:`estimate_smaps`) of one slice's
    undersampled k-space (C, H, W), not cropped, with the image's smooth phase (:func:`real_image_phase`).

    ``crop=0`` keeps the maps outside the object: sigpy's default (0.95) zeroes them there, which leaves the
    background to the prior alone, and the magnitude prior paints tissue into it (medscore fast on a
    poisson-vd 8x test slice: 28.0 dB with the crop, 36.0 dB without; TV-CS 38.5 and 38.4 dB).
    """
    return estimate_smaps_volume(kspace[None], crop=0.0, image_phase=True)[0]


def estimate_kspace_noise(kspace: np.ndarray, mask: np.ndarray, edge: float = 0.8) -> float:
    """Std of complex Gaussian k-space noise (real and imaginary parts together) from the measured periphery.

    ``kspace`` (..., H, W) centred, ``mask`` (H, W) or (W,) of measured samples. Uses the samples measured in
    every coil beyond ``edge`` of the half-width in either direction: ``median |k| / sqrt(ln 2)``, exact for pure
    noise (the median of a Rayleigh variable). Signal left in the periphery adds to it, so it is an upper
    bound: exact on pure noise, 0.0089 for noise of std 0.005 on the 1 mm MNI brain with 8 coils (where the
    brain's fine texture reaches the edge of k-space), 0.0125 for 0.01. Scanner data, whose periphery holds
    little signal at typical SNR, sit nearer the exact end. Written here because no MONAI or sigpy function
    estimates k-space noise without a noise pre-scan.
    """
    k = np.asarray(kspace)
    h, w = k.shape[-2:]
    ry = np.abs(np.arange(h) - h // 2) / (h / 2)
    rx = np.abs(np.arange(w) - w // 2) / (w / 2)
    outer = (np.maximum(ry[:, None], rx[None, :]) > edge) & (np.broadcast_to(np.asarray(mask), (h, w)) > 0)
    values = np.abs(k[..., outer])
    if values.size == 0:
        raise InputError(f"no measured k-space samples beyond {edge:g} of the half-width: cannot estimate the noise")
    return float(np.median(values) / np.sqrt(np.log(2.0)))
