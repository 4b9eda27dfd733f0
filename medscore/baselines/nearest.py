"""No-learning honesty check: the training slice whose measurements best match ``y``.

If a learned prior does not clearly beat "copy the closest training slice and keep the measured
data", it has memorised the training set rather than learned a prior.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["nearest_training_slice"]


@torch.no_grad()
def nearest_training_slice(
    measurement_fn: Callable[[Tensor], Tensor],
    y: Tensor,
    training_slices: Tensor,
    keep_measured: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    chunk: int = 64,
    return_index: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Pick ``x_t = argmin_t ||measurement_fn(x_t) - y||`` per measurement, then keep the data.

    - ``measurement_fn``: batched forward model, e.g. ``op.A`` ((N, C, H, W) -> (N, ...)).
    - ``y``: measurements (B, ...) (or one unbatched measurement), real or complex.
    - ``training_slices``: (N, C, H, W) or (N, H, W) stack; measured ``chunk`` slices at a time.
    - ``keep_measured(x, y) -> x``: data-keeping step, e.g. ``op.project`` for MRI (replace the
      measured k-space) or inpainting (keep known pixels); ``None`` for denoising (the slice itself).

    Returns the (B, C, H, W) estimate, and the chosen (B,) indices if ``return_index``.
    """
    stack = training_slices.unsqueeze(1) if training_slices.dim() == 3 else training_slices
    if stack.dim() != 4 or stack.shape[0] == 0:
        raise ValueError(f"training_slices must be a non-empty (N, C, H, W) or (N, H, W) stack, got {stack.shape}")
    first = measurement_fn(stack[:1])
    if y.dim() == first.dim() - 1:
        y = y.unsqueeze(0)
    if y.shape[1:] != first.shape[1:]:
        raise ValueError(f"measurement shape {tuple(first.shape[1:])} does not match y {tuple(y.shape[1:])}")
    # double precision: near-duplicate (adjacent) slices must not be reordered by cancellation
    wide = torch.complex128 if (y.is_complex() or first.is_complex()) else torch.float64
    y_flat = y.flatten(1).to(wide)
    dists = []
    for start in range(0, stack.shape[0], chunk):
        m = measurement_fn(stack[start : start + chunk].to(y.device)).flatten(1).to(wide)
        # (B, n) squared distances without materialising a (B, n, D) difference tensor
        cross = (y_flat.conj() @ m.transpose(0, 1)).real if m.is_complex() else y_flat @ m.transpose(0, 1)
        d = m.abs().pow(2).sum(1)[None, :] - 2.0 * cross + y_flat.abs().pow(2).sum(1)[:, None]
        dists.append(d)
    index = torch.cat(dists, dim=1).argmin(dim=1)
    x = stack[index.to(stack.device)].to(y.device)
    if keep_measured is not None:
        x = keep_measured(x, y)
    return (x, index) if return_index else x
