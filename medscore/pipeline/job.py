"""One scan-file job: model, scaling, slices, streaming solve, unscaling, outputs and metrics."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import metrics as M
from ..checkpoint import LoadedModel
from ..models import load_prior
from ..scanio import Scan, load_scan
from ..solvers import SamplerOptions
from ..devices import resolve_device
from ..transforms import RobustScaleIntensity, unscale_intensity
from ..validation import check_slice_shape
from .memory import resolve_batch_size
from .outputs import OutputPlan, Panel, write_outputs
from .volume import BatchSolver, Progress, Streamed, slices_of, stream, volume_of

__all__ = ["RunReport", "ScanJob", "slice_seed", "batch_options", "model_width"]


@dataclass
class RunReport:
    """What a file-level run wrote and measured. ``metrics[method][metric]`` = (mean, std) over slices."""

    task: str
    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    nfe: int = 0
    seconds: float = 0.0
    slices: int = 0


def slice_seed(seed: int, index: int) -> int:
    """A generator seed for slice ``index`` of a run seeded with ``seed`` (independent of batching)."""
    return int(np.random.SeedSequence([seed % 2**64, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def batch_options(opts: SamplerOptions, sl: slice) -> SamplerOptions:
    """``opts`` for the slices ``sl``: with per-slice seeds when the solver supports them
    (``SamplerOptions.slice_seeds``), so a slice's result does not depend on its batch."""
    if "slice_seeds" not in {f.name for f in dataclasses.fields(opts)}:
        return opts
    return dataclasses.replace(opts, slice_seeds=tuple(slice_seed(opts.seed, i) for i in range(sl.start, sl.stop)))


def model_width(prior: LoadedModel) -> int:
    """Feature channels of the network's first level (``ngf``), for the memory estimate."""
    return int(prior.meta.get("model", {}).get("ngf", 64))


class ScanJob:
    """A scan on the model's [0, 1] scale as an (N, H, W) stack of slices along ``axis``."""

    def __init__(self, scan_path: str | Path, model, device: str, axis: int, series_uid: str | None = None) -> None:
        self.device = resolve_device(device)
        self.scan: Scan = load_scan(scan_path, series_uid)
        check_slice_shape(Path(scan_path).name, self.scan.data.shape, axis)
        self.prior: LoadedModel = load_prior(model, self.device)
        self.axis = axis
        scaler = RobustScaleIntensity(*self.prior.percentiles)
        scaled = scaler(self.scan.data)
        self.scale = scaler.last_scale
        self.ref = slices_of(scaled, axis).astype(np.float32)  # (N, H, W) on [0, 1]
        size = self.prior.image_size
        if self.prior.meta.get("spatial") == "resize" and max(self.ref.shape[1:]) > 2 * size:
            warnings.warn(f"the model saw {size} px images; these slices are {self.ref.shape[1:]}: pixel scales differ")

    @property
    def shape(self) -> tuple[int, int]:
        return self.ref.shape[1:]  # type: ignore[return-value]

    def batch(self, sl: slice) -> torch.Tensor:
        """Slices ``sl`` as a (B, 1, H, W) tensor on the job's device."""
        return torch.from_numpy(self.ref[sl][:, None]).to(self.device)

    def run(self, solve: BatchSolver, batch_size: int | str, progress: Progress | None, chains: int) -> Streamed:
        """Stream all slices through ``solve`` (``batch_size`` an int or ``"auto"``)."""
        n = len(self.ref)
        bs = resolve_batch_size(batch_size, n, self.shape, self.device, model_width(self.prior), chains)
        return stream(n, self.shape, solve, bs, progress)

    def unscaled(self, stack: np.ndarray) -> np.ndarray:
        """A [0, 1]-scale stack as a volume in the scanner's units."""
        return volume_of(unscale_intensity(stack, self.scale), self.axis, self.scan.data.shape)

    def write(self, report: RunReport, plan: OutputPlan, res: Streamed, extras: dict[str, np.ndarray],
              panel: list[tuple[str, np.ndarray]]) -> None:
        """Write ``OUT`` (the estimate), ``OUT_<name>`` for ``extras``, ``OUT_std`` and the panel of the middle slice."""
        lo, hi = self.scale
        volumes = {"output": self.unscaled(res.mean), **{k: self.unscaled(v) for k, v in extras.items()}}
        if res.std is not None:
            volumes["std"] = volume_of(res.std * (hi - lo), self.axis, self.scan.data.shape)
            panel = [*panel, ("std", res.std)]
        mid = len(self.ref) // 2
        titles = [t for t, _ in panel]
        images = [im[mid] for _, im in panel]
        wins = [(0.0, 0.2) if t.startswith("|error|") else ((0.0, max(float(im.max()), 1e-6)) if t == "std" else (0.0, 1.0))
                for t, im in zip(titles, images)]
        report.outputs.update(write_outputs(self.scan, plan, volumes, Panel(images, titles, wins)))

    def score(self, report: RunReport, estimates: dict[str, np.ndarray]) -> None:
        """PSNR / SSIM / NMSE of each estimate against the input, (mean, std) over slices."""
        for method, est in estimates.items():
            report.metrics[method] = {name: M.summarize(np.atleast_1d(fn(self.ref, est))) for name, fn in M.METRICS.items()}
