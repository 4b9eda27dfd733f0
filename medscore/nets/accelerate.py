"""Opt-in speed-ups for a score network at inference: channels-last memory, ``torch.compile``, bf16 autocast.

Measured on a shared 2-core AVX2 CPU (``scripts/bench_forward.py``, 1 thread): channels-last makes the
fused forward ~5-15% faster (oneDNN convs and pooling gain more than the norms' reductions lose), so
``"auto"`` uses it everywhere; ``torch.compile`` took ~9 minutes to compile the network and was not
faster afterwards, so ``"auto"`` compiles on CUDA only.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PRECISIONS", "CPU_BF16_MIN_PIXELS", "CPU_PIXELS_PER_CALL", "accelerate", "autocast_score", "chunked_score",
           "cpu_has_native_bf16", "images_per_call", "inference_layout", "is_compiled", "resolve_precision",
           "score_inference"]

#: ``precision`` choices of the solvers: ``auto`` = bf16 where the hardware computes it (see resolve_precision)
PRECISIONS = ("auto", "fp32", "bf16")


class _FallbackForward:
    """A compiled forward that switches to the eager one, for good, when compiling fails.

    ``torch.compile`` is lazy: missing compilers, unsupported Python versions or graph errors surface
    at the first call, not at ``torch.compile`` time. An input error raises the eager error instead.
    """

    def __init__(self, compiled: Callable[..., Tensor], eager: Callable[..., Tensor]) -> None:
        self.compiled, self.eager, self.failed = compiled, eager, False

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
            out = self.eager(*args, **kwargs)  # a bad input raises here, without disabling compile
            self.failed = True
            first_line = str(exc).splitlines()[0][:120] if str(exc) else ""
            warnings.warn(f"torch.compile failed ({exc.__class__.__name__}: {first_line}); running the model eagerly",
                          RuntimeWarning, stacklevel=2)
            return out


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _memory_format(model: nn.Module) -> torch.memory_format:
    dims = getattr(model, "spatial_dims", 2)
    return torch.channels_last_3d if dims == 3 else torch.channels_last


def accelerate(model: nn.Module, compile: bool | str = "auto", channels_last: bool | str = "auto") -> nn.Module:
    """Speed ``model`` up for inference, in place; returns it (same class, same state_dict keys).

    Args:
        compile: ``True`` / a ``torch.compile`` mode string (e.g. ``"max-autotune"``) to compile,
            ``False`` not to, ``"auto"`` to compile on CUDA only. A failed compile falls back to eager.
        channels_last: ``True``/``False``; ``"auto"`` = ``True`` (it paid on CPU, and on CUDA tensor cores).
    """
    cuda = _device(model).type == "cuda"
    if channels_last == "auto" or bool(channels_last):
        model.to(memory_format=_memory_format(model))
    want = cuda if compile == "auto" else bool(compile)
    if want and not is_compiled(model):
        mode = compile if isinstance(compile, str) and compile != "auto" else None
        eager = model.forward
        try:
            compiled = torch.compile(eager, mode=mode, dynamic=False)
        except Exception as exc:  # noqa: BLE001 - torch.compile missing or refusing this platform
            warnings.warn(f"torch.compile unavailable ({exc.__class__.__name__}); running eagerly", RuntimeWarning,
                          stacklevel=2)
            return model
        model.forward = _FallbackForward(compiled, eager)  # instance attribute: nn.Module.__call__ uses it
    return model


def inference_layout(model: nn.Module) -> nn.Module:
    """The memory layout loaded models run in, set in place: channels-last for 2D networks (5-14 % faster per
    forward on this CPU at equal weights, docs/benchmarks.md), unchanged for 3D ones (channels-last-3d measured
    no faster: 920-1,064 against 1,012-1,070 ms for an NCSN at 48^3, slower for the U-Net). Returns ``model``."""
    return accelerate(model, compile=False, channels_last=getattr(model, "spatial_dims", 2) == 2)


def is_compiled(model: nn.Module) -> bool:
    """Whether :func:`accelerate` installed a compiled forward that has not fallen back to eager."""
    fwd = model.__dict__.get("forward")
    return isinstance(fwd, _FallbackForward) and not fwd.failed


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16, from ``/proc/cpuinfo``; False where that
    cannot be read; read once per process: ``auto`` asks at every network call). Without them PyTorch emulates bf16
    and it is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


#: smallest image (pixels) that ``auto`` runs in bf16 on CPU: oneDNN's bf16 convolutions of the default prior were
#: 1.5-1.9x faster than fp32 from 128 x 128 up and 1.5x slower below (84 x 104, 112 x 112, 120 x 120, 128 x 96),
#: 2-core AVX512-BF16 EPYC, docs/benchmarks.md
CPU_BF16_MIN_PIXELS = 128 * 128


def resolve_precision(precision: str, device: torch.device | str, model: Any = None,
                      shape: tuple[int, ...] | None = None) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``None`` for fp32.

    ``auto`` is bf16 on CUDA GPUs with bf16, and on CPUs that compute bf16 natively (AVX512-BF16, AMX) for the
    networks medscore has measured in bf16 (``model.bf16_inference``: its 2D NCSN / NCSNv2 score networks, 0.04 dB
    at most from fp32 on the external test slices) on images of ``shape`` (H, W) of at least
    :data:`CPU_BF16_MIN_PIXELS` (where it is faster; None: any size); fp32 for anything else (an analytic score, a
    user's model, an adapted prior, whose gradient steps stay in fp32). ``bf16`` on a CPU without native bf16 warns
    that it will be slower."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32" or (precision == "auto" and not _auto_is_bf16(kind, model, shape)):
        return None
    if kind == "cpu" and not cpu_has_native_bf16():
        warnings.warn("bf16 asked for on a CPU without AVX512-BF16/AMX: PyTorch emulates it, slower than fp32",
                      RuntimeWarning, stacklevel=3)
    return torch.bfloat16


def _auto_is_bf16(kind: str, model: Any, shape: tuple[int, ...] | None) -> bool:
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    big_enough = shape is None or math.prod(int(n) for n in shape[-2:]) >= CPU_BF16_MIN_PIXELS
    return kind == "cpu" and bool(getattr(model, "bf16_inference", False)) and big_enough and cpu_has_native_bf16()


def autocast_score(score: Callable[[Tensor, Tensor], Tensor], precision: str, device: torch.device | str, *,
                   model: Any = None) -> Callable[[Tensor, Tensor], Tensor]:
    """``score`` run under autocast at ``precision`` (:func:`resolve_precision` for ``model``, by default ``score``
    itself, and each call's image size), its output in the input's dtype; ``score`` itself for fp32. Convolutions
    then run in bf16; instance norm++ keeps its statistics in fp32."""
    model = score if model is None else model
    dtype = resolve_precision(precision, device, model)
    if dtype is None:
        return score
    kind = torch.device(device).type
    by_size = precision == "auto" and kind == "cpu"  # auto on CPU: bf16 only where it is faster

    def run(x: Tensor, sigma: Tensor) -> Tensor:
        if by_size and resolve_precision(precision, device, model, tuple(x.shape[-2:])) is None:
            return score(x, sigma)
        with torch.autocast(kind, dtype=dtype):
            out = score(x, sigma)
        return out.to(x.dtype)

    return run


def chunked_score(score: Callable[[Tensor, Tensor], Tensor],
                  rows: int | None) -> Callable[[Tensor, Tensor], Tensor]:
    """``score`` evaluated ``rows`` batch rows at a time (the plain ``score`` for None or a larger batch)."""
    if rows is None:
        return score

    def chunked(x: Tensor, sigma: Tensor) -> Tensor:
        if x.shape[0] <= rows:
            return score(x, sigma)
        return torch.cat([score(x[i:i + rows], sigma[i:i + rows]) for i in range(0, x.shape[0], rows)])

    return chunked


#: pixels per network call on CPU: the convolutions of one call must stay in the caches. Per-image forward time of
#: the default prior on a 2-core AVX512 EPYC (fp32 / bf16, ms): 128 x 128 batch 1 / 2 / 4: 50 / 40 / 45, 29 / 26 / 25;
#: 192 x 176: 73 / 82 / 97, 52 / 50 / 60; 256 x 256: 141 / 185 / 258, 91 / 108 / 96 (docs/benchmarks.md)
CPU_PIXELS_PER_CALL = 2 * 128 * 128


def images_per_call(shape: tuple[int, ...], device: torch.device | str) -> int | None:
    """Images of ``shape`` (H, W) per network call: a cache-sized batch on CPU (at least one), None (the whole
    batch) on a GPU."""
    if torch.device(device).type != "cpu":
        return None
    return max(1, CPU_PIXELS_PER_CALL // math.prod(int(n) for n in shape[-2:]))


def score_inference(model: nn.Module, x: Tensor, sigma: Tensor | float, precision: str = "auto") -> Tensor:
    """``model(x, sigma)`` without autograd at ``precision`` (:func:`resolve_precision`), fp32 output."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    with torch.inference_mode():
        out = autocast_score(model, precision, x.device)(x, sigma)
    return out.float()
