"""A scan file (NIfTI, DICOM series, NumPy) as a source of the file driver: open, scale, stack, write.

Slicing: a 3D scan (X, Y, Z) is cut along ``axis`` (default 2, the last stored axis) into 2D slices in stored voxel
order; for ``axis=2`` each slice is (X, Y) and a (W,) line mask indexes Y. Slices are scaled per volume with the
model's intensity rule (percentiles 0 and 99.5 -> 0 and 1) and mapped back afterwards, so outputs are in the
scanner's units, with the input's affine and header. Metrics (PSNR, SSIM, NMSE) are computed on the [0, 1] scale
against the input, the fully sampled reference of retrospective experiments.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics as M
from ..errors import InputError
from ..checks import check_slice_shape
from ..io.scans import Scan, load_scan
from ..tasks import ImageStack, StackSolve, Task
from ..transforms import RobustScaleIntensity, unscale_intensity
from .outputs import IMAGE_OUTPUTS, OutputPlan, Panel, RunReport, default_output, plan_outputs, write_outputs
from .stream import Streamed, slices_of, volume_of

__all__ = ["ScanSource"]


class ScanSource:
    """Slices of one scan along ``axis``; ``series_uid`` picks one series of a DICOM folder."""

    complex_data = False  # image tasks take the magnitude prior
    channels = 1

    def __init__(self, path: str | Path, axis: int = 2, series_uid: str | None = None) -> None:
        self.path, self.axis, self.series_uid = Path(path), axis, series_uid
        self.scan: Scan | None = None
        self.ref = np.empty((0, 0, 0), dtype=np.float32)
        self.scale = (0.0, 1.0)

    @contextlib.contextmanager
    def open(self) -> Iterator[ScanSource]:
        """Read the scan and check that its slices are large enough."""
        self.scan = load_scan(self.path, self.series_uid)
        check_slice_shape(self.path.name, self.scan.data.shape, self.axis)
        yield self

    @property
    def slice_shape(self) -> tuple[int, int]:
        assert self.scan is not None, "open the source first"
        return slices_of(self.scan.data, self.axis).shape[1:]  # type: ignore[return-value]

    def output_plan(self, out: str | Path | None, task: Task, input_files: tuple[Any, ...]) -> OutputPlan:
        """``out`` (default ``<scan>_<task suffix>.nii.gz``) and the side files the task writes (its baseline, the
        std, the panel), checked before any compute."""
        files = ("output", task.baseline_output, "std", "panel") if task.baseline_output else IMAGE_OUTPUTS
        return plan_outputs(default_output(self.path, out, task.output_suffix), self.path, *input_files, files=files)

    def stack(self, prior: Any, _inputs: Any) -> ImageStack:
        """The slices on the model's [0, 1] scale (the prior's percentiles), as an (N, H, W) float32 stack that
        carries the scale ``(lo, hi)``, the scan's two percentiles."""
        assert self.scan is not None, "open the source first"
        channels = int(prior.meta.get("model", {}).get("in_channels", 1))
        if channels != 1:
            raise InputError(f"model {Path(prior.path).parent.name} takes {channels}-channel (complex) images: scans "
                             "are solved with a 1-channel (magnitude) prior; give its k-space instead")
        scaler = RobustScaleIntensity(*prior.percentiles)
        scaled = scaler(self.scan.data)
        self.scale = scaler.last_scale
        self.ref = slices_of(scaled, self.axis).astype(np.float32)
        size = prior.image_size
        if prior.meta.get("spatial") == "resize" and max(self.ref.shape[1:]) > 2 * size:
            warnings.warn(f"the model saw {size} px images; these slices are {self.ref.shape[1:]}: pixel scales differ")
        return ImageStack(self.ref, self.scale)

    def unscaled(self, stack: np.ndarray) -> np.ndarray:
        """A [0, 1]-scale stack as a volume in the scanner's units."""
        assert self.scan is not None
        return volume_of(unscale_intensity(stack, self.scale), self.axis, self.scan.data.shape)

    def write(self, report: RunReport, plan: OutputPlan, task: Task, prepared: StackSolve, res: Streamed,
              _info: dict[str, Any]) -> None:
        """Metrics (simulated measurements only), then the estimate, the baseline, the std and the panel; what the
        task recorded of its own steps (``prepared.info``) goes into the report."""
        report.info.update(prepared.info)
        panel = [(task.baseline_title, prepared.baseline), ("medscore", res.mean)]
        extras: dict[str, np.ndarray] = {}
        if prepared.simulated:
            self.score(report, {task.baseline_title: prepared.baseline, "medscore": res.mean})
            panel += [("reference", self.ref), ("|error| x5", np.abs(res.mean - self.ref))]
            extras[task.baseline_output] = prepared.baseline
        self._write_volumes(report, plan, res, extras, panel)

    def _write_volumes(self, report: RunReport, plan: OutputPlan, res: Streamed, extras: dict[str, np.ndarray],
                       panel: list[tuple[str, np.ndarray]]) -> None:
        """``OUT`` (the estimate), ``OUT_<name>`` for ``extras``, ``OUT_std`` and the panel of the middle slice."""
        assert self.scan is not None
        lo, hi = self.scale
        volumes = {"output": self.unscaled(res.mean), **{k: self.unscaled(v) for k, v in extras.items()}}
        if res.std is not None:
            volumes["std"] = volume_of(res.std * (hi - lo), self.axis, self.scan.data.shape)
            panel = [*panel, ("std", res.std)]
        mid = len(self.ref) // 2
        titles = [t for t, _ in panel]
        images = [im[mid] for _, im in panel]
        wins = [_window(t, im) for t, im in zip(titles, images)]
        report.outputs.update(write_outputs(self.scan, plan, volumes, Panel(images, titles, wins)))

    def score(self, report: RunReport, estimates: dict[str, np.ndarray]) -> None:
        """PSNR / SSIM / NMSE of each estimate against the input, (mean, std) over slices."""
        for method, est in estimates.items():
            report.metrics[method] = {name: M.summarize(np.atleast_1d(fn(self.ref, est)))
                                      for name, fn in M.METRICS.items()}


def _window(title: str, image: np.ndarray) -> tuple[float, float]:
    """The display window of a panel tile: errors at 0-0.2, the std at its own range, images at 0-1."""
    if title.startswith("|error|"):
        return 0.0, 0.2
    if title == "std":
        return 0.0, max(float(image.max()), 1e-6)
    return 0.0, 1.0
