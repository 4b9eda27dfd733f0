"""Output naming and writing, in one place: ``OUT``, ``OUT_<name>.nii.gz``, ``OUT_panel.png`` and, for k-space
runs, ``OUT_complex.npy``, ``OUT.h5`` and ``OUT.json`` (OUT without its .nii.gz); a k-space run with ``OUT =
NAME.h5`` writes that fastMRI file alone.

Every file a run may write is known before any compute (:class:`OutputPlan`): none may overwrite an input or
is an existing folder, and each folder is checked writable. Results are checked finite before the first file is
written, and a run's files are written as one :func:`~medscore.io.atomic.atomic_group`: when one fails (a full
disk), none of them is left.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError, MedscoreError
from ..io.atomic import atomic_group, check_free, check_not_input
from ..io.scans import Scan, output_paths, save_like
from ..io.pictures import save_panel

__all__ = ["RunReport", "DERIVED", "KSPACE_FILES", "IMAGE_OUTPUTS", "KSPACE_OUTPUTS", "FASTMRI_ONLY", "OutputPlan",
           "plan_outputs", "default_output", "check_writable", "write_outputs", "Panel"]

DERIVED = ("zerofilled", "masked", "noisy", "std")
"""Names of the NIfTI files written beside ``OUT`` (as ``OUT_<name>.nii.gz``) by some task."""
KSPACE_FILES = {"complex": "_complex.npy", "fastmri": ".h5", "sidecar": ".json"}
"""Other files of k-space runs, named ``<OUT stem><suffix>``: complex image, fastMRI .h5, JSON sidecar."""
IMAGE_OUTPUTS = ("output", *DERIVED, "panel")
"""Every file an image run may write (a task writes its ``baseline_output`` of :data:`DERIVED`, and ``std``)."""
KSPACE_OUTPUTS = ("output", "zerofilled", "std", "panel", *KSPACE_FILES)
"""Every file a k-space run with a NIfTI ``OUT`` may write."""
FASTMRI_ONLY = ("fastmri",)
"""The one file of a k-space run with ``OUT = NAME.h5``: that fastMRI file (provenance in its attributes)."""


@dataclass
class RunReport:
    """What a file-level run wrote and measured. ``metrics[method][metric]`` = (mean, std) over slices; ``info``:
    what the task's own steps chose, by name (denoising: the noise level given and on the model's scale)."""

    task: str
    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    nfe: int = 0
    seconds: float = 0.0
    slices: int = 0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputPlan:
    """The paths of one run: ``output`` (``OUT``) and the other ``files`` by name (derived NIfTIs, the PNG panel,
    the k-space files)."""

    output: Path
    files: tuple[str, ...] = IMAGE_OUTPUTS

    @property
    def stem(self) -> str:
        name = self.output.name
        return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else self.output.stem

    def path(self, name: str) -> Path:
        """``output`` -> OUT, ``panel`` -> OUT_panel.png, :data:`KSPACE_FILES` -> e.g. OUT_complex.npy, OUT.h5,
        OUT.json (OUT without .nii.gz), any other name -> OUT_<name>.nii.gz."""
        if name == "output" or (name == "fastmri" and self.files == FASTMRI_ONLY):
            return self.output
        if name == "panel":
            return self.output.with_name(f"{self.stem}_panel.png")
        if name in KSPACE_FILES:
            return self.output.with_name(self.stem + KSPACE_FILES[name])
        return self.output.with_name(f"{self.stem}_{name}.nii.gz")

    def all_paths(self) -> dict[str, Path]:
        """Every file of ``files``, by name."""
        return {name: self.path(name) for name in self.files}


def default_output(input_path: str | Path, out: str | Path | None, suffix: str) -> Path:
    """``out`` if given, else ``<input stem>_<suffix>.nii.gz`` next to the input."""
    p = Path(input_path)
    if out is None and p.suffix.lower() == ".h5":
        return p.with_name(f"{p.stem}_{suffix}.nii.gz")
    return output_paths(p, out, suffix)


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and a temporary file in it, then remove it; InputError if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".medscore-check-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise InputError(f"cannot write to the output folder {folder}: {reason}; nothing was computed") from None


def plan_outputs(out: str | Path, *inputs: str | Path | np.ndarray | None,
                 files: tuple[str, ...] = IMAGE_OUTPUTS) -> OutputPlan:
    """Pre-flight: ``out`` is NIfTI (or .h5 for a :data:`FASTMRI_ONLY` plan), none of the run's ``files``
    overwrites an input or is an existing folder, and their folder is writable (created if missing)."""
    out = Path(out)
    suffixes = (".h5",) if files == FASTMRI_ONLY else (".nii", ".nii.gz")
    if not out.name.lower().endswith(suffixes):
        raise InputError(f"output must be a {' or '.join(suffixes)} file, got {out.name}")
    plan = OutputPlan(out, files)
    paths = plan.all_paths().values()
    given = [p for p in inputs if isinstance(p, (str, Path))]
    for p in paths:
        check_not_input(p, *given)
    check_writable(out.parent)
    check_free(paths)  # a folder in the way of a panel or sidecar: refused now, not after the solve
    return plan


@dataclass
class Panel:
    """A PNG of 2D images side by side, with titles and display windows (None: (0, 1) each)."""

    images: Sequence[np.ndarray]
    titles: Sequence[str]
    windows: Sequence[tuple[float, float]] | None = None


def write_outputs(scan: Scan, plan: OutputPlan, volumes: dict[str, np.ndarray], panel: Panel) -> dict[str, Path]:
    """Write each volume (scan-shaped, output units) as ``plan.path(name)`` with the scan's geometry,
    then the panel; all files as one atomic group (a caller's group includes them). NaN/inf anywhere is refused
    before the first file."""
    for name, vol in volumes.items():
        if not np.isfinite(vol).all():
            raise MedscoreError(f"the {name} volume holds NaN/inf values after unscaling; nothing was written")
    with atomic_group():
        written = {name: save_like(scan, vol, plan.path(name)) for name, vol in volumes.items()}
        written["panel"] = save_panel(panel.images, panel.titles, plan.path("panel"), panel.windows)
    return written
