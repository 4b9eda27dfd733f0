"""File-level solvers: scan file -> scaled slices -> solver -> unscaled volume -> NIfTI with the input's geometry.

Slicing: a 3D scan (X, Y, Z) is cut along ``axis`` (default 2, the last stored axis) into 2D slices
in stored voxel order; for ``axis=2`` each slice is (X, Y) and a (W,) line mask indexes Y. Images
are scaled per volume with the model's intensity rule (percentiles 0 and 99.5 -> 0 and 1) and
mapped back afterwards, so outputs are in the scanner's units.

Size: the bundled prior was trained on 64 px patches at native resolution and is fully
convolutional, so slices are solved at their own size (padded internally to a multiple of 4); no
resampling happens. A model trained with ``spatial: resize`` still runs at native size; a warning
says when the scan's slices are much larger than what it saw.

Metrics (PSNR, SSIM, NMSE) are computed on the [0, 1] scale against the input, which is the fully
sampled reference for retrospective experiments (see ``medscore.metrics``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from monai.utils import OptionalImportError

from . import metrics as M
from .checkpoint import LoadedModel
from .errors import InputError
from .fileio import check_not_input
from .models import load_prior
from .physics import SingleCoilMRI, make_mask, validate_mask
from .scanio import Scan, load_scan, output_paths, save_like
from .solvers import SamplerOptions, SolverResult, denoise, inpaint, reconstruct_mri
from .train import resolve_device
from .transforms import RobustScaleIntensity
from .viz import save_panel

__all__ = ["RunReport", "load_mask", "is_kspace_file", "load_kspace", "reconstruct_file", "reconstruct_kspace_file", "inpaint_file", "denoise_file", "slices_of", "volume_of"]

Progress = Callable[[int, int], None]


@dataclass
class RunReport:
    """What a file-level run wrote and measured. ``metrics[method][metric]`` = (mean, std) over slices."""

    task: str
    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    nfe: int = 0
    seconds: float = 0.0
    slices: int = 0


def slices_of(data: np.ndarray, axis: int) -> np.ndarray:
    """(N, H, W) stack of a 2D or 3D array's slices along ``axis``."""
    if data.ndim == 2:
        return data[None]
    if axis not in (0, 1, 2, -1):
        raise InputError(f"--axis must be 0, 1 or 2, got {axis}")
    return np.moveaxis(data, axis, 0)


def volume_of(stack: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`slices_of`."""
    return stack[0] if len(shape) == 2 else np.moveaxis(stack, 0, axis)


def load_mask(mask: str | Path | np.ndarray, slice_shape: tuple[int, int]) -> np.ndarray:
    """A 0/1 mask from .npy (or an array), validated against the slice shape; returned as (H, W)."""
    if isinstance(mask, (str, Path)):
        p = Path(mask)
        if not p.is_file():
            raise InputError(f"mask not found: {p}")
        if p.suffix.lower() != ".npy":
            raise InputError(f"the mask must be a NumPy .npy file (make one with `medscore mask`), got {p.name}")
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError/OSError/EOFError/UnpicklingError for bad files
            raise InputError(f"cannot read mask {p.name}: not a valid .npy array ({exc.__class__.__name__})") from None
    else:
        arr = np.asarray(mask)
    arr = validate_mask(arr, slice_shape)
    return np.broadcast_to(arr, slice_shape).astype(np.float32) if arr.ndim == 1 else arr.astype(np.float32)


class _Job:
    """Shared plumbing of the file-level tasks: model, scaling, slices, batching, outputs, metrics."""

    def __init__(self, scan_path: str | Path, model, device: str, axis: int) -> None:
        self.device = resolve_device(device)
        self.scan: Scan = load_scan(scan_path)
        self.prior: LoadedModel = load_prior(model, self.device)
        self.axis = axis
        self.scaler = RobustScaleIntensity(*self.prior.percentiles)
        scaled = self.scaler(self.scan.data)
        self.scale = self.scaler.last_scale
        self.ref = slices_of(scaled, axis).astype(np.float32)  # (N, H, W) on [0, 1]
        size = self.prior.image_size
        if self.prior.meta.get("spatial") == "resize" and max(self.ref.shape[1:]) > 2 * size:
            warnings.warn(f"the model saw {size} px images; these slices are {self.ref.shape[1:]}: pixel scales differ")

    def solve(self, fn: Callable[..., SolverResult], batch_size: int,
              progress: Progress | None) -> tuple[np.ndarray, np.ndarray | None, int, float]:
        n = len(self.ref)
        means, stds, nfe, secs = [], [], 0, 0.0
        for start in range(0, n, batch_size):
            sl = slice(start, min(n, start + batch_size))
            x = torch.from_numpy(self.ref[sl][:, None]).to(self.device)

            def on_level(i: int, total: int, _s=start, _b=sl.stop - sl.start) -> None:
                if progress is not None:
                    progress(_s * total + (i + 1) * _b, n * total)

            res = fn(x, sl, on_level if progress is not None else None)
            means.append(res.mean[:, 0].float().cpu().numpy())
            stds.append(None if res.std is None else res.std[:, 0].float().cpu().numpy())
            nfe, secs = res.nfe * res.samples, secs + res.seconds  # NFE per slice, all samples
        std = None if stds[0] is None else np.concatenate(stds)
        return np.concatenate(means), std, nfe, secs

    def unscaled(self, stack: np.ndarray) -> np.ndarray:
        lo, hi = self.scale
        return volume_of(stack * (hi - lo) + lo, self.axis, self.scan.data.shape)

    def write(self, report: RunReport, out: Path, results: dict[str, np.ndarray], std: np.ndarray | None,
              panel: list[tuple[str, np.ndarray]]) -> None:
        """Write all outputs (each atomically): main NIfTI, extra NIfTIs, std, PNG panel of the middle slice."""
        stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
        check_not_input(out, self.scan.path)
        report.outputs["output"] = save_like(self.scan, self.unscaled(results.pop("output")), out)
        for name, stack in results.items():
            report.outputs[name] = save_like(self.scan, self.unscaled(stack), out.with_name(f"{stem}_{name}.nii.gz"))
        if std is not None:
            lo, hi = self.scale
            report.outputs["std"] = save_like(self.scan, volume_of(std * (hi - lo), self.axis, self.scan.data.shape),
                                              out.with_name(f"{stem}_std.nii.gz"))
        mid = len(self.ref) // 2
        titles = [t for t, _ in panel]
        images = [im[mid] for _, im in panel]
        wins = [(0.0, 0.2) if t.startswith("|error|") else ((0.0, max(float(im.max()), 1e-6)) if t == "std" else (0.0, 1.0))
                for t, im in zip(titles, images)]
        report.outputs["panel"] = save_panel(images, titles, out.with_name(f"{stem}_panel.png"), wins)

    def score(self, report: RunReport, estimates: dict[str, np.ndarray]) -> None:
        for method, est in estimates.items():
            report.metrics[method] = {name: M.summarize(np.atleast_1d(fn(self.ref, est))) for name, fn in M.METRICS.items()}


_DERIVED = ("zerofilled", "masked", "noisy", "std")


def _check_output(out: Path, *inputs: str | Path | np.ndarray | None) -> Path:
    """Refuse, before any work is done and anything is written, an output that is not NIfTI or whose
    files (``OUT``, ``OUT_<name>.nii.gz``, ``OUT_panel.png``) would overwrite an input."""
    if not out.name.lower().endswith((".nii", ".nii.gz")):
        raise InputError(f"output must be a .nii or .nii.gz file, got {out.name}")
    stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
    paths = [out, out.with_name(f"{stem}_panel.png"), *(out.with_name(f"{stem}_{n}.nii.gz") for n in _DERIVED)]
    files = [p for p in inputs if isinstance(p, (str, Path))]
    for p in paths:
        check_not_input(p, *files)
    return out


def _options(opts: SamplerOptions | None) -> SamplerOptions:
    return opts or SamplerOptions()


def reconstruct_file(scan: str | Path, mask: str | Path | np.ndarray, *, model=None, out: str | Path | None = None,
                     opts: SamplerOptions | None = None, axis: int = 2, batch_size: int = 4, device: str = "auto",
                     progress: Progress | None = None) -> RunReport:
    """Retrospective accelerated MRI: undersample each slice's k-space with ``mask`` and reconstruct.

    Writes ``OUT`` (medscore), ``OUT_zerofilled``, ``OUT_std`` (with several samples) and a PNG panel
    zero-filled | medscore | reference | |error| | std of the middle slice.
    """
    job = _Job(scan, model, device, axis)
    m = torch.from_numpy(load_mask(mask, job.ref.shape[1:])).to(job.device)
    op = SingleCoilMRI(m, real_input=True)
    opts = _options(opts)
    out = _check_output(Path(output_paths(scan, out, "medscore")), scan, mask)
    zf = []

    def solve(x: torch.Tensor, sl: slice, cb=None) -> SolverResult:
        y = op.A(x)
        zf.append(op.zero_filled_magnitude(y)[:, 0].cpu().numpy())  # |F^H M y|, the usual baseline
        return reconstruct_mri(job.prior.model, y, m, opts, real_image=True, callback=cb)

    mean, std, nfe, secs = job.solve(solve, batch_size, progress)
    zero = np.concatenate(zf)
    report = RunReport("mri", nfe=nfe, seconds=secs, slices=len(job.ref))
    job.score(report, {"zero-filled": zero, "medscore": mean})
    job.write(report, out, {"output": mean, "zerofilled": zero}, std,
              [("zero-filled", zero), ("medscore", mean), ("reference", job.ref), ("|error| x5", np.abs(mean - job.ref))]
              + ([("std", std)] if std is not None else []))
    return report


def inpaint_file(scan: str | Path, mask: str | Path | np.ndarray | None = None, *, missing: float | None = None,
                 mask_seed: int = 0, model=None, out: str | Path | None = None, opts: SamplerOptions | None = None,
                 axis: int = 2, batch_size: int = 4, device: str = "auto", progress: Progress | None = None) -> RunReport:
    """Fill pixels where ``mask`` is 0 (1 = known), or a random ``missing`` fraction of pixels per slice."""
    job = _Job(scan, model, device, axis)
    shape = job.ref.shape[1:]
    if mask is None:
        if missing is None or not 0 < missing < 1:
            raise InputError("inpainting needs --mask HOLES.npy or --missing FRACTION in (0, 1)")
        rng = np.random.default_rng(mask_seed)
        masks = (rng.random((len(job.ref), *shape)) >= missing).astype(np.float32)
    else:
        masks = np.broadcast_to(load_mask(mask, shape), (len(job.ref), *shape))
    opts = _options(opts)
    out = _check_output(Path(output_paths(scan, out, "inpainted")), scan, mask)

    def solve(x: torch.Tensor, sl: slice, cb=None) -> SolverResult:
        mk = torch.from_numpy(np.ascontiguousarray(masks[sl])[:, None]).to(job.device)
        return inpaint(job.prior.model, x * mk, mk, opts, callback=cb)

    mean, std, nfe, secs = job.solve(solve, batch_size, progress)
    masked = job.ref * masks
    report = RunReport("inpaint", nfe=nfe, seconds=secs, slices=len(job.ref))
    job.score(report, {"input": masked, "medscore": mean})
    job.write(report, out, {"output": mean, "masked": masked}, std,
              [("input", masked), ("medscore", mean), ("reference", job.ref), ("|error| x5", np.abs(mean - job.ref))]
              + ([("std", std)] if std is not None else []))
    return report


def denoise_file(scan: str | Path, *, noise_std: float | None = None, add_noise: float | None = None, noise_seed: int = 0,
                 method: str = "tweedie", model=None, out: str | Path | None = None, opts: SamplerOptions | None = None,
                 axis: int = 2, batch_size: int = 4, device: str = "auto", progress: Progress | None = None) -> RunReport:
    """Denoise a scan. ``add_noise`` simulates Gaussian noise of that std (on the [0, 1] scale: a fraction of the
    scan's 99.5th-percentile intensity) and scores against the clean input; otherwise the scan is the noisy
    input, ``noise_std`` is given on the same scale or estimated (scikit-image ``estimate_sigma``)."""
    from .physics import estimate_noise_std

    job = _Job(scan, model, device, axis)
    opts = _options(opts)
    if add_noise is not None:
        if add_noise <= 0:
            raise InputError(f"--add-noise must be > 0, got {add_noise}")
        rng = np.random.default_rng(noise_seed)
        noisy = (job.ref + add_noise * rng.standard_normal(job.ref.shape)).astype(np.float32)
        sigma = float(add_noise if noise_std is None else noise_std)
    else:
        noisy = job.ref
        sigma = float(noise_std) if noise_std is not None else estimate_noise_std(noisy[:, None])
    if sigma <= 0:
        raise InputError(f"noise std must be > 0, got {sigma}")
    out = _check_output(Path(output_paths(scan, out, "denoised")), scan)

    def solve(x: torch.Tensor, sl: slice, cb=None) -> SolverResult:
        y = torch.from_numpy(noisy[sl][:, None]).to(job.device)
        return denoise(job.prior.model, y, sigma, opts, method=method, callback=cb)  # type: ignore[arg-type]

    mean, std, nfe, secs = job.solve(solve, batch_size, progress)
    report = RunReport("denoise", nfe=nfe, seconds=secs, slices=len(job.ref))
    if add_noise is not None:
        job.score(report, {"input": noisy, "medscore": mean})
    extra = {"noisy": noisy} if add_noise is not None else {}
    job.write(report, out, {"output": mean, **extra}, std,
              [("input", noisy), ("medscore", mean)] + ([("reference", job.ref), ("|error| x5", np.abs(mean - job.ref))]
                                                         if add_noise is not None else [])
              + ([("std", std)] if std is not None else []))
    return report


def is_kspace_file(path: str | Path) -> bool:
    """True for measured k-space: a fastMRI .h5 file or a readable .npy holding complex values.
    Unreadable files return False and are then reported by the scan reader as one line."""
    p = Path(path)
    if p.suffix.lower() == ".h5":
        return True
    if p.suffix.lower() != ".npy" or not p.is_file():
        return False
    try:
        return bool(np.iscomplexobj(np.load(p, mmap_mode="r", allow_pickle=False)))
    except Exception:  # corrupt or pickled
        return False


def load_kspace(path: str | Path) -> np.ndarray:
    """Single-coil k-space as complex64 (N, H, W), centred: a complex .npy ((H, W) or (N, H, W)) or a
    fastMRI .h5 file read with MONAI's ``FastMRIReader`` (needs h5py: ``pip install h5py``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"k-space file not found: {p}")
    if p.suffix.lower() == ".h5":
        try:
            from monai.apps.reconstruction.fastmri_reader import FastMRIReader

            reader = FastMRIReader()
            data, _ = reader.get_data(reader.read(str(p)))
        except (ImportError, OptionalImportError) as exc:  # h5py missing
            raise InputError(f"reading fastMRI .h5 needs h5py (pip install h5py): {exc.__class__.__name__}") from None
        except Exception as exc:
            raise InputError(f"cannot read {p.name}: {exc.__class__.__name__}: {str(exc)[:160]}") from None
    elif p.suffix.lower() == ".npy":
        try:
            data = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"cannot read {p.name}: {exc.__class__.__name__}") from None
    else:
        raise InputError(f"k-space must be a complex .npy or a fastMRI .h5 file, got {p.name}")
    data = np.asarray(data)
    if not np.iscomplexobj(data):
        raise InputError(f"{p.name}: k-space must be complex-valued")
    if data.ndim == 2:
        data = data[None]
    if data.ndim == 4:
        raise InputError(f"{p.name}: multi-coil k-space {data.shape} needs coil sensitivity maps; "
                         "use the Python API (reconstruct_mri with smaps) or coil-combine first")
    if data.ndim != 3 or not np.isfinite(data).all():
        raise InputError(f"{p.name}: expected finite single-coil k-space (H, W) or (N, H, W), got {data.shape}")
    return data.astype(np.complex64)


def reconstruct_kspace_file(kspace: str | Path, mask: str | Path | np.ndarray | None, *, model=None,
                            out: str | Path | None = None, opts: SamplerOptions | None = None, batch_size: int = 4,
                            device: str = "auto", progress: Progress | None = None) -> RunReport:
    """Reconstruct measured single-coil k-space (complex image, prior on real and imaginary parts).

    ``mask`` None takes the sampled locations from the non-zero k-space entries. There is no reference,
    so no metrics. The output is the magnitude image (H, W, N) with an identity affine (k-space files carry
    no patient geometry).
    """
    dev = resolve_device(device)
    prior = load_prior(model, dev)
    k = load_kspace(kspace)
    shape = k.shape[1:]
    m = load_mask(mask, shape) if mask is not None else validate_mask((np.abs(k) > 0).any(0).astype(np.float32), shape)
    m_t = torch.from_numpy(np.array(np.broadcast_to(m, shape), dtype=np.float32)).to(dev)  # a writable copy
    op = SingleCoilMRI(m_t, real_input=False)
    y_all = torch.from_numpy(k[:, None]).to(dev) * m_t
    zf_all = op.A_dagger(y_all)
    scale = RobustScaleIntensity(0.0, prior.percentiles[1]).scale_of(
        torch.linalg.vector_norm(zf_all, dim=1))[1]  # magnitude scale; k-space admits no offset
    opts = _options(opts)
    out = Path(out) if out is not None else Path(kspace).with_name(Path(kspace).stem + "_medscore.nii.gz")
    _check_output(out, kspace, mask)
    means, stds, nfe, secs = [], [], 0, 0.0
    n = len(k)
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))

        def on_level(i: int, total: int, _s=start, _b=sl.stop - sl.start) -> None:
            if progress is not None:
                progress(_s * total + (i + 1) * _b, n * total)

        res = reconstruct_mri(prior.model, y_all[sl] / scale, m_t, opts, real_image=False, callback=on_level)
        means.append(torch.linalg.vector_norm(res.mean, dim=1).cpu().numpy() * scale)
        if res.std is not None:
            stds.append(torch.linalg.vector_norm(res.std, dim=1).cpu().numpy() * scale)
        nfe, secs = res.nfe * res.samples, secs + res.seconds
    mag = np.moveaxis(np.concatenate(means), 0, -1)
    zf = np.moveaxis(torch.linalg.vector_norm(zf_all, dim=1).cpu().numpy(), 0, -1)
    scan = Scan(mag, np.eye(4), None, "kspace", None)
    report = RunReport("mri-kspace", nfe=nfe, seconds=secs, slices=n)
    stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
    report.outputs["output"] = save_like(scan, mag, out)
    report.outputs["zerofilled"] = save_like(scan, zf, out.with_name(f"{stem}_zerofilled.nii.gz"))
    if stds:
        report.outputs["std"] = save_like(scan, np.moveaxis(np.concatenate(stds), 0, -1), out.with_name(f"{stem}_std.nii.gz"))
    mid = n // 2
    report.outputs["panel"] = save_panel([zf[..., mid] / scale, mag[..., mid] / scale], ["zero-filled", "medscore"],
                                         out.with_name(f"{stem}_panel.png"))
    return report
