"""Opt-in speed-ups for a score network at inference: channels-last memory, ``torch.compile``, bf16 on CUDA.

Measured on a shared 2-core AVX2 CPU (``scripts/bench_forward.py``, 1 thread): channels-last makes the
fused forward ~5-15% faster (oneDNN convs and pooling gain more than the norms' reductions lose), so
``"auto"`` uses it everywhere; ``torch.compile`` took ~9 minutes to compile the network and was not
faster afterwards, so ``"auto"`` compiles on CUDA only.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["accelerate", "inference_layout", "is_compiled", "score_inference"]


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


def score_inference(model: nn.Module, x: Tensor, sigma: Tensor | float, amp: bool | str = "auto") -> Tensor:
    """``model(x, sigma)`` without autograd; bf16 autocast on CUDA (``amp="auto"``), fp32 output.

    bf16 is never used on CPU: there it is slower than fp32 on CPUs without AMX/AVX-512-BF16, and the
    score's 1/sigma scaling at small sigma needs fp32's precision anyway.
    """
    use_amp = x.device.type == "cuda" and (amp is True or (amp == "auto" and torch.cuda.is_bf16_supported()))
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    with torch.inference_mode(), ctx:
        out = model(x, sigma)
    return out.float()
