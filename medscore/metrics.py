"""Image-quality metrics: PSNR, SSIM, NMSE and HFEN.

Convention (used for every number we report): images are on the [0, 1] scale of the reference
volume, i.e. each volume is divided by the maximum of its reference, and ``data_range = 1``.
(fastMRI passes the reference maximum as the data range; scaling the volume by that maximum first
and then fixing ``data_range = 1`` is the same thing.) No cropping is applied unless ``crop`` is
given, in which case the central ``crop = (h, w)`` window of every image is scored.

Inputs are numpy arrays or torch tensors shaped (H, W) or (..., H, W); every trailing 2D slice is
one image (a (B, 1, H, W) batch gives B values). A single 2D image returns a float, a stack returns
a 1D numpy array of per-image values. Complex (2-channel) images must be turned into magnitudes by
the caller. PSNR and SSIM come from ``skimage.metrics``; SSIM uses its defaults (7x7 uniform window,
K1 = 0.01, K2 = 0.03), as fastMRI does.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["psnr", "ssim", "nmse", "hfen", "METRICS", "summarize", "center_crop"]


def _to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if np.iscomplexobj(a):
        raise TypeError("metrics take real images; pass the magnitude of complex images")
    return a.astype(np.float64, copy=False)


def center_crop(a: np.ndarray, crop: Sequence[int] | None) -> np.ndarray:
    """Central ``crop = (h, w)`` window over the last two dims (no-op for ``None``)."""
    if crop is None:
        return a
    h, w = int(crop[0]), int(crop[1])
    H, W = a.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"crop {(h, w)} larger than image {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    return a[..., top : top + h, left : left + w]


def _pairs(ref, x, crop) -> tuple[np.ndarray, np.ndarray, bool]:
    r, e = _to_numpy(ref), _to_numpy(x)
    if r.shape != e.shape:
        raise ValueError(f"shape mismatch: reference {r.shape} vs estimate {e.shape}")
    if r.ndim < 2:
        raise ValueError(f"need images of shape (..., H, W), got {r.shape}")
    single = r.ndim == 2
    r, e = center_crop(r, crop), center_crop(e, crop)
    return r.reshape(-1, *r.shape[-2:]), e.reshape(-1, *e.shape[-2:]), single


def _per_image(fn: Callable[[np.ndarray, np.ndarray], float], ref, x, crop) -> float | np.ndarray:
    r, e, single = _pairs(ref, x, crop)
    vals = np.array([fn(ri, ei) for ri, ei in zip(r, e)], dtype=np.float64)
    return float(vals[0]) if single else vals


def psnr(ref, x, data_range: float = 1.0, crop: Sequence[int] | None = None) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB (``inf`` when ``x == ref``)."""

    def one(r: np.ndarray, e: np.ndarray) -> float:
        if np.array_equal(r, e):  # skimage would divide by zero and warn
            return float("inf")
        return float(peak_signal_noise_ratio(r, e, data_range=data_range))

    return _per_image(one, ref, x, crop)


def ssim(ref, x, data_range: float = 1.0, crop: Sequence[int] | None = None) -> float | np.ndarray:
    """Structural similarity (skimage defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03)."""
    return _per_image(lambda r, e: float(structural_similarity(r, e, data_range=data_range)), ref, x, crop)


def nmse(ref, x, data_range: float | None = None, crop: Sequence[int] | None = None) -> float | np.ndarray:
    """Normalised MSE ``||ref - x||^2 / ||ref||^2`` per image.

    ``data_range`` is ignored; it is accepted so that all ``METRICS`` share one call signature.
    """

    def one(r: np.ndarray, e: np.ndarray) -> float:
        den = float(np.sum(r**2))
        num = float(np.sum((r - e) ** 2))
        if den == 0.0:
            return 0.0 if num == 0.0 else float("inf")
        return num / den

    return _per_image(one, ref, x, crop)


METRICS: dict[str, Callable[..., float | np.ndarray]] = {"psnr": psnr, "ssim": ssim, "nmse": nmse}


def hfen(ref, x, sigma: float = 1.5, crop: Sequence[int] | None = None) -> float | np.ndarray:
    """High-frequency error norm (Ravishankar & Bresler, IEEE TMI 2011): ``||LoG(x - ref)|| / ||LoG(ref)||`` with
    the 15 x 15 Laplacian-of-Gaussian filter of width ``sigma`` 1.5 (``scipy.ndimage.gaussian_laplace``, reflected
    borders). Lower is better; a smooth cartoon of the right intensities scores badly, whatever its PSNR."""
    from scipy.ndimage import gaussian_laplace

    truncate = 7.0 / sigma  # a radius of 7 pixels: the paper's 15 x 15 kernel

    def one(r: np.ndarray, e: np.ndarray) -> float:
        den = np.linalg.norm(gaussian_laplace(r, sigma, truncate=truncate))
        return float(np.linalg.norm(gaussian_laplace(e - r, sigma, truncate=truncate)) / max(den, 1e-12))

    return _per_image(one, ref, x, crop)


def summarize(values: Iterable[float] | np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` of per-image values; std is the sample std (ddof = 1), 0 for one value."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    v = np.asarray(values if isinstance(values, np.ndarray) else [float(a) for a in values], dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("summarize needs at least one value")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), std


# ---------------------------------------------------------------------------------------------------------------
# The fastMRI convention (facebookresearch/fastMRI, ``fastmri/evaluate.py``), for comparison with published
# fastMRI numbers. It differs from medscore's own metrics above in two ways: one number per *volume* (not per
# image), and the data range is the maximum of the reference volume in its own units (no rescaling to [0, 1]).
# Volumes are (S, H, W) stacks of slices, or any (..., H, W) array (all images form one volume; a single 2D
# image is a one-slice volume), magnitude images in the same units, e.g. a fastMRI ``reconstruction_rss``
# against a ``reconstruction`` (centre-cropped to 320 x 320 by ``crop=(320, 320)`` when they are not already).

def _volume_pair(ref, x, crop: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray, float]:
    """(N, H, W) reference and estimate stacks and the fastMRI data range (the reference volume's maximum)."""
    r, e, _ = _pairs(ref, x, crop)
    top = float(r.max())
    if not top > 0:
        raise ValueError(f"the reference volume's maximum must be > 0 (it is the data range), got {top}")
    return r, e, top


def fastmri_psnr(ref, x, crop: Sequence[int] | None = None) -> float:
    """fastMRI PSNR in dB: MSE over the whole volume, data range = the reference volume's maximum
    (``inf`` when ``x == ref``)."""
    r, e, top = _volume_pair(ref, x, crop)
    if np.array_equal(r, e):
        return float("inf")
    return float(peak_signal_noise_ratio(r, e, data_range=top))


def fastmri_ssim(ref, x, crop: Sequence[int] | None = None) -> float:
    """fastMRI SSIM: per slice with a 7x7 uniform window (K1 = 0.01, K2 = 0.03) and the reference *volume's*
    maximum as data range for every slice, then averaged over the slices."""
    r, e, top = _volume_pair(ref, x, crop)
    return float(np.mean([structural_similarity(ri, ei, win_size=7, data_range=top) for ri, ei in zip(r, e)]))


def fastmri_nmse(ref, x, crop: Sequence[int] | None = None) -> float:
    """fastMRI NMSE: ``||ref - x||^2 / ||ref||^2`` over the whole volume."""
    r, e, _ = _volume_pair(ref, x, crop)
    return float(np.sum((r - e) ** 2) / np.sum(r**2))


FASTMRI_METRICS: dict[str, Callable[..., float]] = {"psnr": fastmri_psnr, "ssim": fastmri_ssim, "nmse": fastmri_nmse}
"""The fastMRI-convention metrics by name (one value per volume); :data:`METRICS` holds medscore's own."""

__all__ += ["fastmri_psnr", "fastmri_ssim", "fastmri_nmse", "FASTMRI_METRICS"]
