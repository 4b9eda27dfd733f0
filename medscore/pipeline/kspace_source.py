"""Measured k-space files as a source of the file driver: open, survey and scale, stack, write.

Single-coil (S, H, W) and multi-coil (S, C, H, W) files (a complex ``.npy`` or a fastMRI ``.h5``) are opened, not
loaded: batches are read lazily. One pass over the slices (the survey) checks every batch, finds the sampling mask
when none is given (where any coil of any slice is non-zero) and forms the zero-filled root-sum-of-squares image,
whose robust maximum sets the intensity scale; the k-space noise is estimated from the measured periphery. The
multi-coil task solves the stack (:func:`medscore.tasks.measured.prepare_measured`); outputs are written by
:func:`.fastmri.write_kspace_outputs` (complex image, magnitude NIfTI, fastMRI ``.h5``, JSON sidecar; or, for an
output named ``NAME.h5``, that fastMRI file alone).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..io.arrays import ComplexArrayFile, open_kspace
from ..physics import acceleration, ifft2c, validate_mask
from ..physics.coils import estimate_kspace_noise
from ..tasks import KSpaceStack, StackSolve, Task
from ..tasks.mri import MULTICOIL_KEY
from ..transforms import RobustScaleIntensity
from .kspace3d import open_kspace_3d
from .fastmri import KSpaceRun, crop_size, run_info, write_kspace_outputs
from .outputs import FASTMRI_ONLY, KSPACE_OUTPUTS, OutputPlan, RunReport, default_output, plan_outputs
from .stream import Streamed

__all__ = ["KSpaceSource", "check_prior_channels", "kspace_noise"]

Crop = int | Sequence[int] | None
SURVEY_CHUNK = 8  # slices per read of the survey (results do not depend on it)


def check_prior_channels(prior: Any) -> int:
    """A prior's image channels (``model.in_channels`` in model.json): 1 (applied to the real and imaginary
    parts) or 2 (a complex prior, applied to the complex image); anything else is an InputError."""
    channels = int(prior.meta.get("model", {}).get("in_channels", 1))
    if channels not in (1, 2):
        raise InputError(f"model {Path(prior.path).parent.name} takes {channels}-channel images: complex k-space "
                         "needs a 1-channel (magnitude) or 2-channel (complex) prior")
    return channels


def survey(src: ComplexArrayFile, mask: np.ndarray | None, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the file: every batch read (and so checked finite), the (H, W) sampling mask (``mask``, or
    where any coil of any slice is non-zero) and the zero-filled root-sum-of-squares image (S, H, W)."""
    n, (h, w) = src.shape[0], src.shape[-2:]
    zf = np.empty((n, h, w), dtype=np.float32)
    seen = torch.zeros((h, w), dtype=torch.bool, device=device)
    m_t = None if mask is None else torch.from_numpy(mask).to(device)
    for start in range(0, n, SURVEY_CHUNK):
        sl = slice(start, min(n, start + SURVEY_CHUNK))
        k = src.read(sl)
        k = torch.from_numpy(k[:, None] if k.ndim == 3 else k).to(device)
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


def intensity_scale(zf: np.ndarray, upper: float, name: str) -> float:
    """The model-scale factor: the ``upper`` percentile of the zero-filled magnitude (k-space admits no offset)."""
    try:
        return RobustScaleIntensity(0.0, upper).scale_of(zf)[1]
    except ValueError:
        raise InputError(f"{name}: the zero-filled image is constant: nothing to reconstruct") from None


def kspace_noise(src: ComplexArrayFile, mask: np.ndarray) -> float:
    """The k-space noise std of the acquisition (file units): the smallest estimate over the first, middle and
    last slice (each an upper bound, :func:`~medscore.physics.coils.estimate_kspace_noise`; edge slices hold the
    least signal). Solvers then take the likelihood's proximal step instead of projecting onto noisy data
    (measured on simulated 8-coil validation slices at `fast`: 32.5 -> 36.7 dB at 1D 4x, 35.4 -> 41.2 dB at
    Poisson-vd 8x against a projection; 37.4 and 42.6 dB with the true noise level)."""
    n = src.shape[0]

    def coils(i: int) -> np.ndarray:
        k = src.read(slice(i, i + 1))
        return k[:, None] if k.ndim == 3 else k

    try:
        return min(estimate_kspace_noise(coils(i) * mask, mask) for i in sorted({0, n // 2, n - 1}))
    except InputError as exc:  # nothing measured in the periphery (e.g. a centre-only mask): solve as noiseless
        warnings.warn(f"{src.path.name}: {exc}; solving as noiseless data", stacklevel=2)
        return 0.0


def _mask_source(mask: Any) -> str:
    if mask is None:
        return "inferred from the k-space zero pattern (sampled where any coil is non-zero)"
    return f"file {Path(mask).name}" if isinstance(mask, (str, Path)) else "array"


class KSpaceSource:
    """A measured k-space file; ``crop`` centre-crops the fastMRI ``.h5`` output (``320`` -> 320 x 320);
    ``readout_axis`` (0-2) reads it as 3D Cartesian k-space, (kx, ky, kz) or (coils, kx, ky, kz), solved plane by
    plane along that axis (:mod:`.kspace3d`)."""

    complex_data = True  # the image is complex: its phase moves into the (one-coil) maps
    channels = 2

    def __init__(self, path: str | Path, crop: Crop = None, readout_axis: int | None = None) -> None:
        self.path, self.crop, self.readout_axis = Path(path), crop, readout_axis
        self.src: ComplexArrayFile | None = None
        self.stacked: KSpaceStack | None = None
        self.file_shape: tuple[int, ...] = ()

    @contextlib.contextmanager
    def open(self) -> Iterator[KSpaceSource]:
        """Open the file for batch reads (layout, dtype and slice size checked) and the ``crop`` against it."""
        with contextlib.ExitStack() as stack:
            if self.readout_axis is None:
                self.src = stack.enter_context(open_kspace(self.path))
                self.file_shape = self.src.shape
            else:
                with open_kspace(self.path) as raw:
                    self.file_shape = raw.shape
                self.src = stack.enter_context(open_kspace_3d(self.path, self.readout_axis))
            crop_size(self.crop, self.slice_shape)
            yield self

    @property
    def single_coil(self) -> bool:
        assert self.src is not None, "open the source first"
        return len(self.src.shape) == 3

    @property
    def coils(self) -> int:
        """Receive coils of the opened file (0 for single-coil k-space)."""
        assert self.src is not None, "open the source first"
        return 0 if self.single_coil else int(self.src.shape[1])

    @property
    def slice_shape(self) -> tuple[int, int]:
        assert self.src is not None, "open the source first"
        return self.src.shape[-2:]  # type: ignore[return-value]

    def output_plan(self, out: str | Path | None, task: Task, input_files: tuple[Any, ...]) -> OutputPlan:
        """``out`` (default ``<file>_medscore.nii.gz``) and its side files, checked before any compute; ``NAME.h5``
        is the fastMRI file alone (never the input itself)."""
        target = default_output(self.path, out, task.output_suffix)
        if not target.name.lower().endswith((".nii", ".nii.gz", ".h5")):
            raise InputError(f"output must be a .nii or .nii.gz file (or a fastMRI .h5) for k-space input, "
                             f"got {target.name}")
        files = FASTMRI_ONLY if target.name.lower().endswith(".h5") else KSPACE_OUTPUTS
        return plan_outputs(target, self.path, *input_files, files=files)

    def stack(self, prior: Any, inputs: Any) -> KSpaceStack:
        """Survey the file (mask given or inferred, zero-filled image), the scale and the noise level."""
        assert self.src is not None, "open the source first"
        check_prior_channels(prior)
        device = next(prior.model.parameters()).device
        m, zf = survey(self.src, inputs.mask, device)
        scale = intensity_scale(zf, prior.percentiles[1], self.src.path.name)
        self.stacked = KSpaceStack(self.src, m, zf, scale, kspace_noise(self.src, m))
        return self.stacked

    def write(self, report: RunReport, plan: OutputPlan, task: Task, prepared: StackSolve, res: Streamed,
              info: dict[str, Any]) -> None:
        """The fastMRI-style outputs, with a sidecar that records how the result was made."""
        st = self.stacked
        assert st is not None and self.src is not None
        report.task = "mri-kspace" if self.single_coil else MULTICOIL_KEY
        sidecar = {**run_info(info["prior"], info["opts"], MULTICOIL_KEY, self.slice_shape), "task": report.task,
                   "input": {"file": self.src.path.name, "shape": list(self.file_shape),
                             **({} if self.readout_axis is None else {"readout_axis": self.readout_axis})},
                   "mask": {"source": _mask_source(info["raw"].mask), "acceleration": round(acceleration(st.mask), 4)},
                   "coil_maps": prepared.info["coil_maps"], "nfe_per_slice": res.nfe, "scale": st.scale,
                   "kspace_noise_std": st.noise_std, "device": str(info["device"]),
                   "timing_s": {"total": round(info["elapsed"](), 3), "solver": round(res.seconds, 3),
                                "coil_maps": round(prepared.info.get("coil_maps_seconds", 0.0), 3)}}
        std = None if res.std is None else res.std * np.float32(st.scale)
        run = KSpaceRun(prepared.extras["complex"], st.zerofilled, std, st.scale, sidecar,
                        slice_axis=2 if self.readout_axis is None else self.readout_axis)
        report.outputs.update(write_kspace_outputs(plan, run, crop_size(self.crop, self.slice_shape)))
