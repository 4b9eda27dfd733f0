"""Outputs of k-space runs that researchers can use: complex image, magnitude NIfTI, fastMRI .h5, JSON sidecar.

For ``OUT = rec.nii.gz`` (names from :class:`~medscore.pipeline.outputs.OutputPlan`):

- ``rec.nii.gz``: the magnitude (H, W, S), identity affine (k-space carries no patient geometry), as
  before; ``rec_zerofilled.nii.gz`` (root-sum-of-squares of the zero-filled coil images), ``rec_std.nii.gz``
  with several samples, ``rec_panel.png``;
- ``rec_complex.npy``: the complex image (S, H, W) complex64, in k-space units (orthonormal FFT);
- ``rec.h5``: dataset ``reconstruction`` (S, H', W') float32, the magnitude centre-cropped to ``crop``
  (fastMRI's submission format; fastMRI's ``evaluate.py`` pairs files by name, so ``-o recon/file1000.nii.gz``
  gives the ``recon/file1000.h5`` it expects), ``std`` (same crop) with several samples, and the sidecar's
  content as the JSON attribute ``medscore_provenance``;
- ``rec.json``: how the result was made (model, sampler, NFE, mask, coil maps, seed, timing, version).

For ``OUT = rec.h5`` only ``rec.h5`` is written, as above (its provenance attribute stands in for the sidecar).

Every file is written atomically, all of a run as one group (none is left when one fails), and nothing is
written unless every array is finite.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError, NonFiniteError
from ..io.atomic import atomic_group, atomic_path
from ..metrics import center_crop
from ..io.scans import Scan
from .outputs import FASTMRI_ONLY, OutputPlan, Panel, write_outputs
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
    sidecar's content; ``slice_axis`` where the slices go in the NIfTI volumes (2: (H, W, S); the readout axis of a 3D
    Cartesian file, so that its volume keeps the file's axis order).
    """

    image: np.ndarray
    zerofilled: np.ndarray
    std: np.ndarray | None
    scale: float
    info: dict[str, Any] = field(default_factory=dict)
    slice_axis: int = 2


def save_complex(path: str | Path, image: np.ndarray) -> Path:
    """The complex image (S, H, W) as complex64 .npy, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            np.save(f, np.ascontiguousarray(image, dtype=np.complex64), allow_pickle=False)
        except OSError as exc:
            if exc.strerror:
                raise
            # numpy's short write ("512 requested and 171 written") says neither why nor what
            raise OSError(f"the file was cut short ({exc}): the disk is full or a file size limit was "
                          "reached") from None
    return Path(path)


def save_reconstruction_h5(path: str | Path, magnitude: np.ndarray, crop: tuple[int, int] | None = None, *,
                           std: np.ndarray | None = None, provenance: dict[str, Any] | None = None) -> Path:
    """fastMRI-style .h5: dataset ``reconstruction`` (S, H', W') float32, centre-cropped to ``crop`` (and ``std``
    likewise, when given), ``provenance`` as a JSON attribute; atomically. The file is built in memory and written
    in one go, so a failed write (a full disk) is one OutputError (:func:`~medscore.io.atomic.atomic_path`), not
    HDF5's multi-line errors, and leaves no file."""
    try:
        import h5py
    except ImportError:
        raise InputError("writing the fastMRI .h5 output needs h5py: pip install h5py") from None
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for name, arr in {"reconstruction": magnitude, "std": std}.items():
            if arr is not None:
                f.create_dataset(name, data=np.ascontiguousarray(center_crop(np.asarray(arr, np.float32), crop)))
        f.attrs["medscore_version"] = __version__
        f.attrs["crop"] = "none" if crop is None else f"{crop[0]}x{crop[1]}"
        if provenance is not None:
            f.attrs["medscore_provenance"] = json.dumps(provenance, default=str)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())
    return Path(path)


def save_sidecar(path: str | Path, info: dict[str, Any]) -> Path:
    """``info`` as indented JSON, atomically."""
    text = json.dumps(info, indent=2, default=str) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def run_info(prior: Any, opts: Any, task: str = "mri", shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """The sidecar's version, model (name, weights SHA-256, input channels), preset, sampler, network precision
    and seed for a run of ``opts`` (:class:`~medscore.solvers.SamplerOptions`) with ``prior`` (a loaded model) on
    slices of ``shape`` (H, W)."""
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
    precision = "fp32" if resolve_precision(opts.precision, device, prior.model, shape) is None else "bf16"
    return {"medscore_version": __version__, "model": model, "preset": preset.name, "sampler": sampler,
            "precision": precision, "seed": opts.seed}


def _check_finite(run: KSpaceRun) -> None:
    arrays = {"complex image": run.image, "zero-filled image": run.zerofilled, "std": run.std}
    for name, arr in arrays.items():
        if arr is not None and not np.isfinite(arr).all():
            raise NonFiniteError(f"the {name} holds NaN/inf values after unscaling; nothing was written")


def write_kspace_outputs(plan: OutputPlan, run: KSpaceRun, crop: tuple[int, int] | None = None) -> dict[str, Path]:
    """Write every output of a k-space run (see the module docstring) as one atomic group; the sidecar last,
    listing the others. A :data:`~.outputs.FASTMRI_ONLY` plan writes the .h5 alone."""
    _check_finite(run)
    magnitude = np.abs(run.image).astype(np.float32)
    provenance = {**run.info, "crop": None if crop is None else list(crop)}
    h5 = {"std": run.std, "provenance": provenance}
    if plan.files == FASTMRI_ONLY:
        return {"fastmri": save_reconstruction_h5(plan.path("fastmri"), magnitude, crop, **h5)}
    n, h, w = run.image.shape
    shape = [h, w]
    shape.insert(run.slice_axis, n)
    geometry = Scan(np.empty(shape, dtype=np.float32), np.eye(4), None, "kspace", None)
    volumes = {"output": volume_of(magnitude, run.slice_axis, tuple(shape)),
               "zerofilled": volume_of(run.zerofilled, run.slice_axis, tuple(shape))}
    if run.std is not None:
        volumes["std"] = volume_of(run.std, run.slice_axis, tuple(shape))
    mid = n // 2
    panel = Panel([run.zerofilled[mid] / run.scale, magnitude[mid] / run.scale], ["zero-filled", "medscore"])
    with atomic_group():
        written = {"complex": save_complex(plan.path("complex"), run.image),
                   "fastmri": save_reconstruction_h5(plan.path("fastmri"), magnitude, crop, **h5)}
        written.update(write_outputs(geometry, plan, volumes, panel))
        info = {**provenance, "outputs": {name: p.name for name, p in written.items()}}
        written["sidecar"] = save_sidecar(plan.path("sidecar"), info)
    return written
