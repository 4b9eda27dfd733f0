"""Argument checks run before any model is loaded, anything computed or any file written.

Each check raises a :class:`~medscore.errors.MedscoreError` subclass whose one-line message names the
argument (``name`` is what the caller calls it: ``"--batch-size"`` on the CLI, ``"batch_size"`` in the
API). The limits are documented in ``docs/errors-and-limits.md``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "MIN_SLICE", "MAX_MASK_SIZE", "MAX_PARAMETERS", "MAX_LEVELS", "MAX_SAMPLES", "MAX_SEED", "MIN_SIGMA", "MAX_SNR",
    "check_int", "check_positive", "check_fraction", "check_choice", "check_batch_size", "check_samples", "check_seed",
    "check_sampler_overrides", "check_image_array", "check_slice_shape", "check_mask_or_missing", "available_memory",
    "check_memory", "format_bytes",
]

MIN_SLICE = 8  # smallest slice side the networks, plots and SSIM handle
MAX_MASK_SIZE = 4096  # default largest mask side (`medscore mask --max-size` / ``make_mask(max_size=)``)
MAX_PARAMETERS = 200_000_000  # largest score network a model.json may describe
MAX_LEVELS = 10_000  # most noise levels a model.json may list
MAX_SAMPLES = 1000  # most posterior samples (chains) per image: `--samples`, ``samples=``
MAX_SEED = 2**63 - 1  # seeds are integers in [0, MAX_SEED] (torch and numpy generators take them whole)
MIN_SIGMA = 1e-3  # smallest `--sigma-start` / ``sigma_end`` on the [0, 1] intensity scale
MAX_SNR = 1.0  # largest pc corrector signal-to-noise ratio (the usual values are 0.05-0.2; 1e30 overflows)


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` is an integer (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise InputError(f"{name} must be >= {minimum}{upper}, got {value}")
    return int(value)


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` is a finite real number > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise InputError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value}")
    return v


def check_fraction(name: str, value: Any) -> float:
    """``value`` is a finite number strictly between 0 and 1."""
    v = check_positive(name, value)
    if not v < 1:
        raise InputError(f"{name} must be in (0, 1), got {value}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise InputError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def check_batch_size(name: str, value: Any) -> int | str:
    """A batch size: an integer >= 1 or ``"auto"``."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise InputError(f"{name} must be >= 1 or 'auto', got {value!r}")
    return int(value)


def check_samples(name: str, value: Any) -> int | None:
    """Posterior samples: ``None`` (the preset's) or an integer in ``[1, MAX_SAMPLES]``."""
    return None if value is None else check_int(name, value, 1, MAX_SAMPLES)


def check_seed(name: str, value: Any) -> int:
    """A random seed: an integer in ``[0, MAX_SEED]`` (2**63 - 1)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value <= MAX_SEED:
        raise InputError(f"{name} must be an integer in [0, 2**63 - 1], got {value!r}")
    return int(value)


def _check_sigma(name: str, value: Any) -> None:
    if check_positive(name, value) < MIN_SIGMA:
        raise InputError(f"{name} must be >= {MIN_SIGMA:g} (noise levels are on the [0, 1] intensity scale), "
                         f"got {value}")


def _check_snr(name: str, value: Any) -> None:
    if check_positive(name, value) > MAX_SNR:
        raise InputError(f"{name} must be in (0, {MAX_SNR:g}] (typical: 0.05 to 0.2), got {value}")


_AT_LEAST_ONE = ("num_levels", "n_steps_each")
_AT_LEAST_ZERO = ("n_corrector",)
_POSITIVE = ("eps", "multiplier")


def check_sampler_overrides(prefix: str = "", names: Mapping[str, str] | None = None, **overrides: Any) -> None:
    """Numeric sampler settings given by the caller (``None`` = unset); ``names[key]`` (else ``prefix`` + key) names
    the argument."""
    for key, value in overrides.items():
        name = (names or {}).get(key, f"{prefix}{key}")
        if value is None:
            continue
        if key in _AT_LEAST_ONE:
            check_int(name, value, 1)
        elif key in _AT_LEAST_ZERO:
            check_int(name, value, 0)
        elif key in _POSITIVE:
            check_positive(name, value)
        elif key in ("sigma_start", "sigma_end"):
            _check_sigma(name, value)
        elif key == "snr":
            _check_snr(name, value)
        elif key == "seed":
            check_seed(name, value)
        elif key in ("eta", "renoise"):
            check_positive(name, value, allow_zero=True)
        elif key == "momentum" and not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise InputError(f"{name} must be in [0, 1), got {value!r}")
        elif key == "samples":
            check_samples(name, value)
        elif key == "flips" and not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name} must be true or false, got {value!r}")
    start, end = overrides.get("sigma_start"), overrides.get("sigma_end")
    if start is not None and end is not None and end > start:
        name_of = (names or {}).get
        raise InputError(f"{name_of('sigma_end', prefix + 'sigma_end')} ({end}) must be <= "
                         f"{name_of('sigma_start', prefix + 'sigma_start')} ({start})")


def check_slice_shape(name: str, shape: Sequence[int], axis: int | None = 2) -> tuple[int, int]:
    """The 2D slices of an array of ``shape`` (cut along ``axis`` when 3D) are at least ``MIN_SLICE`` a side."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 3:
        if axis not in (0, 1, 2, -1):
            raise InputError(f"--axis must be 0, 1 or 2, got {axis}")
        sl = tuple(n for i, n in enumerate(shape) if i != axis % 3)
    elif len(shape) == 2:
        sl = shape
    else:
        raise InputError(f"{name} must be 2D or 3D, got shape {shape}")
    if min(sl) < MIN_SLICE:
        raise InputError(f"{name}: slices of {sl[0]} x {sl[1]} pixels are too small (need at least "
                         f"{MIN_SLICE} x {MIN_SLICE}); check the shape {shape} and the slice axis")
    return sl  # type: ignore[return-value]


def check_image_array(name: str, x: Any, *, allow_complex: bool = False, stack: bool = True) -> None:
    """An image (H, W) or, with ``stack``, a stack (B, H, W): numeric, finite, real unless
    ``allow_complex``, each image at least ``MIN_SLICE`` a side. Accepts numpy arrays and tensors."""
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x).numpy()
    try:
        arr = np.asarray(x)
    except Exception:  # ragged lists and the like
        raise InputError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if np.iscomplexobj(arr) and not allow_complex:
        raise InputError(f"{name} is complex-valued: pass a real image (e.g. its magnitude)")
    if arr.dtype.kind not in "biufc":
        raise InputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    ranks = "(H, W) or (B, H, W)" if stack else "(H, W)"
    if arr.ndim not in ((2, 3) if stack else (2,)):
        raise InputError(f"{name} must be an image {ranks}, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[0] < 1:
        raise InputError(f"{name} is an empty stack, shape {arr.shape}")
    check_slice_shape(name, arr.shape[-2:])
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values")


def check_mask_or_missing(mask: Any, missing: Any, *, mask_name: str = "--mask",
                          missing_name: str = "--missing") -> None:
    """Inpainting takes a mask or a random missing fraction: exactly one of the two."""
    if mask is not None and missing is not None:
        raise InputError(f"{mask_name} and {missing_name} exclude each other: give one of them")
    if mask is None and missing is None:
        raise InputError(f"inpainting needs {mask_name} HOLES.npy or {missing_name} FRACTION in (0, 1)")
    if missing is not None:
        check_fraction(missing_name, missing)


def available_memory() -> int | None:
    """Bytes of host memory available now (``psutil`` if installed, else /proc/meminfo or ``sysconf``); None when
    they cannot be read, and then memory checks pass."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest unit (KiB, MiB, GiB, TiB) it reaches, with one decimal."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_memory(what: str, nbytes: float, hint: str, free: int | None = None) -> None:
    """``nbytes`` (the estimate for ``what``) fits in ``free`` bytes (default: :func:`available_memory`); else an
    InputError ``"<what> needs about X GiB, more than the Y GiB of free memory; <hint>"``."""
    free = available_memory() if free is None else free
    if free is not None and nbytes > free:
        raise InputError(f"{what} needs about {format_bytes(nbytes)}, more than the {format_bytes(free)} of free "
                         f"memory; {hint}")
