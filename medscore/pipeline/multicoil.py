"""Measured k-space files -> complex image -> fastMRI-style outputs; multi-coil with SENSE data consistency.

One driver serves single-coil (S, H, W) and multi-coil (S, C, H, W) files. It opens the file (batches are
read lazily), makes one pass over the slices (finite check, the sampling mask when it is inferred, the
zero-filled root-sum-of-squares image, whose robust maximum sets the intensity scale, as for single coil),
then streams batches through :func:`medscore.solvers.reconstruct_mri` with ``smaps``: for multi coil, coil maps
estimated per batch by ESPIRiT from the measured samples or read from a file; for single coil, a one-coil map
that carries the image's smooth phase (:func:`medscore.coilmaps.single_coil_phase_map`). Either way the image
to solve is nearly real, and the output is rotated back to the image itself (or the file maps' convention).
Outputs are written by :func:`.fastmri.write_kspace_outputs`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..coilmaps import estimate_reconstruction_maps, single_coil_phase_map, tv_image_phase
from ..errors import InputError
from ..models import load_prior
from ..physics import acceleration, channels_to_complex, ifft2c, normalize_smaps, validate_mask
from ..physics.coils import estimate_kspace_noise
from ..solvers import SamplerOptions, SolverResult, presets_of, reconstruct_mri
from ..tasks.mri import MULTICOIL_KEY
from ..devices import resolve_device
from ..transforms import RobustScaleIntensity
from .fastmri import KSpaceRun, crop_size, run_info, write_kspace_outputs
from .inputs import ComplexArrayFile, load_mask, open_kspace, open_smaps
from .job import RunReport, batch_options, model_width
from .memory import resolve_batch_size
from .outputs import default_output, plan_outputs
from .volume import Progress, channel_magnitude, stream

__all__ = ["reconstruct_multicoil_file", "reconstruct_measured", "CoilMaps", "PhaseMap", "check_prior_channels"]

Crop = int | Sequence[int] | None


class CoilMaps:
    """Coil maps for batches of slices, scaled to ``sum_k |S_k|^2 = 1`` where non-zero (ESPIRiT's convention:
    the image is then the coil combination whose magnitude fastMRI's root-sum-of-squares references measure).

    ``file`` None: estimated slice by slice by ESPIRiT from the measured k-space of the batch, as the benchmark
    does (:func:`medscore.coilmaps.estimate_reconstruction_maps`: ESPIRiT, not cropped, the image's smooth phase
    from a short TV-CS reconstruction moved into the maps, so the image to reconstruct is nearly real); else read
    from the file, (S, C, H, W) or (C, H, W)."""

    def __init__(self, file: ComplexArrayFile | None = None) -> None:
        self.file = file
        self.seconds = 0.0
        self._shared = file.read(slice(None)) if file is not None and len(file.shape) == 3 else None

    @property
    def source(self) -> str:
        if self.file is None:
            return "estimated per slice by ESPIRiT from the fully sampled centre rectangle (medscore.physics.espirit)"
        return f"file {self.file.path.name}" if self.file.path.suffix else "array"

    def check(self, sl: slice) -> None:
        """Read the maps of slices ``sl`` once, so bad values are refused before any compute."""
        if self.file is not None and self._shared is None:
            self.file.read(sl)

    def check_estimable(self, mask: np.ndarray) -> None:
        """Before any compute: the fully sampled centre is large enough for ESPIRiT."""
        if self.file is not None:
            return
        from ..physics.coils import calibration_width

        calibration_width(mask)

    def batch(self, sl: slice, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps (B, C, H, W) complex64 to solve slices ``sl`` with, from their measured k-space ``y`` (B, C, H, W)
        on the [0, 1] image scale and sampling ``mask`` (H, W); and the phase (B, 1, H, W) moved into them.

        Estimated maps carry the image's smooth phase already (:mod:`medscore.coilmaps`); the phase returned is 1.
        A file's maps are normalised and get the smooth phase of a TV-CS reconstruction with them
        (:func:`~medscore.coilmaps.tv_image_phase`): the solved image times the returned phase is the image in the
        convention of the file's maps, so the outputs do not depend on this internal step.
        """
        t0 = time.perf_counter()
        if self.file is None:
            maps = estimate_reconstruction_maps(y, mask)
            phase = torch.ones((len(maps), 1, *maps.shape[-2:]), dtype=maps.dtype)
        else:
            given = self._shared if self._shared is not None else self.file.read(sl)
            # a copy: broadcast_to's view is read-only even where it needs no broadcasting
            maps = normalize_smaps(torch.from_numpy(np.array(np.broadcast_to(given, y.shape), dtype=np.complex64)))
            phase = tv_image_phase(torch.from_numpy(y), maps, torch.from_numpy(mask)).to(maps.dtype)
            maps = maps * phase
        self.seconds += time.perf_counter() - t0
        return normalize_smaps(maps), phase


class PhaseMap:
    """Single coil: the one-coil "map" per batch, the image's smooth phase
    (:func:`~medscore.coilmaps.single_coil_phase_map`), with the interface of :class:`CoilMaps`."""

    source = "one-coil map: the image's smooth phase from a short TV-CS reconstruction (single coil)"

    def __init__(self) -> None:
        self.seconds = 0.0

    def check(self, sl: slice) -> None:
        """Nothing to read."""

    def check_estimable(self, mask: np.ndarray) -> None:
        """Any mask will do."""

    def batch(self, sl: slice, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The map (B, 1, H, W) to solve slices ``sl`` with, and the factor the solved image is multiplied by to give
        the image itself: the same map."""
        t0 = time.perf_counter()
        phase = single_coil_phase_map(torch.from_numpy(y), torch.from_numpy(mask))
        self.seconds += time.perf_counter() - t0
        return phase, phase


def check_prior_channels(prior: Any) -> int:
    """A prior's image channels (``model.in_channels`` in model.json): 1 (applied to the real and imaginary
    parts) or 2 (a complex prior, applied to the complex image); anything else is an InputError."""
    channels = int(prior.meta.get("model", {}).get("in_channels", 1))
    if channels not in (1, 2):
        raise InputError(f"model {Path(prior.path).parent.name} takes {channels}-channel images: complex k-space "
                         "needs a 1-channel (magnitude) or 2-channel (complex) prior")
    return channels


def _coils(src: ComplexArrayFile, sl: slice) -> np.ndarray:
    """Slices ``sl`` as (B, C, H, W); single-coil files get C = 1."""
    k = src.read(sl)
    return k[:, None] if k.ndim == 3 else k


def _survey(src: ComplexArrayFile, mask: np.ndarray | None, maps: CoilMaps | PhaseMap, chunk: int,
            dev: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the file: every batch read (and so checked finite), the (H, W) sampling mask (``mask``, or
    where any coil of any slice is non-zero) and the zero-filled root-sum-of-squares image (S, H, W)."""
    n, (h, w) = src.shape[0], src.shape[-2:]
    zf = np.empty((n, h, w), dtype=np.float32)
    seen = torch.zeros((h, w), dtype=torch.bool, device=dev)
    m_t = None if mask is None else torch.from_numpy(mask).to(dev)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        k = torch.from_numpy(_coils(src, sl)).to(dev)
        maps.check(sl)
        if m_t is None:
            seen |= (k != 0).any(dim=1).any(dim=0)
        else:
            k = k * m_t
        zf[sl] = torch.linalg.vector_norm(ifft2c(k), dim=1).cpu().numpy()
    if mask is not None:
        return mask, zf
    if not bool(seen.any()):
        raise InputError(f"{src.path.name}: the k-space is all zeros: nothing was measured")
    return validate_mask(seen.cpu().numpy().astype(np.float32), (h, w)), zf


def _scale(zf: np.ndarray, upper: float, name: str) -> float:
    """The model-scale factor: the ``upper`` percentile of the zero-filled magnitude (k-space admits no offset)."""
    try:
        return RobustScaleIntensity(0.0, upper).scale_of(zf)[1]
    except ValueError:
        raise InputError(f"{name}: the zero-filled image is constant: nothing to reconstruct") from None


def _kspace_noise(src: ComplexArrayFile, mask: np.ndarray) -> float:
    """The k-space noise std of the acquisition (file units): the smallest estimate over the first, middle and
    last slice (each an upper bound, :func:`~medscore.physics.coils.estimate_kspace_noise`; edge slices hold the
    least signal). Solvers then take the likelihood's proximal step instead of projecting onto noisy data
    (measured on simulated 8-coil validation slices at `fast`: 32.5 -> 36.7 dB at 1D 4x, 35.4 -> 41.2 dB at
    Poisson-vd 8x against a projection; 37.4 and 42.6 dB with the true noise level)."""
    n = src.shape[0]
    try:
        return min(estimate_kspace_noise(_coils(src, slice(i, i + 1)) * mask, mask) for i in sorted({0, n // 2, n - 1}))
    except InputError as exc:  # nothing measured in the periphery (e.g. a centre-only mask): solve as noiseless
        warnings.warn(f"{src.path.name}: {exc}; solving as noiseless data", stacklevel=2)
        return 0.0


def reconstruct_measured(src: ComplexArrayFile, mask: str | Path | np.ndarray | None, maps: CoilMaps | None, *,
                         inputs: Sequence[Any], model: Any = None, out: str | Path | None = None,
                         opts: SamplerOptions | None = None, batch_size: int | str = 4, crop: Crop = None,
                         device: str = "auto", progress: Progress | None = None) -> RunReport:
    """The driver: an opened k-space file (single coil with ``maps`` None: a :class:`PhaseMap`; else multi coil) ->
    written outputs.

    ``inputs``: the run's input files, which no output may overwrite.
    """
    t0 = time.perf_counter()
    n, shape = src.shape[0], src.shape[-2:]
    m_given = load_mask(mask, shape) if mask is not None else None
    size = crop_size(crop, shape)
    opts = opts or SamplerOptions()
    plan = plan_outputs(default_output(src.path, out, "medscore"), *inputs)
    dev = resolve_device(device)
    prior = load_prior(model, dev, complex_data=True)  # single coil: its phase moves into a one-coil map
    check_prior_channels(prior)
    chains = opts.n_samples(MULTICOIL_KEY, presets_of(prior.model))
    bs = resolve_batch_size(batch_size, n, shape, dev, model_width(prior), chains, channels=2)
    single_coil, maps = maps is None, maps if maps is not None else PhaseMap()
    m, zf = _survey(src, m_given, maps, bs, dev)
    maps.check_estimable(m)
    scale = _scale(zf, prior.percentiles[1], src.path.name)
    noise = _kspace_noise(src, m)
    m_t = torch.from_numpy(m).to(dev)
    image = np.empty((n, *shape), dtype=np.complex64)

    def solve(sl: slice, cb: Any) -> SolverResult:
        y = _coils(src, sl) * m / np.float32(scale)
        smaps, phase = maps.batch(sl, y, m)
        res = reconstruct_mri(prior.model, torch.from_numpy(y).to(dev), m_t, batch_options(opts, sl), real_image=False,
                              smaps=smaps.to(dev), noise_std=noise / scale, callback=cb)
        image[sl] = (channels_to_complex(res.mean)[:, 0].cpu() * phase[:, 0]).numpy()
        return res

    res = stream(n, shape, solve, bs, progress, reduce=channel_magnitude)
    info = {**run_info(prior, opts, MULTICOIL_KEY), "task": "mri-kspace" if single_coil else MULTICOIL_KEY,
            "input": {"file": src.path.name, "shape": list(src.shape)},
            "mask": {"source": _mask_source(mask), "acceleration": round(acceleration(m), 4)},
            "coil_maps": maps.source, "nfe_per_slice": res.nfe, "scale": scale,
            "kspace_noise_std": noise,
            "device": str(dev)}
    std = None if res.std is None else res.std * np.float32(scale)
    run = KSpaceRun(image * np.float32(scale), zf, std, scale, info)
    run.info["timing_s"] = {"total": round(time.perf_counter() - t0, 3), "solver": round(res.seconds, 3),
                            "coil_maps": round(maps.seconds, 3)}
    report = RunReport(info["task"], nfe=res.nfe, seconds=res.seconds, slices=n)
    report.outputs.update(write_kspace_outputs(plan, run, size))
    return report


def _mask_source(mask: str | Path | np.ndarray | None) -> str:
    if mask is None:
        return "inferred from the k-space zero pattern (sampled where any coil is non-zero)"
    return f"file {Path(mask).name}" if isinstance(mask, (str, Path)) else "array"


def reconstruct_multicoil_file(kspace_path: str | Path, mask: str | Path | np.ndarray | None = None, *,
                               smaps: str | Path | np.ndarray | None = None, model: Any = None,
                               out: str | Path | None = None, opts: SamplerOptions | None = None,
                               batch_size: int | str = 4, crop: Crop = None, device: str = "auto",
                               progress: Progress | None = None) -> RunReport:
    """Reconstruct multi-coil k-space (fastMRI .h5 ``kspace`` or complex .npy, (S, C, H, W), centred).

    ``mask`` (a .npy or array, (W,) or (H, W)) None: the sampled locations are where any coil is non-zero.
    ``smaps`` None: coil maps estimated per slice by ESPIRiT (needs ``pip install "medscore[mri]"``); else a
    .npy/.h5 file or an array, (S, C, H, W) or (C, H, W). The image is complex (SENSE data consistency; a
    1-channel prior acts on its real and imaginary parts, a 2-channel prior on the complex image). ``crop``
    centre-crops the fastMRI .h5 ``reconstruction`` (``320`` -> 320 x 320). No reference: no metrics.
    Outputs: see :mod:`medscore.pipeline.fastmri`. ``batch_size``: slices per solver call, or ``"auto"``.
    """
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_kspace(kspace_path))
        if len(src.shape) != 4:
            raise InputError(f"{src.path.name}: single-coil k-space {src.shape}: use reconstruct_kspace_file "
                             "(coil maps apply to multi-coil (S, C, H, W) k-space)")
        maps = CoilMaps(stack.enter_context(open_smaps(smaps, src.shape)) if smaps is not None else None)
        return reconstruct_measured(src, mask, maps, inputs=(kspace_path, mask, smaps), model=model, out=out,
                                    opts=opts, batch_size=batch_size, crop=crop, device=device, progress=progress)
