"""Fused kernels of the score networks, written with plain PyTorch ops (no custom C++).

MONAI has neither instance norm++ nor a fast stride-1 max-pool, so both are here. Each function works
for any number of spatial dimensions (2D and 3D networks share them).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["instance_norm_plus", "max_pool_same"]


def _per_channel(p: Tensor, spatial: int) -> Tensor:
    """(C,) or (B, C) -> broadcastable against (B, C, *spatial)."""
    return p.reshape(*p.shape, *([1] * spatial))


def instance_norm_plus(x: Tensor, gamma: Tensor, alpha: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """``gamma * (IN(x) + alpha * (mu - mean_c(mu)) / std_c(mu)) + beta`` in two reductions and two passes.

    ``gamma``, ``alpha``, ``beta`` are (C,) or (B, C). Everything except the centring is folded into one
    per-(B, C) scale and shift. The statistics are taken in two passes (mean, then the norm of the
    centred tensor) rather than with ``torch.var_mean``: on CPU the latter is ~10x slower than
    ``mean`` + ``vector_norm``, and the centred tensor is needed anyway.
    """
    if x.dtype in (torch.float16, torch.bfloat16):  # statistics in fp32 (autocast keeps x in half)
        if not _needs_grad(x, gamma, alpha, beta):
            return _instance_norm_plus_half(x, gamma, alpha, beta, eps)
        return instance_norm_plus(x.float(), gamma.float(), alpha.float(), beta.float(), eps).to(x.dtype)
    nsp = x.ndim - 2
    dims = tuple(range(2, x.ndim))
    n = x[0, 0].numel()
    mu = x.mean(dim=dims, keepdim=True)  # (B, C, 1, ...)
    h = x - mu
    if h.is_contiguous():
        var = torch.linalg.vector_norm(h, dim=dims, keepdim=True).square() / n  # biased, as instance_norm
    else:  # channels-last: vector_norm over non-innermost dims is ~10x slower than mean on CPU
        var = (h * h).mean(dim=dims, keepdim=True)
    # the "++" term: the channel means, standardised across channels (biased variance, as before)
    means = mu.flatten(1)
    v, m = torch.var_mean(means, dim=1, keepdim=True, unbiased=False)
    means = (means - m) * torch.rsqrt(v + eps)
    g = _per_channel(gamma, nsp)
    scale = g * torch.rsqrt(var + eps)
    shift = g * _per_channel(alpha * means, nsp) + _per_channel(beta, nsp)
    if _needs_grad(h, scale, shift):
        return h * scale + shift  # out-of-place: autograd needs h
    return h.mul_(scale).add_(shift)  # h is ours: reuse it (measured faster than torch.addcmul on CPU)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _instance_norm_plus_half(x: Tensor, gamma: Tensor, alpha: Tensor, beta: Tensor, eps: float) -> Tensor:
    """Inference instance norm++ of a bf16/fp16 ``x``, kept in its dtype, with fp32 statistics and affine.

    ATen's group norm with one group per channel is instance norm in one fused kernel, with fp32 statistics and
    fp32 affine parameters on half inputs, and any memory layout. It is several times faster here than upcasting
    the tensor for the fp32 formula (channels-last bf16 at 128-256 px; docs/benchmarks.md), and gives the channel
    means ~10x faster than ``Tensor.mean`` over the spatial dims of a channels-last tensor. Its channels-last kernel
    takes the variance in one pass (E[x^2] - E[x]^2), which cancels catastrophically once a channel's mean is ~30x
    its spread, so the normalising call sees ``x`` centred on its channel means. The per-image affine parameters
    go into that call (one call per image) rather than a bf16 multiply-add after it, whose per-channel rounding of
    ``gamma`` would be a systematic error.
    """
    b, c = x.shape[:2]
    n = x[0, 0].numel()
    unit = torch.ones(c, dtype=torch.float32, device=x.device)
    mu = torch.native_group_norm(x, unit, torch.zeros_like(unit), b, c, n, c, eps)[1].view(b, c)  # fp32 means
    h = x - mu.to(x.dtype).view((b, c) + (1,) * (x.ndim - 2))
    v, m = torch.var_mean(mu, dim=1, keepdim=True, unbiased=False)
    g = gamma.float().expand(b, c)
    shift = g * alpha.float() * ((mu - m) * torch.rsqrt(v + eps)) + beta.float()
    out = [torch.native_group_norm(h[i:i + 1], g[i], shift[i], 1, c, n, c, eps)[0] for i in range(b)]
    return out[0] if b == 1 else torch.cat(out)


def max_pool_same(x: Tensor, kernel: int = 5) -> Tensor:
    """Stride-1 max-pool with ``kernel // 2`` implicit -inf padding over every spatial dim; exactly
    ``F.max_pool{2,3}d(x, kernel, 1, kernel // 2)``.

    Separable (one 1D pass per spatial dim, as max over a box = max over rows of max over columns), each
    pass a few ``torch.maximum`` of shifted views: on CPU that is ~15x faster than ATen's 5x5
    ``max_pool2d`` on NCHW tensors, which also computes argmax indices we never use.
    """
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError(f"kernel must be odd and positive, got {kernel}")
    r = kernel // 2
    for dim in range(2, x.ndim):
        if r == 0:
            break
        n = x.shape[dim]
        x = _window_max(_pad_neg_inf(x, dim, r), dim, n, kernel)
    return x


def _pad_neg_inf(x: Tensor, dim: int, r: int) -> Tensor:
    """``x`` with ``r`` -inf entries on both ends of ``dim``; only the borders are filled (``F.pad``
    fills the whole tensor first, one more full pass)."""
    shape = list(x.shape)
    shape[dim] += 2 * r
    p = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    n = x.shape[dim]
    p.narrow(dim, 0, r).fill_(float("-inf"))
    p.narrow(dim, n + r, r).fill_(float("-inf"))
    p.narrow(dim, r, n).copy_(x)
    return p


def _memory_format(x: Tensor) -> torch.memory_format:
    """Channels-last(-3d) when ``x`` is laid out that way (and not also plainly contiguous)."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.ndim == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _window_max(p: Tensor, dim: int, n: int, kernel: int) -> Tensor:
    """Max over ``kernel`` consecutive entries along ``dim`` of padded ``p`` (length n + kernel - 1),
    by doubling window widths (log2(kernel) + 1 maxima instead of kernel - 1)."""
    width, w = 1, p
    while 2 * width <= kernel:
        length = w.shape[dim] - width
        w = torch.maximum(w.narrow(dim, 0, length), w.narrow(dim, width, length))
        width *= 2
    if width == kernel:
        return w.narrow(dim, 0, n)
    # cover [i, i + kernel) with two overlapping windows of the current width
    return torch.maximum(w.narrow(dim, 0, n), w.narrow(dim, kernel - width, n))
