"""k-space sampling masks.

Convention: masks live on *centred* k-space (DC at index (H // 2, W // 2), as produced by the centred
FFT in :mod:`medscore.physics.mri`); 1 = sampled, 0 = not sampled; float32. A 1D mask of shape (W,)
lists phase-encode lines along the last (W) axis, the same line sampled for every row (every k_y), and
broadcasts against (..., H, W); a 2D mask has shape (H, W).

1D patterns ("random", "equispaced") are built by MONAI's fastMRI-style ``RandomKspaceMask`` /
``EquispacedKspaceMask``: ``round(W * center)`` central lines are always sampled, and the rest are drawn
with probability ``(W / accel - n_low) / (W - n_low)`` (random) or equispaced with a random offset.
2D patterns: "poisson" (medscore's own, dense at the centre) and "poisson-vd" (the usual variable-density
Poisson-disc of sigpy / BART; sigpy is optional); see :func:`make_mask`.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask

from ..errors import InputError
from ..checks import MAX_MASK_SIZE, check_memory, check_seed

__all__ = ["MaskError", "make_mask", "expand_mask", "validate_mask", "acceleration", "PATTERNS"]

#: the patterns :func:`make_mask` knows
PATTERNS = ("random", "equispaced", "poisson", "poisson-vd")
#: working set of the 2D patterns per pixel (measured: 37 bytes for "poisson" at 512 x 512); 1D patterns, per line
BYTES_PER_PIXEL_2D, BYTES_PER_LINE = 50, 16


class MaskError(InputError):
    """A sampling mask that does not fit the scan or is not a 0/1 mask."""


def _check_args(shape: tuple[int, ...], accel: float, center: float, two_d: bool, max_size: int,
                seed: int = 0) -> tuple[int, int]:
    """Arguments of :func:`make_mask`, checked before anything is allocated (MaskError naming the argument), and
    the pattern's working set against free memory."""
    if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape) \
            or min(shape) < 2:
        raise MaskError(f"shape must be (H, W) with integers H, W >= 2, got {shape}")
    if max(shape) > max_size:
        raise MaskError(f"shape {tuple(int(n) for n in shape)} exceeds the maximum mask side {max_size}; "
                        "pass a larger max_size (--max-size) if you mean it")
    if not 1 <= accel < float("inf"):
        raise MaskError(f"accel must be a finite number >= 1, got {accel}")
    if not 0 <= center < 1:
        raise MaskError(f"center must be in [0, 1), got {center}")
    area = center**2 if two_d else center
    if accel > 1 and area >= 1 / accel:
        need = "center**2" if two_d else "center"
        raise MaskError(f"center {center} is already sampled beyond accel {accel}: need {need} < 1/accel")
    check_seed("seed", seed)
    h, w = int(shape[0]), int(shape[1])
    check_memory(f"a {'2D' if two_d else '1D'} mask of shape {(h, w)}",
                 h * w * BYTES_PER_PIXEL_2D if two_d else w * BYTES_PER_LINE, "choose a smaller shape")
    return h, w


def _monai_lines(pattern: str, width: int, accel: float, center: float, seed: int) -> np.ndarray:
    cls = RandomKspaceMask if pattern == "random" else EquispacedKspaceMask
    t = cls(center_fractions=[center], accelerations=[accel], spatial_dims=2, is_complex=True)
    t.set_random_state(seed=seed)
    t(torch.zeros(1, 1, width, 2))  # dummy (coil, H=1, W, re/im) k-space: only W matters to the mask
    return np.asarray(t.mask, dtype=np.float32).reshape(width)


def _centre_slice(n: int, frac: float) -> slice:
    # Same placement as MONAI's calibration lines, so the block always contains DC (index n // 2).
    n_low = int(round(n * frac))
    pad = (n - n_low + 1) // 2
    return slice(pad, pad + n_low)


def _nearest_higher_distance(priority: np.ndarray, r_max: int) -> np.ndarray:
    """Distance from each pixel to the nearest pixel of higher priority (inf if none within r_max)."""
    h, w = priority.shape
    span = range(-r_max, r_max + 1)
    offs = sorted(((dy, dx) for dy in span for dx in span), key=lambda o: o[0] * o[0] + o[1] * o[1])
    offs = [o for o in offs if 0 < o[0] * o[0] + o[1] * o[1] <= r_max * r_max]
    padded = np.full((h + 2 * r_max, w + 2 * r_max), -np.inf)
    padded[r_max : r_max + h, r_max : r_max + w] = priority
    dist = np.full((h, w), np.inf)
    for dy, dx in offs:  # loop over ~pi r_max^2 offsets, each a whole-image vector op
        nb = padded[r_max + dy : r_max + dy + h, r_max + dx : r_max + dx + w]
        hit = (nb > priority) & np.isinf(dist)
        dist[hit] = np.hypot(dy, dx)
    return dist


def _poisson(shape: tuple[int, int], accel: float, center: float, seed: int) -> np.ndarray:
    # MONAI has no 2D / Poisson-disc mask generator, hence this one. It is a variable-density hard-core
    # (Poisson-disc) process by Matern type-II thinning: every pixel gets a random priority and is kept
    # iff no higher-priority pixel lies closer than r(rho) = s * rho, rho the normalised k-space radius.
    # Kept samples are then at least r apart, density falls with radius and the disc where r <= 1 (one
    # pixel) is fully sampled. The distance to the
    # nearest higher-priority pixel is computed once, so bisection on s to hit the acceleration is cheap.
    h, w = shape
    rng = np.random.default_rng(seed)
    priority = rng.random((h, w))
    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    rho = np.hypot(ky[:, None], kx[None, :])
    calib = np.zeros((h, w), dtype=bool)
    calib[_centre_slice(h, center), _centre_slice(w, center)] = True
    target = h * w / accel
    r_max = int(np.ceil(3.0 * np.sqrt(accel))) + 2
    dist = _nearest_higher_distance(priority, r_max)

    def sampled(s: float) -> np.ndarray:
        return calib | (s * rho <= dist)

    lo, hi = 0.0, 1.0
    while sampled(hi).sum() > target:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise MaskError(f"cannot reach acceleration {accel} for shape {shape} with center {center}")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if sampled(mid).sum() > target:
            lo = mid
        else:
            hi = mid
    a, b = sampled(lo), sampled(hi)
    best = a if abs(a.sum() - target) <= abs(b.sum() - target) else b
    return best.astype(np.float32)


def _vd_radius(shape: tuple[int, int], calib: tuple[int, int]) -> np.ndarray:
    """Normalised k-space radius outside the calibration block (0 inside it, 1 at the edge midpoints)."""
    def axis(n: int, c: int) -> np.ndarray:
        d = np.maximum(np.abs(np.arange(n) - n / 2) - c / 2, 0.0)
        return d / max(float(d.max()), 1e-12)

    return np.hypot(axis(shape[0], calib[0])[:, None], axis(shape[1], calib[1])[None, :])


def _poisson_vd(shape: tuple[int, int], accel: float, center: float, seed: int, tol: float = 0.1) -> np.ndarray:
    """The usual variable-density Poisson-disc pattern, drawn by sigpy's sampler (``sigpy.mri.poisson``).

    Bridson's Poisson-disc sampler, minimum distance ``1 + s r`` samples (r: :func:`_vd_radius`), i.e.
    density ~ 1 / (1 + s r) as in sigpy and BART, corners beyond r = 1 left empty, the centre block of
    ``round(center * (H, W))`` fully sampled; the slope ``s`` is bisected until the acceleration is within
    ``tol`` of ``accel``. Where sigpy's own bisection succeeds the masks are identical to
    ``sigpy.mri.poisson(shape, accel, calib, seed=seed)``. The loop is ours because sigpy's bisection
    never ends when no slope lands within ``tol`` (small images: the pattern jumps by many samples), and
    its sampler stalls for seeds whose start point falls in the calibration block (96 x 96, 8x, centre
    0.125, seed 0): such a seed is replaced by seeds derived from it, deterministically. The sampler
    changed in sigpy 0.1.27 (a nested-loop break), so a seed gives different masks with 0.1.26.

    It is far sparser at the centre than "poisson" at the same nominal acceleration. Measured zero-filled
    PSNR (single coil, real image, magnitude, 8x, centre 0.08, seed 0, the 10 embedded test slices of
    151 x 187): "poisson" 27.16 dB (26.98-27.32), "poisson-vd" 22.24 dB (22.09-22.46): 4.9 dB easier, so
    "8x Poisson" figures from "poisson" do not compare with published ones; those from "poisson-vd" do.
    """
    try:
        from sigpy.mri.samp import _poisson as draw  # the numba-compiled Poisson-disc sampler
    except ImportError:
        raise MaskError('the "poisson-vd" pattern uses sigpy: pip install "medscore[mri]"') from None
    if accel <= 1:
        raise MaskError(f'accel must be > 1 for the "poisson-vd" pattern, got {accel}')
    h, w = shape
    calib = (int(round(h * center)), int(round(w * center)))
    r = _vd_radius(shape, calib)
    tries = [int(seed)] + [int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0]) for k in range(1, 5)]
    for s in tries:
        lo, hi = 0.0, float(max(h, w))
        for _ in range(40):
            slope = 0.5 * (lo + hi)
            dist = 1.0 + r * slope
            m = draw(w, h, 30, np.clip(dist * w / max(h, w), 1, None), np.clip(dist * h / max(h, w), 1, None),
                     calib, s) * (r < 1)
            got = h * w / max(float(m.sum()), 1.0)
            if abs(got - accel) < tol:
                return np.ascontiguousarray(m, dtype=np.float32)
            lo, hi = (slope, hi) if got < accel else (lo, slope)
    raise MaskError(f"cannot reach acceleration {accel} within {tol} for shape {shape} with center {center} "
                    f"({len(tries)} seeds tried): change accel or center")


def make_mask(pattern: str, shape: tuple[int, int], accel: float, center: float, seed: int = 0,
              max_size: int = MAX_MASK_SIZE) -> np.ndarray:
    """A 0/1 float32 sampling mask.

    ``pattern``: "random" / "equispaced" (1D, shape (W,), via MONAI), "poisson" (2D variable-density
    Poisson-disc, shape (H, W), fully sampled centre block of ``center`` * (H, W)) or "poisson-vd" (2D,
    the usual variable-density Poisson-disc of sigpy / BART, see :func:`_poisson_vd`; needs sigpy).
    ``accel`` is the target acceleration (exact in expectation for "random", within a few % for the
    others). Sides above ``max_size`` (default 4096) are refused before anything is allocated, as is a
    shape whose working set (2D: ``BYTES_PER_PIXEL_2D`` per pixel) exceeds free memory and a mask that samples
    nothing. ``seed`` is an integer in [0, 2**63 - 1].
    """
    if pattern not in PATTERNS:
        raise MaskError(f"unknown mask pattern {pattern!r}: expected one of {', '.join(map(repr, PATTERNS))}")
    h, w = _check_args(tuple(shape), accel, center, pattern in ("poisson", "poisson-vd"), max_size, seed)
    if pattern == "poisson-vd":
        m = _poisson_vd((h, w), accel, center, seed)
    else:
        m = _monai_lines(pattern, w, accel, center, seed) if pattern != "poisson" else _poisson((h, w), accel, center,
                                                                                                seed)
    if not m.any():
        raise MaskError(f"the {pattern} mask for shape {(h, w)}, accel {accel}, center {center} samples nothing: "
                        "lower accel or raise center")
    return m


def validate_mask(mask: object, image_shape: tuple[int, ...]) -> np.ndarray:
    """Check ``mask`` against a scan of spatial shape ``image_shape`` (its last two entries are H, W).

    Returns the mask as float32; raises :class:`MaskError` (one line) if the shape fits neither (W,)
    nor (H, W), its dtype is not bool, integer or float, or it holds NaN/inf, values other than 0/1, or no sample.
    """
    h, w = (int(n) for n in tuple(image_shape)[-2:])
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.shape not in ((w,), (h, w)):
        raise MaskError(
            f"mask shape {m.shape} does not match the scan: expected (W,) = ({w},) or (H, W) = ({h}, {w})"
        )
    if np.iscomplexobj(m):
        raise MaskError("mask is complex-valued: expected 0/1 numbers")
    if m.dtype.kind not in "biuf":  # strings ('0', '1'), objects, dates: not numbers, even where they would convert
        raise MaskError(f"mask has dtype {m.dtype}: expected 0/1 numbers (bool, integer or float)")
    m = m.astype(np.float32)
    if not np.isfinite(m).all():
        raise MaskError("mask contains NaN or inf: expected only 0 and 1")
    if not np.isin(m, (0.0, 1.0)).all():
        bad = np.unique(m[~np.isin(m, (0.0, 1.0))])[:3]
        raise MaskError(f"mask values must be 0 or 1, found {bad.tolist()}")
    if not m.any():
        raise MaskError("mask is all zeros: nothing would be sampled")
    return m


def expand_mask(mask: object, shape: tuple[int, ...]) -> np.ndarray:
    """The (H, W) float32 mask for a scan of spatial shape ``shape`` (a (W,) mask is repeated over rows)."""
    m = validate_mask(mask, shape)
    h, w = (int(n) for n in tuple(shape)[-2:])
    return np.ascontiguousarray(np.broadcast_to(m, (h, w)))


def acceleration(mask: object, shape: tuple[int, ...] | None = None) -> float:
    """Acceleration ``1 / sampled fraction`` of a mask ((W,) masks: fraction of lines)."""
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=np.float64)
    if shape is not None:
        m = expand_mask(m, shape)
    return float(m.size / m.sum())
