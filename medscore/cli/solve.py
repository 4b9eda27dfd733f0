"""``medscore reconstruct | inpaint | denoise | sample``: the API's file functions behind one set of options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import console, handle_errors, preflight, print_report, slice_progress
from .options import (AdaptOpt, AxisOpt, BatchOpt, DeviceOpt, ModelOpt, OutOpt, SaveAdaptedOpt, SeriesOpt,
                      VolumeOpt, solver_command)

ScanArg = Annotated[list[Path], typer.Argument(help="NIfTI, DICOM series folder or .npy image; several, or a folder of "
                                                    "scans, run one after the other (shared out under torchrun) into "
                                                    "the folder -o")]


@contextlib.contextmanager
def _progress(description: str) -> Iterator:
    """Like ``slice_progress``, but the bar only appears once the first level is done: an input error
    found while loading (scan, mask, model, output path) then prints its one line and nothing else."""
    with contextlib.ExitStack() as stack:
        bar: list[Any] = []

        def update(done: int, total: int) -> None:
            if not bar:
                bar.append(stack.enter_context(slice_progress(description)))
            bar[0](done, total)

        yield update


def _dispatch(task_name: str, scans: list[Path], out: Path | None, axis: int, batch_size: str,
              run: dict[str, Any], *, kspace: bool = False) -> None:
    """One scan through its front door (``run``: the front door's keywords), or several (or a folder of scans)
    through :func:`medscore.api.solve_many` into the folder ``out``."""
    from ..api import solve_many
    from ..errors import InputError
    from ..pipeline.many import FRONT_DOORS, RUNS_FILE, folder_of_scans, rank_and_world

    if len(scans) == 1 and not folder_of_scans(scans[0]) and rank_and_world()[1] == 1:  # under torchrun: shared
        _solve(task_name, scans[0], out, axis, batch_size,
               lambda progress: FRONT_DOORS[task_name](scans[0], progress=progress, **run), kspace=kspace)
        return
    if out is None:
        raise InputError("several scans need -o/--out FOLDER for their outputs")
    with _progress(get_task_label(task_name)) as progress:
        reports = solve_many(task_name, scans, out, progress=progress,
                             on_scan=lambda i, n, scan: console.print(f"scan {i + 1} of {n} (this process): {scan}"),
                             **{k: v for k, v in run.items() if k != "out"})
    for r in reports:
        console.print(f"{r['scan']} -> {r['output']} ({r['slices']} slice(s), {r['seconds']:.1f} s)")
    console.print(f"report: {Path(out) / RUNS_FILE}")


def get_task_label(task_name: str) -> str:
    from ..tasks import get_task

    return get_task(task_name).progress_label


def _solve(task_name: str, scan: Path, out: Path | None, axis: int, batch_size: str, run: Any, *,
           kspace: bool = False) -> None:
    """Pre-flight checks, then ``run(progress)`` under a progress bar, then the report."""
    from ..tasks import get_task

    task = get_task(task_name)
    preflight(scan, out, task.output_suffix, axis=axis, batch_size=batch_size, kspace=kspace)
    with _progress(task.progress_label) as progress:
        report = run(progress)
    print_report(report)


@solver_command()
def reconstruct_command(
    scan: Annotated[list[Path], typer.Argument(help="NIfTI, DICOM series folder or .npy image; or complex k-space "
                                                    "(.npy, fastMRI .h5); several, or a folder of scans, into the "
                                                    "folder -o (shared out under torchrun)")],
    mask: Annotated[Optional[Path], typer.Option(help="0/1 k-space mask .npy, (W,) lines or (H, W); see "
                                                      "`medscore mask`")] = None,
    model: ModelOpt = None, out: OutOpt = None, axis: AxisOpt = 2, batch_size: BatchOpt = "auto",
    device: DeviceOpt = "auto", series: SeriesOpt = None,
    smaps: Annotated[Optional[Path], typer.Option(
        help="multi-coil k-space: coil maps .npy/.h5, (S, C, H, W) or (C, H, W); default: estimated by ESPIRiT "
             "(pip install \"medscore\\[mri]\")")] = None,
    crop: Annotated[Optional[int], typer.Option(
        help="k-space: centre crop of the fastMRI .h5 output, e.g. 320 (320 x 320)")] = None,
    readout_axis: Annotated[Optional[int], typer.Option(
        help="3D Cartesian: the fully sampled readout axis (0-2). k-space: the file is (kx, ky, kz) or (coils, kx, "
             "ky, kz); a scan: undersampled over the other two axes with a (NY, NZ) --mask")] = None,
    adapt: AdaptOpt = False, save_adapted: SaveAdaptedOpt = None, volume: VolumeOpt = False, *, opts: Any = None,
) -> None:
    """Accelerated MRI: undersample each slice's k-space with MASK (retrospective) and reconstruct it; or
    reconstruct measured single- or multi-coil k-space (mask inferred, coil maps estimated, unless given)."""
    with handle_errors():
        from ..io.arrays import is_kspace_file

        kspace = is_kspace_file(scan[0])
        slice_axis = axis if readout_axis is None or kspace else readout_axis
        _dispatch("mri", scan, out, slice_axis, batch_size, dict(
            mask=mask, smaps=smaps, crop=crop, axis=axis, series_uid=series, model=model, out=out, opts=opts,
            batch_size=batch_size, device=device, adapt=adapt, save_adapted=save_adapted, volume=volume,
            readout_axis=readout_axis), kspace=kspace)


@solver_command()
def inpaint_command(
    scan: ScanArg,
    mask: Annotated[Optional[Path], typer.Option(help="0/1 .npy of shape (H, W): 1 = known pixel, 0 = hole")] = None,
    missing: Annotated[Optional[float], typer.Option(help="instead of --mask: remove this random fraction of "
                                                          "pixels")] = None,
    model: ModelOpt = None, out: OutOpt = None, axis: AxisOpt = 2, batch_size: BatchOpt = "auto",
    device: DeviceOpt = "auto", series: SeriesOpt = None, adapt: AdaptOpt = False, save_adapted: SaveAdaptedOpt = None,
    volume: VolumeOpt = False, *, opts: Any = None,
) -> None:
    """Inpainting: fill the holes of MASK (or a random MISSING fraction) in every slice."""
    with handle_errors():
        from ..checks import check_mask_or_missing

        check_mask_or_missing(mask, missing)
        _dispatch("inpaint", scan, out, axis, batch_size, dict(
            mask=mask, missing=missing, mask_seed=opts.seed, model=model, out=out, opts=opts, axis=axis,
            batch_size=batch_size, device=device, series_uid=series, adapt=adapt, save_adapted=save_adapted,
            volume=volume))


@solver_command(without=("sigma_start",))
def denoise_command(
    scan: ScanArg,
    noise_std: Annotated[Optional[float], typer.Option(help="noise std as a fraction of the scan's 99.5th "
                                                            "percentile; default: estimated")] = None,
    add_noise: Annotated[Optional[float], typer.Option(help="simulate: add Gaussian noise of this std, score "
                                                            "against the input")] = None,
    method: Annotated[str, typer.Option(help="tweedie (one-step MMSE, 8 NFE: averaged over flips and transposes) or "
                                             "sampler (posterior samples from the preset's sampler, started at the "
                                             "noise level; 'langevin' is its old name)")] = "tweedie",
    model: ModelOpt = None, out: OutOpt = None, axis: AxisOpt = 2, batch_size: BatchOpt = "auto",
    device: DeviceOpt = "auto", series: SeriesOpt = None, adapt: AdaptOpt = False,
    save_adapted: SaveAdaptedOpt = None, volume: VolumeOpt = False, *, opts: Any = None,
) -> None:
    """Denoising of a scan (or of a simulated noisy copy with --add-noise)."""
    with handle_errors():
        from ..checks import check_positive
        from ..errors import InputError
        from ..tasks import get_task

        if method not in get_task("denoise").methods:
            raise InputError(f"--method must be tweedie or sampler, got {method!r}")
        for name, value in (("--noise-std", noise_std), ("--add-noise", add_noise)):
            if value is not None:
                check_positive(name, value)
        _dispatch("denoise", scan, out, axis, batch_size, dict(
            noise_std=noise_std, add_noise=add_noise, noise_seed=opts.seed, method=method, model=model,
            out=out, opts=opts, axis=axis, batch_size=batch_size, device=device, series_uid=series, adapt=adapt,
            save_adapted=save_adapted, volume=volume))


@solver_command(without=("samples", "sigma_start"))
def sample_command(
    n: Annotated[int, typer.Option("-n", help="number of samples")] = 16,
    out: Annotated[Path, typer.Option("-o", "--out", help="output PNG grid (a .npy with the arrays is written "
                                                          "beside it)")] = Path("samples.png"),
    size: Annotated[int, typer.Option(help="image size in pixels (square)")] = 64,
    model: ModelOpt = None, device: DeviceOpt = "auto", *, opts: Any = None,
) -> None:
    """Draw unconditional samples from the prior with annealed Langevin dynamics (Algorithm 1)."""
    with handle_errors():
        from ..api import sample_to_files

        with _progress("sampling") as progress:
            paths, nfe = sample_to_files(n, out, size=size, model=model, opts=opts, device=device, progress=progress)
        console.print(f"{n} samples, {nfe} NFE each: {paths[0]} and {paths[1]}")
