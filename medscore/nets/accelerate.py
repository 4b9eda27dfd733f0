"""Opt-in speed-ups for a score network at inference: channels-last memory, ``torch.compile``, bf16 autocast.

Measured on a shared 2-core AVX2 CPU (``scripts/bench_forward.py``, 1 thread): channels-last makes the
fused forward ~5-15% faster (oneDNN convs and pooling gain more than the norms' reductions lose), so
``"auto"`` uses it everywhere; ``torch.compile`` took ~9 minutes to compile the network and was not
faster afterwards, so ``"auto"`` compiles on CUDA only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PRECISIONS", "accelerate", "autocast_score", "cpu_has_native_bf16", "inference_layout", "is_compiled",
           "resolve_precision", "score_inference"]

#: ``precision`` choices of the solvers: ``auto`` = bf16 on CUDA GPUs that support it, fp32 elsewhere
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16, from ``/proc/cpuinfo``; False where that
    cannot be read). Without them PyTorch emulates bf16 and it is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``None`` for fp32. ``auto`` is bf16 on CUDA GPUs with
    bf16 and fp32 on CPU (bf16 there changes PSNR by a few hundredths of a dB, docs/benchmarks.md, so it is asked
    for, not implied). ``bf16`` on a CPU without native bf16 warns that it will be slower."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32" or (precision == "auto" and not (kind == "cuda" and torch.cuda.is_bf16_supported())):
        return None
    if kind == "cpu" and not cpu_has_native_bf16():
        warnings.warn("bf16 asked for on a CPU without AVX512-BF16/AMX: PyTorch emulates it, slower than fp32",
                      RuntimeWarning, stacklevel=3)
    return torch.bfloat16


def autocast_score(score: Callable[[Tensor, Tensor], Tensor], precision: str,
                   device: torch.device | str) -> Callable[[Tensor, Tensor], Tensor]:
    """``score`` run under autocast at ``precision`` (:func:`resolve_precision`), its output in the input's dtype;
    ``score`` itself for fp32. Convolutions then run in bf16; instance norm++ keeps its statistics in fp32."""
    dtype = resolve_precision(precision, device)
    if dtype is None:
        return score
    kind = torch.device(device).type

    def run(x: Tensor, sigma: Tensor) -> Tensor:
        with torch.autocast(kind, dtype=dtype):
            out = score(x, sigma)
        return out.to(x.dtype)

    return run


def score_inference(model: nn.Module, x: Tensor, sigma: Tensor | float, precision: str = "auto") -> Tensor:
    """``model(x, sigma)`` without autograd at ``precision`` (:func:`resolve_precision`), fp32 output."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    with torch.inference_mode():
        out = autocast_score(model, precision, x.device)(x, sigma)
    return out.float()
