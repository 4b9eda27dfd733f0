"""File-level solvers on scans: retrospective MRI, inpainting and denoising, one streaming pipeline.

Each task is a per-batch ``solve(slices, callback)`` closure handed to :class:`ScanJob`: load ->
robust scale -> batches -> solver -> unscale -> NIfTI with the input's geometry (see
``medscore.reconstruct`` for slicing, sizes and metrics conventions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..validation import check_mask_or_missing, check_positive
from ..physics import SingleCoilMRI
from ..solvers import SamplerOptions, SolverResult, denoise, inpaint, reconstruct_mri
from .inputs import load_mask
from .job import RunReport, ScanJob, batch_options
from .outputs import default_output, plan_outputs
from .volume import Progress

__all__ = ["reconstruct_file", "inpaint_file", "denoise_file"]

BatchSize = int | str


def reconstruct_file(scan: str | Path, mask: str | Path | np.ndarray, *, model=None, out: str | Path | None = None,
                     opts: SamplerOptions | None = None, axis: int = 2, batch_size: BatchSize = 4, device: str = "auto",
                     progress: Progress | None = None, series_uid: str | None = None) -> RunReport:
    """Retrospective accelerated MRI: undersample each slice's k-space with ``mask`` and reconstruct.

    Writes ``OUT`` (medscore), ``OUT_zerofilled``, ``OUT_std`` (with several samples) and a PNG panel
    zero-filled | medscore | reference | |error| | std of the middle slice. ``batch_size``: slices per
    solver call, or ``"auto"`` (from free memory). ``series_uid`` picks one series of a DICOM folder.
    """
    job = ScanJob(scan, model, device, axis, series_uid)
    m = torch.from_numpy(load_mask(mask, job.shape)).to(job.device)
    op = SingleCoilMRI(m, real_input=True)
    opts = opts or SamplerOptions()
    plan = plan_outputs(default_output(scan, out, "medscore"), scan, mask)
    zero = np.empty_like(job.ref)

    def solve(sl: slice, cb) -> SolverResult:
        y = op.A(job.batch(sl))
        zero[sl] = op.zero_filled_magnitude(y)[:, 0].cpu().numpy()  # |F^H M y|, the usual baseline
        return reconstruct_mri(job.prior.model, y, m, batch_options(opts, sl), real_image=True, callback=cb)

    res = job.run(solve, batch_size, progress, chains=opts.n_samples("mri"))
    report = RunReport("mri", nfe=res.nfe, seconds=res.seconds, slices=len(job.ref))
    job.score(report, {"zero-filled": zero, "medscore": res.mean})
    job.write(report, plan, res, {"zerofilled": zero},
              [("zero-filled", zero), ("medscore", res.mean), ("reference", job.ref),
               ("|error| x5", np.abs(res.mean - job.ref))])
    return report


def _inpaint_masks(job: ScanJob, mask, missing: float | None, mask_seed: int) -> np.ndarray:
    """(N, H, W) masks: one file mask for every slice, or a random ``missing`` fraction per slice."""
    shape = job.shape
    if mask is None:
        if missing is None or not 0 < missing < 1:
            raise InputError("inpainting needs --mask HOLES.npy or --missing FRACTION in (0, 1)")
        rng = np.random.default_rng(mask_seed)
        return (rng.random((len(job.ref), *shape)) >= missing).astype(np.float32)
    return np.broadcast_to(load_mask(mask, shape), (len(job.ref), *shape))


def inpaint_file(scan: str | Path, mask: str | Path | np.ndarray | None = None, *, missing: float | None = None,
                 mask_seed: int = 0, model=None, out: str | Path | None = None, opts: SamplerOptions | None = None,
                 axis: int = 2, batch_size: BatchSize = 4, device: str = "auto", progress: Progress | None = None,
                 series_uid: str | None = None) -> RunReport:
    """Fill pixels where ``mask`` is 0 (1 = known), or a random ``missing`` fraction of pixels per slice."""
    check_mask_or_missing(mask, missing, mask_name="mask", missing_name="missing")
    job = ScanJob(scan, model, device, axis, series_uid)
    masks = _inpaint_masks(job, mask, missing, mask_seed)
    opts = opts or SamplerOptions()
    plan = plan_outputs(default_output(scan, out, "inpainted"), scan, mask)

    def solve(sl: slice, cb) -> SolverResult:
        mk = torch.from_numpy(np.ascontiguousarray(masks[sl])[:, None]).to(job.device)
        return inpaint(job.prior.model, job.batch(sl) * mk, mk, batch_options(opts, sl), callback=cb)

    res = job.run(solve, batch_size, progress, chains=opts.n_samples("inpaint"))
    masked = job.ref * masks
    report = RunReport("inpaint", nfe=res.nfe, seconds=res.seconds, slices=len(job.ref))
    job.score(report, {"input": masked, "medscore": res.mean})
    job.write(report, plan, res, {"masked": masked},
              [("input", masked), ("medscore", res.mean), ("reference", job.ref), ("|error| x5", np.abs(res.mean - job.ref))])
    return report


def _noisy_input(job: ScanJob, noise_std: float | None, add_noise: float | None, noise_seed: int) -> tuple[np.ndarray, float]:
    """The noisy stack (simulated with ``add_noise``, else the scan) and the noise std on the [0, 1] scale."""
    from ..physics import estimate_noise_std

    if add_noise is not None:
        if add_noise <= 0:
            raise InputError(f"--add-noise must be > 0, got {add_noise}")
        rng = np.random.default_rng(noise_seed)
        noisy = (job.ref + add_noise * rng.standard_normal(job.ref.shape)).astype(np.float32)
        sigma = float(add_noise if noise_std is None else noise_std)
    else:
        noisy = job.ref
        sigma = float(noise_std) if noise_std is not None else estimate_noise_std(noisy[:, None])
    if not np.isfinite(sigma):  # scikit-image's estimate is NaN on some scans (e.g. flat, noise-free slices)
        raise InputError("the noise std could not be estimated from the scan (NaN): pass --noise-std")
    if sigma <= 0:
        raise InputError(f"noise std must be > 0, got {sigma}")
    return noisy, sigma


def denoise_file(scan: str | Path, *, noise_std: float | None = None, add_noise: float | None = None, noise_seed: int = 0,
                 method: str = "tweedie", model=None, out: str | Path | None = None, opts: SamplerOptions | None = None,
                 axis: int = 2, batch_size: BatchSize = 4, device: str = "auto", progress: Progress | None = None,
                 series_uid: str | None = None) -> RunReport:
    """Denoise a scan. ``add_noise`` simulates Gaussian noise of that std (on the [0, 1] scale: a fraction of the
    scan's 99.5th-percentile intensity) and scores against the clean input; otherwise the scan is the noisy
    input, ``noise_std`` is given on the same scale or estimated (scikit-image ``estimate_sigma``)."""
    for name, value in (("noise_std", noise_std), ("add_noise", add_noise)):
        if value is not None:
            check_positive(name, value)
    job = ScanJob(scan, model, device, axis, series_uid)
    opts = opts or SamplerOptions()
    noisy, sigma = _noisy_input(job, noise_std, add_noise, noise_seed)
    plan = plan_outputs(default_output(scan, out, "denoised"), scan)

    def solve(sl: slice, cb) -> SolverResult:
        y = torch.from_numpy(noisy[sl][:, None]).to(job.device)
        return denoise(job.prior.model, y, sigma, batch_options(opts, sl), method=method, callback=cb)  # type: ignore[arg-type]

    chains = opts.n_samples("denoise") if method != "tweedie" else 1  # tweedie: one network call per flip, one batch wide
    res = job.run(solve, batch_size, progress, chains=chains)
    report = RunReport("denoise", nfe=res.nfe, seconds=res.seconds, slices=len(job.ref))
    simulated = add_noise is not None
    if simulated:
        job.score(report, {"input": noisy, "medscore": res.mean})
    panel = [("input", noisy), ("medscore", res.mean)]
    if simulated:
        panel += [("reference", job.ref), ("|error| x5", np.abs(res.mean - job.ref))]
    job.write(report, plan, res, {"noisy": noisy} if simulated else {}, panel)
    return report
