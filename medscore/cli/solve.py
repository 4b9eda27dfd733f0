"""``medscore reconstruct | inpaint | denoise | sample``: the solvers on scan files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import contextlib
from collections.abc import Iterator

from ._common import console, handle_errors, preflight, print_report, series_option, slice_progress

ModelOpt = Annotated[Optional[Path], typer.Option(help="training output folder or its model.safetensors; default: the bundled prior")]
OutOpt = Annotated[Optional[Path], typer.Option("-o", "--out", help="output NIfTI (default: next to the input)")]
SamplesOpt = Annotated[Optional[int], typer.Option(help="posterior samples averaged into the estimate (std written when > 1); default: the preset's")]
PresetOpt = Annotated[str, typer.Option(help="sampler preset: fast (<= 20 NFE), default (<= 50), best; ald, ald-fast, "
                                              "ald-best = the first release's annealed Langevin; a model's own table may add more")]
SamplerOpt = Annotated[Optional[str], typer.Option(help="override the preset's sampler: pnp, ddim, pc or ald")]
EtaOpt = Annotated[Optional[float], typer.Option(help="ddim: share of fresh noise per step, 0 (deterministic) to 1")]
SnrOpt = Annotated[Optional[float], typer.Option(help="pc: signal-to-noise ratio of the Langevin corrector steps")]
RenoiseOpt = Annotated[Optional[float], typer.Option(help="pnp: fresh noise re-injected per level, 0 (deterministic) to 1")]
MomentumOpt = Annotated[Optional[float], typer.Option(help="pnp: heavy-ball over-relaxation of the iteration, 0 (none) "
                                                           "to < 1; default: the preset's")]
FlipsOpt = Annotated[Optional[bool], typer.Option("--flips/--no-flips", help="pnp: periodic flip ensemble (no extra NFE); "
                                                                              "default: the preset's")]
AxisOpt = Annotated[int, typer.Option(help="slice axis of a 3D scan (stored voxel order)")]
BatchOpt = Annotated[str, typer.Option(help="slices solved together: an integer >= 1, or auto (as many as free memory allows; at most 2 on CPU)")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
SeedOpt = Annotated[int, typer.Option(help="random seed")]
PrecisionOpt = Annotated[str, typer.Option(help="network arithmetic: auto (bf16 on CUDA, fp32 on CPU), fp32, or bf16 "
                                                "(about 1.6x faster per network evaluation on CPUs with AVX512-BF16 "
                                                "or AMX; PSNR within 0.05 dB)")]
StepOpt = Annotated[Optional[float], typer.Option(help="multiplier on the preset's step size")]
StartOpt = Annotated[Optional[float], typer.Option(help="warm-start noise level (default: the task's)")]
SeriesOpt = Annotated[Optional[str], typer.Option("--series", help="SeriesInstanceUID to read from a DICOM folder "
                                                                  "holding several series")]


@contextlib.contextmanager
def _progress(description: str) -> Iterator:
    """Like ``slice_progress``, but the bar only appears once the first level is done: an input error
    found while loading (scan, mask, model, output path) then prints its one line and nothing else."""
    with contextlib.ExitStack() as stack:
        bar = []

        def update(done: int, total: int) -> None:
            if not bar:
                bar.append(stack.enter_context(slice_progress(description)))
            bar[0](done, total)

        yield update


def _opts(preset: str, samples: int, seed: int, step_multiplier: float | None, sigma_start: float | None,
          sampler: str | None = None, eta: float | None = None, snr: float | None = None,
          renoise: float | None = None, flips: bool | None = None, precision: str = "auto",
          momentum: float | None = None):
    from ..solvers import SamplerOptions
    from ..errors import InputError
    from ..sampling import PRESETS

    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    if samples is not None and samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    from ..validation import check_positive

    for name, value in (("--step-multiplier", step_multiplier), ("--sigma-start", sigma_start)):
        if value is not None:
            check_positive(name, value)
    opts = SamplerOptions(preset=preset, samples=samples, seed=seed, multiplier=step_multiplier, sigma_start=sigma_start,
                          sampler=sampler, eta=eta, snr=snr, renoise=renoise, flips=flips, precision=precision,
                          momentum=momentum)
    try:
        opts.resolve().build()  # unknown sampler, a setting the sampler lacks, eta outside [0, 1]: one line now
    except ValueError as exc:
        msg = str(exc)
        for name in ("eta", "snr", "renoise", "momentum"):
            msg = msg.replace(f"{name} ", f"--{name} ")
        raise InputError(msg) from None
    return opts


def reconstruct_command(
    scan: Annotated[Path, typer.Argument(help="NIfTI, DICOM series folder or .npy image; or complex k-space (.npy, fastMRI .h5)")],
    mask: Annotated[Optional[Path], typer.Option(help="0/1 k-space mask .npy, (W,) lines or (H, W); see `medscore mask`")] = None,
    model: ModelOpt = None, out: OutOpt = None, samples: SamplesOpt = None, preset: PresetOpt = "default",
    axis: AxisOpt = 2, batch_size: BatchOpt = "auto", device: DeviceOpt = "auto", seed: SeedOpt = 0,
    step_multiplier: StepOpt = None, sigma_start: StartOpt = None, series: SeriesOpt = None,
    sampler: SamplerOpt = None, eta: EtaOpt = None, snr: SnrOpt = None, renoise: RenoiseOpt = None, flips: FlipsOpt = None,
    momentum: MomentumOpt = None,
    precision: PrecisionOpt = "auto",
    smaps: Annotated[Optional[Path], typer.Option(
        help="multi-coil k-space: coil maps .npy/.h5, (S, C, H, W) or (C, H, W); default: estimated by ESPIRiT "
             "(pip install \"medscore\\[mri]\")")] = None,
    crop: Annotated[Optional[int], typer.Option(
        help="k-space: centre crop of the fastMRI .h5 output, e.g. 320 (320 x 320)")] = None,
) -> None:
    """Accelerated MRI: undersample each slice's k-space with MASK (retrospective) and reconstruct it; or
    reconstruct measured single- or multi-coil k-space (mask inferred, coil maps estimated, unless given)."""
    with handle_errors():
        from ..errors import InputError
        from ..reconstruct import is_kspace_file, reconstruct_file, reconstruct_kspace_file
        from ..tasks import get_task

        task = get_task("mri")
        opts = _opts(preset, samples, seed, step_multiplier, sigma_start, sampler, eta, snr, renoise, flips, precision,
                     momentum)
        is_kspace = is_kspace_file(scan)
        preflight(scan, out, task.output_suffix, axis=axis, batch_size=batch_size, kspace=is_kspace)
        with _progress(task.progress_label) as progress:
            if is_kspace:
                report = reconstruct_kspace_file(scan, mask, model=model, out=out, opts=opts, batch_size=batch_size,
                                                 device=device, progress=progress, smaps=smaps, crop=crop)
            else:
                if smaps is not None or crop is not None:
                    raise InputError("--smaps and --crop apply to k-space inputs (.h5, complex .npy)")
                if mask is None:
                    raise InputError("--mask is required for image inputs (make one with `medscore mask`)")
                report = reconstruct_file(scan, mask, model=model, out=out, opts=opts, axis=axis,
                                          batch_size=batch_size, device=device, progress=progress,
                                          **series_option(reconstruct_file, series))
        print_report(report)


def inpaint_command(
    scan: Annotated[Path, typer.Argument(help="NIfTI, DICOM series folder or .npy image")],
    mask: Annotated[Optional[Path], typer.Option(help="0/1 .npy of shape (H, W): 1 = known pixel, 0 = hole")] = None,
    missing: Annotated[Optional[float], typer.Option(help="instead of --mask: remove this random fraction of pixels")] = None,
    model: ModelOpt = None, out: OutOpt = None, samples: SamplesOpt = None, preset: PresetOpt = "default",
    axis: AxisOpt = 2, batch_size: BatchOpt = "auto", device: DeviceOpt = "auto", seed: SeedOpt = 0,
    step_multiplier: StepOpt = None, sigma_start: StartOpt = None, series: SeriesOpt = None,
    sampler: SamplerOpt = None, eta: EtaOpt = None, snr: SnrOpt = None, renoise: RenoiseOpt = None, flips: FlipsOpt = None,
    momentum: MomentumOpt = None,
    precision: PrecisionOpt = "auto",
) -> None:
    """Inpainting: fill the holes of MASK (or a random MISSING fraction) in every slice."""
    with handle_errors():
        from ..reconstruct import inpaint_file
        from ..tasks import get_task
        from ..validation import check_mask_or_missing

        task = get_task("inpaint")
        opts = _opts(preset, samples, seed, step_multiplier, sigma_start, sampler, eta, snr, renoise, flips, precision,
                     momentum)
        check_mask_or_missing(mask, missing)
        preflight(scan, out, task.output_suffix, axis=axis, batch_size=batch_size)
        with _progress(task.progress_label) as progress:
            report = inpaint_file(scan, mask, missing=missing, mask_seed=seed, model=model, out=out, opts=opts,
                                  axis=axis, batch_size=batch_size, device=device, progress=progress,
                                  **series_option(inpaint_file, series))
        print_report(report)


def denoise_command(
    scan: Annotated[Path, typer.Argument(help="NIfTI, DICOM series folder or .npy image")],
    noise_std: Annotated[Optional[float], typer.Option(help="noise std as a fraction of the scan's 99.5th percentile; default: estimated")] = None,
    add_noise: Annotated[Optional[float], typer.Option(help="simulate: add Gaussian noise of this std, score against the input")] = None,
    method: Annotated[str, typer.Option(help="tweedie (one-step MMSE, 8 NFE: averaged over flips and transposes) or sampler (posterior samples from the preset's sampler, "
                                                "started at the noise level; 'langevin' is its old name)")] = "tweedie",
    model: ModelOpt = None, out: OutOpt = None, samples: SamplesOpt = None, preset: PresetOpt = "default",
    axis: AxisOpt = 2, batch_size: BatchOpt = "auto", device: DeviceOpt = "auto", seed: SeedOpt = 0,
    step_multiplier: StepOpt = None, series: SeriesOpt = None,
    sampler: SamplerOpt = None, eta: EtaOpt = None, snr: SnrOpt = None, renoise: RenoiseOpt = None, flips: FlipsOpt = None,
    momentum: MomentumOpt = None,
    precision: PrecisionOpt = "auto",
) -> None:
    """Denoising of a scan (or of a simulated noisy copy with --add-noise)."""
    with handle_errors():
        from ..errors import InputError
        from ..reconstruct import denoise_file
        from ..tasks import get_task

        task = get_task("denoise")
        if method not in task.methods:
            raise InputError(f"--method must be tweedie or sampler, got {method!r}")
        from ..validation import check_positive

        opts = _opts(preset, samples, seed, step_multiplier, None, sampler, eta, snr, renoise, flips, precision,
                     momentum)
        for name, value in (("--noise-std", noise_std), ("--add-noise", add_noise)):
            if value is not None:
                check_positive(name, value)
        preflight(scan, out, task.output_suffix, axis=axis, batch_size=batch_size)
        with _progress(task.progress_label) as progress:
            report = denoise_file(scan, noise_std=noise_std, add_noise=add_noise, noise_seed=seed, method=method,
                                  model=model, out=out, opts=opts, axis=axis, batch_size=batch_size, device=device,
                                  progress=progress, **series_option(denoise_file, series))
        print_report(report)


def sample_command(
    n: Annotated[int, typer.Option("-n", help="number of samples")] = 16,
    out: Annotated[Path, typer.Option("-o", "--out", help="output PNG grid (a .npy with the arrays is written beside it)")] = Path("samples.png"),
    size: Annotated[int, typer.Option(help="image size in pixels (square)")] = 64,
    model: ModelOpt = None, preset: PresetOpt = "default", device: DeviceOpt = "auto", seed: SeedOpt = 0,
    step_multiplier: StepOpt = None, sampler: SamplerOpt = None, eta: EtaOpt = None, snr: SnrOpt = None, renoise: RenoiseOpt = None, flips: FlipsOpt = None,
    momentum: MomentumOpt = None,
    precision: PrecisionOpt = "auto",
) -> None:
    """Draw unconditional samples from the prior with annealed Langevin dynamics (Algorithm 1)."""
    with handle_errors():
        from ..api import sample_to_files

        with _progress("sampling") as progress:
            opts = _opts(preset, 1, seed, step_multiplier, None, sampler, eta, snr, renoise, flips, precision, momentum)
            paths, nfe = sample_to_files(n, out, size=size, model=model, opts=opts,
                                         device=device, progress=progress)
        console.print(f"{n} samples, {nfe} NFE each: {paths[0]} and {paths[1]}")
