"""Benchmark tasks and methods: degrade held-out slices, solve with every method, score.

Every method sees exactly the same degraded inputs (masks and noise drawn from fixed seeds).
Classical parameters are tuned on the validation slab (``embedded.VAL_SLAB``), never on test slices.
``TASKS`` here is the benchmark's table of degradations (data); each names the registered task
(:mod:`medscore.tasks`) that simulates, solves and baselines it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import metrics as M
from ..solvers import SamplerOptions
from ..tasks import Method, MultiCoilSpec, Problem, TaskSpec, get_task

__all__ = ["TaskSpec", "TASKS", "MULTICOIL_TASKS", "Problem", "Method", "degrade", "classical_methods",
           "medscore_method", "MethodResult", "run_method", "training_axial_slices"]

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec("mri-1d-4x", "mri", "MRI 1D random 4x (8 % centre)", accel=4, center=0.08),
    TaskSpec("mri-1d-8x", "mri", "MRI 1D random 8x (4 % centre)", accel=8, center=0.04),
    TaskSpec("mri-2d-poisson-8x", "mri", "MRI 2D Poisson-disc 8x", pattern="poisson", accel=8, center=0.08),
    TaskSpec("mri-1d-4x-noisy", "mri", "MRI 1D random 4x, k-space noise 0.01", accel=4, center=0.08, kspace_noise=0.01),
    TaskSpec("denoise-0.05", "denoise", "denoising sigma 0.05", noise=0.05),
    TaskSpec("denoise-0.1", "denoise", "denoising sigma 0.1", noise=0.1),
    TaskSpec("inpaint-70", "inpaint", "inpainting 70 % random pixels", missing=0.7),
    TaskSpec("inpaint-box", "inpaint", "inpainting central box", box=0.3),
]}

MULTICOIL_TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    MultiCoilSpec("mc-1d-4x", "mri-multicoil", "MC 8 coils, 1D random 4x (8 % centre), k-space noise 0.005",
                  accel=4, center=0.08, kspace_noise=0.005),
    MultiCoilSpec("mc-1d-8x", "mri-multicoil", "MC 8 coils, 1D random 8x (4.8 % centre = 9 lines: 4 % leaves ESPIRiT "
                  "no 8x8 block), k-space noise 0.005", accel=8, center=0.048, kspace_noise=0.005),
    MultiCoilSpec("mc-poisson-vd-8x", "mri-multicoil", "MC 8 coils, 2D variable-density Poisson 8x (8 % centre), "
                  "k-space noise 0.005", pattern="poisson-vd", accel=8, center=0.08, kspace_noise=0.005),
]}
"""Simulated multi-coil acquisitions (phase, birdcage maps, noise std 0.005 on the [0, 1] image scale with the
orthonormal FFT; coil maps by ESPIRiT from the undersampled data). In ``TASKS``, run by name (``--tasks
mc-1d-4x,...``), but not by ``--tasks all``: each costs about two single-coil MRI tasks (complex images)."""
TASKS.update(MULTICOIL_TASKS)


def degrade(spec: TaskSpec, ref: Tensor, seed: int = 0) -> Problem:
    """Simulate the task's measurements of ``ref`` with fixed seeds (same inputs for every method)."""
    return get_task(spec.kind).degrade(spec, ref, seed)


@dataclass
class MethodResult:
    """Per-slice metrics (PSNR, SSIM, NMSE, HFEN), seconds per slice and NFE of one method on one task; ``fastmri``:
    the fastMRI-convention metrics of the stack of slices as one volume (``psnr``, ``ssim``, ``nmse``), when they
    were asked for."""

    psnr: np.ndarray
    ssim: np.ndarray
    nmse: np.ndarray
    seconds_per_slice: float
    nfe: int = 0
    estimate: Tensor | None = field(default=None, repr=False)
    fastmri: dict[str, float] | None = None
    hfen: np.ndarray | None = None


def run_method(fn: Method, prob: Problem, fastmri: bool = False) -> MethodResult:
    """Time ``fn`` on a problem and score its estimate against the reference (medscore's metrics per slice;
    with ``fastmri`` also :data:`medscore.metrics.FASTMRI_METRICS`, the slices forming one volume)."""
    t0 = time.perf_counter()
    est, nfe = fn(prob)
    secs = (time.perf_counter() - t0) / len(prob.ref)
    ref, e = prob.ref[:, 0].numpy(), est[:, 0].float().cpu().numpy()
    volume = {k: f(ref, e) for k, f in M.FASTMRI_METRICS.items()} if fastmri else None
    return MethodResult(np.atleast_1d(M.psnr(ref, e)), np.atleast_1d(M.ssim(ref, e)), np.atleast_1d(M.nmse(ref, e)),
                        secs, nfe, est, volume, np.atleast_1d(M.hfen(ref, e)))


def classical_methods(spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
    """Baselines for a task, parameters tuned on the validation problem ``val`` (not on test slices).

    ``train_slices`` (same size as the test slices) adds the nearest-training-slice honesty check.
    """
    return get_task(spec.kind).classical_methods(spec, val, train_slices)


def medscore_method(spec: TaskSpec, model: Any, opts: SamplerOptions, denoise_method: str = "sampler",
                    batch_size: int = 4) -> Method:
    """medscore on a task with the given sampler options (slices solved in batches). ``denoise_method`` is the
    solver method of tasks that offer several (denoising: tweedie or sampler); the others ignore it."""
    task = get_task(spec.kind)

    def solve(p: Problem) -> tuple[Tensor, int]:
        outs, nfe = [], 0
        for s in range(0, len(p.ref), batch_size):
            res = task.solve_problem(model, p, opts, slice(s, s + batch_size), method=denoise_method)
            outs.append(res.mean.cpu())
            nfe = res.total_nfe  # network evaluations per slice, every chain and pass
        return torch.cat(outs), nfe

    return solve


def training_axial_slices() -> Tensor:
    """Axial T1 training slices of the embedded brain (N, 1, H, W), for the nearest-slice honesty check."""
    from ..io.embedded import GUARD, TEST_SLAB, VAL_SLAB, load_embedded

    vol, _ = load_embedded()
    z = np.arange(vol.shape[-1])
    held = (((z >= TEST_SLAB[0] - GUARD) & (z < TEST_SLAB[1] + GUARD))
            | ((z >= VAL_SLAB[0] - GUARD) & (z < VAL_SLAB[1] + GUARD)))
    t1 = np.moveaxis(vol[0][..., ~held], -1, 0)
    keep = (t1 > 0.1).mean(axis=(1, 2)) >= 0.15
    return torch.from_numpy(np.ascontiguousarray(t1[keep]))[:, None]
