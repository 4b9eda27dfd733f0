"""Outputs of k-space runs that researchers can use: complex image, magnitude NIfTI, fastMRI .h5, JSON sidecar.

For ``OUT = rec.nii.gz`` (names from :class:`~medscore.pipeline.outputs.OutputPlan`):

- ``rec.nii.gz``: the magnitude (H, W, S), identity affine (k-space carries no patient geometry), as
  before; ``rec_zerofilled.nii.gz`` (root-sum-of-squares of the zero-filled coil images), ``rec_std.nii.gz``
  with several samples, ``rec_panel.png``;
- ``rec_complex.npy``: the complex image (S, H, W) complex64, in k-space units (orthonormal FFT);
- ``rec.h5``: dataset ``reconstruction`` (S, H', W') float32, the magnitude centre-cropped to ``crop``
  (fastMRI's submission format; fastMRI's ``evaluate.py`` pairs files by name, so ``-o recon/file1000.nii.gz``
  gives the ``recon/file1000.h5`` it expects);
- ``rec.json``: how the result was made (model, sampler, NFE, mask, coil maps, seed, timing, version).

Every file is written atomically, and nothing is written unless every array is finite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError, NonFiniteError
from ..io.atomic import atomic_path
from ..metrics import center_crop
from ..io.scans import Scan
from .outputs import OutputPlan, Panel, write_outputs
from .stream import volume_of

__all__ = ["KSpaceRun", "crop_size", "write_kspace_outputs", "save_complex", "save_reconstruction_h5", "save_sidecar",
           "run_info"]


def crop_size(crop: int | Sequence[int] | None, shape: tuple[int, int]) -> tuple[int, int] | None:
    """``crop`` as (h, w) (an int is square: ``320`` -> (320, 320), the fastMRI convention), checked against
    the slice ``shape`` before any compute; ``None`` stays ``None`` (no crop)."""
    if crop is None:
        return None
    size = (crop, crop) if isinstance(crop, (int, np.integer)) else tuple(crop)
    if len(size) != 2 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in size):
        raise InputError(f"--crop must be a positive integer (or (h, w) in Python), got {crop!r}")
    h, w = int(size[0]), int(size[1])
    if h > shape[0] or w > shape[1]:
        raise InputError(f"--crop {h}x{w} is larger than the {shape[0]}x{shape[1]} slices")
    return h, w


@dataclass
class KSpaceRun:
    """A k-space reconstruction in output (k-space) units, slices first.

    ``image`` (S, H, W) complex64; ``zerofilled`` and ``std`` (S, H, W) float32 magnitudes; ``scale`` the
    factor that mapped the data to the model's scale (the panel is drawn on that scale); ``info`` the
    sidecar's content.
    """

    image: np.ndarray
    zerofilled: np.ndarray
    std: np.ndarray | None
    scale: float
    info: dict[str, Any] = field(default_factory=dict)


def save_complex(path: str | Path, image: np.ndarray) -> Path:
    """The complex image (S, H, W) as complex64 .npy, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(image, dtype=np.complex64), allow_pickle=False)
    return Path(path)


def save_reconstruction_h5(path: str | Path, magnitude: np.ndarray, crop: tuple[int, int] | None = None) -> Path:
    """fastMRI-style .h5: dataset ``reconstruction`` (S, H', W') float32, centre-cropped to ``crop``, atomically."""
    try:
        import h5py
    except ImportError:
        raise InputError("writing the fastMRI .h5 output needs h5py: pip install h5py") from None
    rec = np.ascontiguousarray(center_crop(np.asarray(magnitude, dtype=np.float32), crop))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=rec)
            f.attrs["medscore_version"] = __version__
            f.attrs["crop"] = "none" if crop is None else f"{crop[0]}x{crop[1]}"
    return Path(path)


def save_sidecar(path: str | Path, info: dict[str, Any]) -> Path:
    """``info`` as indented JSON, atomically."""
    text = json.dumps(info, indent=2, default=str) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def run_info(prior: Any, opts: Any, task: str = "mri") -> dict[str, Any]:
    """The sidecar's version, model (name, weights SHA-256, input channels), preset, sampler, network precision
    and seed for a run of ``opts`` (:class:`~medscore.solvers.SamplerOptions`) with ``prior`` (a loaded model)."""
    from ..priors.store import bundled_label
    from ..nets.accelerate import resolve_precision
    from ..solvers import presets_of

    folder = Path(prior.path).parent
    bundled = bundled_label(folder)
    model = {"name": bundled or folder.name, "path": None if bundled else str(folder),
             "sha256": prior.meta.get("sha256"), "in_channels": int(prior.meta.get("model", {}).get("in_channels", 1))}
    preset = opts.resolve(task, presets_of(prior.model))
    sampler = {k: v for k, v in preset.to_dict().items() if k not in ("tasks", "note")}
    device = next(prior.model.parameters()).device
    precision = "fp32" if resolve_precision(opts.precision, device) is None else "bf16"
    return {"medscore_version": __version__, "model": model, "preset": preset.name, "sampler": sampler,
            "precision": precision, "seed": opts.seed}


def _check_finite(run: KSpaceRun) -> None:
    arrays = {"complex image": run.image, "zero-filled image": run.zerofilled, "std": run.std}
    for name, arr in arrays.items():
        if arr is not None and not np.isfinite(arr).all():
            raise NonFiniteError(f"the {name} holds NaN/inf values after unscaling; nothing was written")


def write_kspace_outputs(plan: OutputPlan, run: KSpaceRun, crop: tuple[int, int] | None = None) -> dict[str, Path]:
    """Write every output of a k-space run (see the module docstring); the sidecar last, listing the others."""
    _check_finite(run)
    n, h, w = run.image.shape
    magnitude = np.abs(run.image).astype(np.float32)
    geometry = Scan(np.empty((h, w, n), dtype=np.float32), np.eye(4), None, "kspace", None)
    volumes = {"output": volume_of(magnitude, 2, (h, w, n)), "zerofilled": volume_of(run.zerofilled, 2, (h, w, n))}
    if run.std is not None:
        volumes["std"] = volume_of(run.std, 2, (h, w, n))
    mid = n // 2
    panel = Panel([run.zerofilled[mid] / run.scale, magnitude[mid] / run.scale], ["zero-filled", "medscore"])
    written = {"complex": save_complex(plan.path("complex"), run.image),
               "fastmri": save_reconstruction_h5(plan.path("fastmri"), magnitude, crop)}
    written.update(write_outputs(geometry, plan, volumes, panel))
    info = {**run.info, "crop": None if crop is None else list(crop),
            "outputs": {name: p.name for name, p in written.items()}}
    written["sidecar"] = save_sidecar(plan.path("sidecar"), info)
    return written
