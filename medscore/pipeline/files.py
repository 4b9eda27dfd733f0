"""File-level solvers on scans: any registered task through one streaming pipeline.

:func:`solve_scan` is the pipeline: load -> robust scale -> the task measures the slices
(``Task.prepare_stack``) -> batches -> solver -> unscale -> NIfTI with the input's geometry (see
``medscore.reconstruct`` for slicing, sizes and metrics conventions). ``reconstruct_file``,
``inpaint_file`` and ``denoise_file`` are its MRI, inpainting and denoising front doors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..solvers import SamplerOptions
from ..tasks import StackSolve, Task, get_task
from .job import RunReport, ScanJob, batch_options
from .outputs import OutputPlan, default_output, plan_outputs
from .volume import Progress, Streamed

__all__ = ["solve_scan", "reconstruct_file", "inpaint_file", "denoise_file"]

BatchSize = int | str


def solve_scan(task: Task | str, scan: str | Path, *, model: Any = None, out: str | Path | None = None,
               opts: SamplerOptions | None = None, axis: int = 2, batch_size: BatchSize = 4, device: str = "auto",
               progress: Progress | None = None, series_uid: str | None = None, **inputs: Any) -> RunReport:
    """Solve ``task`` on every slice of a scan with the task's ``inputs`` (its ``prepare_stack`` keywords).

    Writes ``OUT`` (medscore; default ``<scan>_<task.output_suffix>.nii.gz``), ``OUT_<baseline>`` and
    metrics when the measurements were simulated from the scan, ``OUT_std`` (several samples) and a
    PNG panel of the middle slice. ``batch_size``: slices per solver call, or ``"auto"`` (from free
    memory). ``series_uid`` picks one series of a DICOM folder.
    """
    task = get_task(task) if isinstance(task, str) else task
    task.check_inputs(**inputs)
    job = ScanJob(scan, model, device, axis, series_uid)
    opts = opts or SamplerOptions()
    stack = task.prepare_stack(job.ref, job.device, opts, **inputs)
    plan = plan_outputs(default_output(scan, out, task.output_suffix), scan, *stack.input_files)
    res = job.run(lambda sl, cb: stack.solve(job.prior.model, sl, batch_options(opts, sl), cb), batch_size, progress,
                  chains=stack.chains)
    return _write(job, task, plan, res, stack)


def _write(job: ScanJob, task: Task, plan: OutputPlan, res: Streamed, stack: StackSolve) -> RunReport:
    """Metrics (simulated measurements only), then the estimate, the baseline, the std and the panel."""
    report = RunReport(task.name, nfe=res.nfe, seconds=res.seconds, slices=len(job.ref))
    panel = [(task.baseline_title, stack.baseline), ("medscore", res.mean)]
    extras: dict[str, np.ndarray] = {}
    if stack.simulated:
        job.score(report, {task.baseline_title: stack.baseline, "medscore": res.mean})
        panel += [("reference", job.ref), ("|error| x5", np.abs(res.mean - job.ref))]
        extras[task.baseline_output] = stack.baseline
    job.write(report, plan, res, extras, panel)
    return report


def reconstruct_file(scan: str | Path, mask: str | Path | np.ndarray, *, model=None, out: str | Path | None = None,
                     opts: SamplerOptions | None = None, axis: int = 2, batch_size: BatchSize = 4, device: str = "auto",
                     progress: Progress | None = None, series_uid: str | None = None) -> RunReport:
    """Retrospective accelerated MRI: undersample each slice's k-space with ``mask`` and reconstruct.

    Writes ``OUT`` (medscore), ``OUT_zerofilled``, ``OUT_std`` (with several samples) and a PNG panel
    zero-filled | medscore | reference | |error| | std of the middle slice. ``batch_size``: slices per
    solver call, or ``"auto"`` (from free memory). ``series_uid`` picks one series of a DICOM folder.
    """
    return solve_scan("mri", scan, model=model, out=out, opts=opts, axis=axis, batch_size=batch_size, device=device,
                      progress=progress, series_uid=series_uid, mask=mask)


def inpaint_file(scan: str | Path, mask: str | Path | np.ndarray | None = None, *, missing: float | None = None,
                 mask_seed: int = 0, model=None, out: str | Path | None = None, opts: SamplerOptions | None = None,
                 axis: int = 2, batch_size: BatchSize = 4, device: str = "auto", progress: Progress | None = None,
                 series_uid: str | None = None) -> RunReport:
    """Fill pixels where ``mask`` is 0 (1 = known), or a random ``missing`` fraction of pixels per slice."""
    return solve_scan("inpaint", scan, model=model, out=out, opts=opts, axis=axis, batch_size=batch_size,
                      device=device, progress=progress, series_uid=series_uid, mask=mask, missing=missing,
                      mask_seed=mask_seed)


def denoise_file(scan: str | Path, *, noise_std: float | None = None, add_noise: float | None = None, noise_seed: int = 0,
                 method: str = "tweedie", model=None, out: str | Path | None = None, opts: SamplerOptions | None = None,
                 axis: int = 2, batch_size: BatchSize = 4, device: str = "auto", progress: Progress | None = None,
                 series_uid: str | None = None) -> RunReport:
    """Denoise a scan. ``add_noise`` simulates Gaussian noise of that std (on the [0, 1] scale: a fraction of the
    scan's 99.5th-percentile intensity) and scores against the clean input; otherwise the scan is the noisy
    input, ``noise_std`` is given on the same scale or estimated (scikit-image ``estimate_sigma``)."""
    return solve_scan("denoise", scan, model=model, out=out, opts=opts, axis=axis, batch_size=batch_size,
                      device=device, progress=progress, series_uid=series_uid, noise_std=noise_std,
                      add_noise=add_noise, noise_seed=noise_seed, method=method)
