"""Checks of model descriptions and model arguments, made before any network is built.

``model.json`` is data from the user's disk: :func:`check_meta` validates its config, noise levels, image size
and intensity rule, and refuses a network above :data:`~medscore.checks.MAX_PARAMETERS` from its config alone
(:func:`estimate_parameters`, three tiny networks instead of the full one).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..checks import MAX_LEVELS, MAX_PARAMETERS, MIN_SLICE
from ..config import ModelConfig, config_from_dict
from ..errors import CheckpointError, ConfigError

__all__ = ["check_meta", "estimate_parameters"]


def _meta_field(meta: dict[str, Any], key: str, where: str) -> Any:
    if key not in meta:
        raise CheckpointError(f"{where}: the model description lacks '{key}'")
    return meta[key]


def _check_levels(sigmas: Any, where: str) -> list[float]:
    ok = isinstance(sigmas, list) and 1 <= len(sigmas) <= MAX_LEVELS and all(
        isinstance(s, (int, float)) and not isinstance(s, bool) for s in sigmas)
    if not ok:
        raise CheckpointError(f"{where}: 'sigmas' must be a list of 1 to {MAX_LEVELS} numbers")
    arr = np.asarray(sigmas, dtype=np.float64)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise CheckpointError(f"{where}: 'sigmas' must be finite and > 0 (found NaN, inf or <= 0)")
    return [float(s) for s in sigmas]


def _check_intensity(intensity: Any, where: str) -> None:
    pct = intensity.get("percentiles") if isinstance(intensity, dict) else None
    if not isinstance(pct, list) or len(pct) != 2 or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                                                             for p in pct):
        raise CheckpointError(f"{where}: 'intensity' must hold 'percentiles': [lower, upper]")
    lo, hi = (float(p) for p in pct)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= 100.0):
        raise CheckpointError(f"{where}: intensity percentiles must satisfy 0 <= lower < upper <= 100, got {pct}")
    if intensity.get("rule", "percentile") != "percentile":
        raise CheckpointError(f"{where}: unknown intensity rule {intensity.get('rule')!r} (expected 'percentile')")


def check_meta(meta: dict[str, Any], where: str | Any) -> tuple[Any, list[float]]:
    """Check a ``model.json`` before any network is built: ``(ModelConfig, sigmas)`` or CheckpointError.

    The parameter count is estimated from the config and refused above ``MAX_PARAMETERS``.
    """
    where = str(where)
    try:
        cfg = config_from_dict(ModelConfig, _meta_field(meta, "model", where), where=f"{where}: model")
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(str(exc).splitlines()[0] if str(exc) else f"{where}: bad 'model'") from None
    if not 1 <= cfg.in_channels <= 64 or cfg.ngf < 4:
        raise CheckpointError(f"{where}: model needs 1 <= in_channels <= 64 and ngf >= 4, got "
                              f"{cfg.in_channels}, {cfg.ngf}")
    sigmas = _check_levels(_meta_field(meta, "sigmas", where), where)
    size = _meta_field(meta, "image_size", where)
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SLICE:
        raise CheckpointError(f"{where}: 'image_size' must be an integer >= {MIN_SLICE}, got {size!r}")
    _check_intensity(_meta_field(meta, "intensity", where), where)
    n = estimate_parameters(cfg, len(sigmas))
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: the model would have {n / 1e6:.0f} M parameters, above the "
                              f"{MAX_PARAMETERS // 1_000_000} M limit (ngf={cfg.ngf}); refusing to build it")
    return cfg, sigmas


@lru_cache(maxsize=64)
def _quadratic(arch: str, in_channels: int, conditioning: str, scale: bool, down3: bool,
               levels: int, pair: bool = False) -> tuple[int, ...]:
    """Parameter counts at ngf = 4, 8, 12 (every layer's size is a polynomial of degree 2 in ngf)."""
    from ..nets import build_model, count_parameters

    sigmas = torch.logspace(0, -2, levels)
    cfgs = (ModelConfig(arch=arch, in_channels=in_channels, ngf=n, conditioning=conditioning,  # type: ignore[arg-type]
                        scale_by_sigma=scale, downsample3=down3, pair_channels=pair) for n in (4, 8, 12))
    return tuple(count_parameters(build_model(c, sigmas)) for c in cfgs)


def estimate_parameters(cfg: ModelConfig, levels: int) -> int:
    """Exact parameter count of ``build_model(cfg, <levels sigmas>)`` without building it at full width:
    three tiny networks fix the quadratic in ``ngf``."""
    p4, p8, p12 = _quadratic(cfg.arch, cfg.in_channels, cfg.conditioning, cfg.scale_by_sigma, cfg.downsample3, levels,
                             cfg.pair_channels)
    a = (p12 - 2 * p8 + p4) / 32  # second difference with step 4: p12 - 2 p8 + p4 = 32 a
    b = (p8 - p4) / 4 - 12 * a
    c = p4 - 16 * a - 4 * b
    n = cfg.ngf
    return int(round(a * n * n + b * n + c))
