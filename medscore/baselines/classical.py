"""Classical denoising and inpainting baselines (scikit-image, optional BM3D) and grid tuning.

All functions take a 2D float numpy image on the [0, 1] scale of its volume and return an array of
the same shape. ``tune`` picks parameters by mean PSNR on validation images only; never tune on the
test slices.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle
from skimage.restoration import inpaint_biharmonic as _sk_inpaint_biharmonic

from ..metrics import psnr

__all__ = ["denoise_tv", "denoise_nlm", "denoise_bm3d", "inpaint_biharmonic", "METHODS", "tune"]


def _image(y: Any) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {y.shape}")
    return y


def denoise_tv(y: np.ndarray, weight: float) -> np.ndarray:
    """Chambolle TV denoising: ``min_u 1/2 ||u - y||^2 + weight TV(u)``."""
    return denoise_tv_chambolle(_image(y), weight=weight)


def denoise_nlm(
    y: np.ndarray,
    sigma: float,
    h: float | None = None,
    patch_size: int = 5,
    patch_distance: int = 6,
) -> np.ndarray:
    """Non-local means (fast mode) with known noise std ``sigma``; ``h`` defaults to ``0.8 sigma``.

    The defaults follow the scikit-image guidance for a known ``sigma`` (5x5 patches, 13x13 search).
    """
    h = 0.8 * sigma if h is None else h
    return denoise_nl_means(
        _image(y), h=h, sigma=sigma, patch_size=patch_size, patch_distance=patch_distance, fast_mode=True
    )


def denoise_bm3d(y: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D with white-noise std ``sigma`` (needs the optional ``bm3d`` package)."""
    try:
        import bm3d
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("denoise_bm3d needs the optional 'bm3d' package: pip install bm3d") from err
    img = _image(y)
    return np.asarray(bm3d.bm3d(img, sigma_psd=sigma), dtype=np.float64).reshape(img.shape)


def inpaint_biharmonic(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Biharmonic inpainting; ``mask`` is 1 on observed pixels (the ``Inpainting`` operator's convention).

    Note scikit-image's own mask marks the *missing* pixels; it is inverted here.
    """
    img = _image(y)
    known = _image(mask) > 0.5
    if known.shape != img.shape:
        raise ValueError(f"mask shape {known.shape} != image shape {img.shape}")
    return _sk_inpaint_biharmonic(img, ~known)


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "tv": denoise_tv,
    "nlm": denoise_nlm,
    "bm3d": denoise_bm3d,
    "biharmonic": inpaint_biharmonic,
}


def _grid_points(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(grid, Mapping):
        names = list(grid)
        return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    return [dict(p) for p in grid]


def tune(
    method: str | Callable[..., np.ndarray],
    degraded_list: Sequence[Any],
    reference_list: Sequence[np.ndarray],
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    data_range: float = 1.0,
    scores: dict[tuple, float] | None = None,
) -> dict[str, Any]:
    """Parameters from ``grid`` maximising mean PSNR of ``method`` over validation images.

    ``method`` is a name in ``METHODS`` or a callable ``method(degraded, **params)``; a tuple item of
    ``degraded_list`` is unpacked as positional arguments (e.g. ``(y, mask)`` for inpainting).
    ``grid`` is ``{name: values}`` (Cartesian product) or a list of parameter dicts. Ties go to
    the first grid point. If ``scores`` is a dict it receives ``{tuple(params.items()): mean PSNR}``.
    """
    fn = METHODS[method] if isinstance(method, str) else method
    if len(degraded_list) != len(reference_list) or not degraded_list:
        raise ValueError("need equally many (>= 1) degraded and reference images")
    points = _grid_points(grid)
    if not points:
        raise ValueError("empty parameter grid")
    best, best_score = points[0], -np.inf
    for params in points:
        vals = []
        for deg, ref in zip(degraded_list, reference_list):
            args = deg if isinstance(deg, tuple) else (deg,)
            vals.append(psnr(_image(ref), _image(fn(*args, **params)), data_range=data_range))
        score = float(np.mean(vals))
        if scores is not None:
            scores[tuple(params.items())] = score
        if score > best_score:
            best, best_score = params, score
    return best
