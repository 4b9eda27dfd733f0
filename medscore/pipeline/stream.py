"""Streaming engine: a volume's slices solved batch by batch into preallocated (N, H, W) arrays.

Memory is bounded by one batch (the solver's chains) plus the output arrays; time is linear in the
number of slices. Every batch is checked for NaN/inf before it is stored, so a diverging solver is
refused before anything is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import InputError, MedscoreError
from ..solvers import SamplerOptions, SolverResult

__all__ = ["Progress", "BatchSolver", "Streamed", "stream", "first_channel", "channel_magnitude", "slices_of",
           "volume_of",
           "slice_seed", "batch_options"]

Progress = Callable[[float, int], None]
"""``progress(slices_done, total_slices)``; ``slices_done`` is fractional inside a batch."""
LevelCallback = Callable[[int, int], None]
BatchSolver = Callable[[slice, "LevelCallback | None"], SolverResult]
"""``solve(slices, level_callback)`` -> the solver's result for the slices ``slices`` of the volume."""


@dataclass
class Streamed:
    """Per-slice estimates of a whole volume on the model's scale: mean and std (N, H, W) float32."""

    mean: np.ndarray
    std: np.ndarray | None
    nfe: int
    seconds: float


def slice_seed(seed: int, index: int) -> int:
    """A generator seed for slice ``index`` of a run seeded with ``seed`` (independent of batching)."""
    return int(np.random.SeedSequence([seed % 2**64, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def batch_options(opts: SamplerOptions, sl: slice) -> SamplerOptions:
    """``opts`` for the slices ``sl``: with per-slice seeds when the solver supports them
    (``SamplerOptions.slice_seeds``), so a slice's result does not depend on its batch."""
    if "slice_seeds" not in {f.name for f in dataclasses.fields(opts)}:
        return opts
    return dataclasses.replace(opts, slice_seeds=tuple(slice_seed(opts.seed, i) for i in range(sl.start, sl.stop)))


def first_channel(t: torch.Tensor) -> np.ndarray:
    """(B, 1, H, W) real result -> (B, H, W) float32."""
    return t[:, 0].float().cpu().numpy()


def channel_magnitude(t: torch.Tensor) -> np.ndarray:
    """(B, 2, H, W) complex result (real, imag) -> its magnitude (B, H, W)."""
    return torch.linalg.vector_norm(t, dim=1).cpu().numpy()


def slices_of(data: np.ndarray, axis: int) -> np.ndarray:
    """(N, H, W) stack of a 2D or 3D array's slices along ``axis`` (a view, no copy)."""
    if data.ndim == 2:
        return data[None]
    if axis not in (0, 1, 2, -1):
        raise InputError(f"--axis must be 0, 1 or 2, got {axis}")
    return np.moveaxis(data, axis, 0)


def volume_of(stack: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`slices_of`."""
    return stack[0] if len(shape) == 2 else np.moveaxis(stack, 0, axis)


def check_finite(arr: np.ndarray, sl: slice, what: str) -> None:
    """Refuse NaN/inf in the result for slices ``sl`` (a MedscoreError naming the step and slices)."""
    if not np.isfinite(arr).all():
        bad = sl.start + int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(1))[0])
        raise MedscoreError(f"the solver produced NaN/inf values in the {what} of slice {bad} "
                            f"(slices {sl.start}-{sl.stop - 1}); nothing was written: try another --preset, "
                            "a smaller --step-multiplier or a larger --sigma-start")


def _level_progress(progress: Progress | None, sl: slice, n: int) -> LevelCallback | None:
    if progress is None:
        return None
    size = sl.stop - sl.start

    def on_level(i: int, total: int) -> None:
        progress(sl.start + size * (i + 1) / max(total, 1), n)

    return on_level


def stream(n: int, shape: tuple[int, int], solve: BatchSolver, batch_size: int, progress: Progress | None = None,
           reduce: Callable[[torch.Tensor], np.ndarray] = first_channel) -> Streamed:
    """Solve slices ``0..n-1`` in batches of ``batch_size`` and fill (N, H, W) float32 outputs.

    ``reduce`` maps a result tensor (B, C, H, W) to (B, H, W). NFE is per slice (all samples); seconds
    are summed. ``progress`` gets slices done (fractional within a batch) after each level and batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    mean = np.empty((n, *shape), dtype=np.float32)
    std: np.ndarray | None = None
    nfe, secs = 0, 0.0
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        res = solve(sl, _level_progress(progress, sl, n))
        mean[sl] = _checked(reduce(res.mean), sl, "estimate")
        if res.std is not None:
            if std is None:
                std = np.zeros((n, *shape), dtype=np.float32)
            std[sl] = _checked(reduce(res.std), sl, "std")
        nfe, secs = res.total_nfe, secs + res.seconds
        if progress is not None:
            progress(float(sl.stop), n)
    return Streamed(mean, std, nfe, secs)


def _checked(arr: np.ndarray, sl: slice, what: str) -> np.ndarray:
    check_finite(arr, sl, what)
    return arr
