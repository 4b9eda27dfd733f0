"""Measured k-space (single or multi coil) as the multi-coil task solves it: coil maps per batch, SENSE data
consistency, the complex image kept beside its magnitude.

For multi coil the maps are estimated batch by batch by ESPIRiT from the measured samples (:class:`CoilMaps`), or
read from an opened file; for single coil the one-coil "map" is the image's smooth phase (:class:`PhaseMap`,
:func:`~medscore.tasks.coil_phase.single_coil_phase_map`). Either way the image to solve is nearly real, and the
complex image is rotated back to the image itself (or to the given maps' convention).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..physics import channels_to_complex, normalize_smaps
from ..physics.coils import calibration_width
from ..solvers import LevelCallback, SamplerOptions, ScoreModel, SolverResult
from .base import KSpaceStack, SliceReader, StackSolve
from .coil_phase import estimate_reconstruction_maps, single_coil_phase_map, tv_image_phase

__all__ = ["CoilMaps", "PhaseMap", "prepare_measured"]


class CoilMaps:
    """Coil maps for batches of slices, scaled to ``sum_k |S_k|^2 = 1`` where non-zero (ESPIRiT's convention:
    the image is then the coil combination whose magnitude fastMRI's root-sum-of-squares references measure).

    ``file`` None: estimated slice by slice by ESPIRiT from the measured k-space of the batch, as the benchmark
    does (:func:`medscore.tasks.coil_phase.estimate_reconstruction_maps`: ESPIRiT, not cropped, the image's smooth phase
    from a short TV-CS reconstruction moved into the maps, so the image to reconstruct is nearly real); else read
    from the file, (S, C, H, W) or (C, H, W)."""

    def __init__(self, file: SliceReader | None = None) -> None:
        self.file = file
        self.seconds = 0.0
        self._shared = file.read(slice(None)) if file is not None and len(file.shape) == 3 else None

    @property
    def source(self) -> str:
        if self.file is None:
            return "estimated per slice by ESPIRiT from the fully sampled centre rectangle (medscore.physics.espirit)"
        return f"file {self.file.path.name}" if self.file.path.suffix else "array"

    def check_estimable(self, mask: np.ndarray) -> None:
        """Before any compute: the fully sampled centre is large enough for ESPIRiT."""
        if self.file is not None:
            return
        calibration_width(mask)

    def batch(self, sl: slice, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps (B, C, H, W) complex64 to solve slices ``sl`` with, from their measured k-space ``y`` (B, C, H, W)
        on the [0, 1] image scale and sampling ``mask`` (H, W); and the phase (B, 1, H, W) moved into them.

        Estimated maps carry the image's smooth phase already (:mod:`medscore.tasks.coil_phase`); the phase returned is
        1.
        A file's maps are normalised and get the smooth phase of a TV-CS reconstruction with them
        (:func:`~medscore.tasks.coil_phase.tv_image_phase`): the solved image times the returned phase is the image in
        the
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
    (:func:`~medscore.tasks.coil_phase.single_coil_phase_map`), with the interface of :class:`CoilMaps`."""

    source = "one-coil map: the image's smooth phase from a short TV-CS reconstruction (single coil)"

    def __init__(self) -> None:
        self.seconds = 0.0

    def check_estimable(self, mask: np.ndarray) -> None:
        """Any mask will do."""

    def batch(self, sl: slice, y: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The map (B, 1, H, W) to solve slices ``sl`` with, and the factor the solved image is multiplied by to give
        the image itself: the same map."""
        t0 = time.perf_counter()
        phase = single_coil_phase_map(torch.from_numpy(y), torch.from_numpy(mask))
        self.seconds += time.perf_counter() - t0
        return phase, phase


def prepare_measured(task: Any, stack: KSpaceStack, device: torch.device, opts: SamplerOptions,
                     smaps: SliceReader | None) -> StackSolve:
    """Batches of measured k-space solved by ``task`` (the multi-coil task) with coil maps: ESPIRiT per batch, or
    ``smaps`` (an opened file's maps), or for single coil the image's smooth phase. The estimate streamed is the
    magnitude; the complex image (file units) fills ``extras["complex"]``; ``info`` holds the maps' source and
    seconds. Baseline: the zero-filled root-sum-of-squares image."""
    maps = PhaseMap() if stack.single_coil else CoilMaps(smaps)
    maps.check_estimable(stack.mask)
    m, scale = stack.mask, np.float32(stack.scale)
    m_t = torch.from_numpy(m).to(device)
    image = np.empty((len(stack), *stack.shape), dtype=np.complex64)
    info: dict[str, Any] = {"coil_maps": maps.source}

    def solve_rows(model: ScoreModel, rows: slice, opts_rows: SamplerOptions,
                   callback: LevelCallback | None) -> SolverResult:
        y = stack.coils(rows) * m / scale
        maps_b, phase = maps.batch(rows, y, m)
        res = task.solve(model, torch.from_numpy(y).to(device), m_t, opts_rows, real_image=False,
                         smaps=maps_b.to(device), noise_std=stack.noise_std / stack.scale, callback=callback)
        image[rows] = (channels_to_complex(res.mean)[:, 0].cpu() * phase[:, 0]).numpy() * scale
        info["coil_maps_seconds"] = maps.seconds
        return res

    return StackSolve(solve_rows, stack.zerofilled, task.chains(opts), simulated=False, channels=2,
                      extras={"complex": image}, info=info)
