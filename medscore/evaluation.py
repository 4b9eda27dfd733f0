"""Benchmark tasks and methods: degrade held-out slices, solve with every method, score.

Every method sees exactly the same degraded inputs (masks and noise drawn from fixed seeds).
Classical parameters are tuned on the validation slab (``embedded.VAL_SLAB``), never on test slices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from . import metrics as M
from .baselines import (denoise_bm3d, denoise_nlm, denoise_tv, inpaint_biharmonic, nearest_training_slice, tune, tv_cs,
                        wavelet_cs)
from .physics import Inpainting, SingleCoilMRI, make_mask
from .solvers import SamplerOptions, denoise, inpaint, reconstruct_mri

__all__ = ["TaskSpec", "TASKS", "Problem", "degrade", "classical_methods", "medscore_method", "MethodResult", "run_method",
           "training_axial_slices"]


@dataclass(frozen=True)
class TaskSpec:
    """One degradation. ``kind`` is mri, denoise or inpaint."""

    name: str
    kind: str
    label: str
    pattern: str = "random"
    accel: float = 4.0
    center: float = 0.08
    kspace_noise: float = 0.0  # std of complex k-space noise (orthonormal FFT, [0, 1] image scale)
    noise: float = 0.0
    missing: float = 0.0
    box: float = 0.0  # side of a central square hole, as a fraction of the smaller image side


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


@dataclass
class Problem:
    """Degraded observations of ``ref`` (N, 1, H, W) and what each method needs."""

    spec: TaskSpec
    ref: Tensor
    y: Tensor
    baseline: Tensor  # zero-filled / noisy / masked input
    op: Any = None
    mask: Tensor | None = None


def degrade(spec: TaskSpec, ref: Tensor, seed: int = 0) -> Problem:
    """Simulate the task's measurements of ``ref`` with fixed seeds (same inputs for every method)."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = ref.shape
    if spec.kind == "mri":
        m = torch.from_numpy(make_mask(spec.pattern, (h, w), spec.accel, spec.center, seed=seed))
        op = SingleCoilMRI(m, real_input=True)
        y = op.A(ref)
        if spec.kspace_noise > 0:
            noise = torch.complex(torch.randn(y.shape, generator=g), torch.randn(y.shape, generator=g))
            y = y + op._mask_for(y) * noise * (spec.kspace_noise / np.sqrt(2))
        return Problem(spec, ref, y, op.zero_filled_magnitude(y), op, m)
    if spec.kind == "denoise":
        y = ref + spec.noise * torch.randn(ref.shape, generator=g)
        return Problem(spec, ref, y, y)
    if spec.kind == "inpaint":
        if spec.box > 0:
            side = int(round(spec.box * min(h, w)))
            m = torch.ones(h, w)
            m[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side] = 0
            m = m.expand(n, 1, h, w).clone()
        else:
            m = (torch.rand((n, 1, h, w), generator=g) >= spec.missing).float()
        op = Inpainting(m)
        y = op.A(ref)
        return Problem(spec, ref, y, y, op, m)
    raise ValueError(f"unknown task kind {spec.kind!r}")


@dataclass
class MethodResult:
    """Per-slice metrics, seconds per slice and NFE of one method on one task."""

    psnr: np.ndarray
    ssim: np.ndarray
    nmse: np.ndarray
    seconds_per_slice: float
    nfe: int = 0
    estimate: Tensor | None = field(default=None, repr=False)


Method = Callable[[Problem], tuple[Tensor, int]]


def run_method(fn: Method, prob: Problem) -> MethodResult:
    """Time ``fn`` on a problem and score its estimate against the reference."""
    t0 = time.perf_counter()
    est, nfe = fn(prob)
    secs = (time.perf_counter() - t0) / len(prob.ref)
    ref, e = prob.ref[:, 0].numpy(), est[:, 0].float().cpu().numpy()
    return MethodResult(np.atleast_1d(M.psnr(ref, e)), np.atleast_1d(M.ssim(ref, e)), np.atleast_1d(M.nmse(ref, e)),
                        secs, nfe, est)


def _per_image(fn: Callable[..., np.ndarray], prob: Problem, **kw) -> Tensor:
    out = []
    for i in range(len(prob.ref)):
        args = (prob.y[i, 0].numpy(),) if prob.mask is None else (prob.y[i, 0].numpy(), prob.mask[i, 0].numpy())
        out.append(torch.from_numpy(np.asarray(fn(*args, **kw), dtype=np.float32)))
    return torch.stack(out)[:, None]


def classical_methods(spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
    """Baselines for a task, parameters tuned on the validation problem ``val`` (not on test slices).

    ``train_slices`` (same size as the test slices) adds the nearest-training-slice honesty check.
    """
    refs = [r for r in val.ref[:, 0].numpy()]
    methods: dict[str, Method] = {}
    if spec.kind == "mri":
        methods["zero-filled"] = lambda p: (p.baseline, 0)
        lams = [3e-4, 1e-3, 3e-3, 1e-2]
        tv_lam = tune(lambda y, lam: tv_cs(y[None], val.op, lam, n_iter=200)[0, 0].numpy(),
                      [(val.y[i],) for i in range(len(refs))], refs, {"lam": lams})["lam"]
        methods[f"TV-CS (lam {tv_lam:g})"] = lambda p, lam=tv_lam: (tv_cs(p.y, p.op, lam, n_iter=200), 0)
        wl_lam = tune(lambda y, lam: wavelet_cs(y[None], val.op, lam, n_iter=100, wavelet="haar")[0, 0].numpy(),
                      [(val.y[i],) for i in range(len(refs))], refs, {"lam": lams})["lam"]
        methods[f"L1-wavelet CS (haar, lam {wl_lam:g})"] = lambda p, lam=wl_lam: (
            wavelet_cs(p.y, p.op, lam, n_iter=100, wavelet="haar"), 0)
        if train_slices is not None:
            methods["nearest training slice"] = lambda p: (nearest_training_slice(p.op.A, p.y, train_slices, p.op.project), 0)
    elif spec.kind == "denoise":
        sigma = spec.noise
        methods["noisy input"] = lambda p: (p.baseline, 0)
        deg = [val.y[i, 0].numpy() for i in range(len(refs))]
        w = tune(denoise_tv, deg, refs, {"weight": [0.02, 0.04, 0.06, 0.1, 0.15]})["weight"]
        methods[f"TV (weight {w:g})"] = lambda p, w=w: (_per_image(denoise_tv, p, weight=w), 0)
        h = tune(lambda y, h: denoise_nlm(y, sigma, h=h), deg, refs, {"h": [0.6 * sigma, 0.8 * sigma, 1.0 * sigma]})["h"]
        methods["NLM"] = lambda p, h=h: (_per_image(denoise_nlm, p, sigma=sigma, h=h), 0)
        try:
            import bm3d  # noqa: F401  (optional extra)

            methods["BM3D"] = lambda p: (_per_image(denoise_bm3d, p, sigma=sigma), 0)
        except ImportError:
            pass
        if train_slices is not None:
            methods["nearest training slice"] = lambda p: (nearest_training_slice(lambda x: x, p.y, train_slices), 0)
    else:
        methods["masked input"] = lambda p: (p.baseline, 0)
        methods["biharmonic"] = lambda p: (_per_image(inpaint_biharmonic, p), 0)

        def nearest(p: Problem) -> tuple[Tensor, int]:
            out = [nearest_training_slice(lambda x, m=p.mask[i]: x * m, p.y[i:i + 1], train_slices,
                                          lambda x, y, m=p.mask[i]: y + (1 - m) * x) for i in range(len(p.ref))]
            return torch.cat(out), 0

        if train_slices is not None:
            methods["nearest training slice"] = nearest
    return methods


def medscore_method(spec: TaskSpec, model: Any, opts: SamplerOptions, denoise_method: str = "sampler",
                    batch_size: int = 4) -> Method:
    """medscore on a task with the given sampler options (slices solved in batches)."""

    def solve(p: Problem) -> tuple[Tensor, int]:
        outs, nfe = [], 0
        for s in range(0, len(p.ref), batch_size):
            sl = slice(s, s + batch_size)
            if spec.kind == "mri":
                res = reconstruct_mri(model, p.y[sl], p.mask, opts, real_image=True, noise_std=spec.kspace_noise)
            elif spec.kind == "denoise":
                res = denoise(model, p.y[sl], spec.noise, opts, method=denoise_method)  # type: ignore[arg-type]
            else:
                res = inpaint(model, p.y[sl], p.mask[sl], opts)
            outs.append(res.mean.cpu())
            nfe = res.nfe * res.samples  # total network evaluations per slice
        return torch.cat(outs), nfe

    return solve


def training_axial_slices() -> Tensor:
    """Axial T1 training slices of the embedded brain (N, 1, H, W), for the nearest-slice honesty check."""
    from .embedded import GUARD, TEST_SLAB, VAL_SLAB, load_embedded

    vol, _ = load_embedded()
    z = np.arange(vol.shape[-1])
    held = ((z >= TEST_SLAB[0] - GUARD) & (z < TEST_SLAB[1] + GUARD)) | ((z >= VAL_SLAB[0] - GUARD) & (z < VAL_SLAB[1] + GUARD))
    t1 = np.moveaxis(vol[0][..., ~held], -1, 0)
    keep = (t1 > 0.1).mean(axis=(1, 2)) >= 0.15
    return torch.from_numpy(np.ascontiguousarray(t1[keep]))[:, None]
