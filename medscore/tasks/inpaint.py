"""Inpainting: fill the pixels where a 0/1 mask is 0; known pixels are kept.

Consistency replaces known pixels by ``y + sigma z`` on noisy iterates and by ``y`` on denoised
estimates; the warm start fills unknown pixels with the mean of the known ones (scattered pixels) or by
biharmonic inpainting (large holes), plus noise at the preset's ``sigma_start``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..checks import check_mask_or_missing
from ..physics import DataConsistency, Inpainting, expand_mask
from ..physics.inpainting import largest_hole_radius
from ..rng import Generators
from ..sampling import Guidance, Preset
from ..solvers import (WARM_START, GuidanceFactory, LevelCallback, SamplerOptions, ScoreModel, SolverResult,
                       repeat_chains, solve)
from .base import (ImageStack, Method, Problem, StackSolve, Task, TaskInputs, TaskSpec, batch_of, per_image,
                   register_task)

__all__ = ["InpaintTask", "InpaintInputs"]

Consistency = Literal["noisy", "hard"]
# Holes wider than this (in pixels, from their farthest pixel to the nearest known one) use the presets'
# ``inpaint-hole`` settings and the biharmonic warm start. 70 % random missing pixels reach radius 3-3.6, 80 % 4-5,
# 90 % 6-8, a band of w missing rows w / 2, the benchmark's central box 23. Validation slab and the EPI's validation
# slice (``fast``, scattered-pixel settings against hole settings): bands of 10 / 16 rows 26.3 / 21.9 against 28.5 /
# 24.7 dB (EPI 21.2 / 16.6 against 27.0 / 24.4); random pixels, 70 % 31.44 against 31.05 (EPI 26.09 / 26.28), 80 %
# 29.45 / 29.29 (24.36 / 24.43), 90 % 22.75 / 25.69 (22.28 / 22.44). Radii are square roots of integers; at 4.5,
# bands of 9 or more rows (radius 5) and 90 % missing pixels are holes, 70 % missing pixels never are (radius 4.47
# needs ~63 missing pixels in a disc: 0.7^63 ~ 2e-10 per pixel), and 80 % rarely (either setting is level there).
# The threshold was 8 until 2026-11-30.
HOLE_RADIUS = 4.5


@dataclass(frozen=True)
class InpaintInputs(TaskInputs):
    """The known pixels: a 0/1 ``mask`` (H, W) for every slice (1 = known), or a random ``missing`` fraction of
    pixels per slice, seeded by ``mask_seed``; exactly one of the two."""

    FILES = ("mask",)
    mask: Any = None
    missing: float | None = None
    mask_seed: int = 0


@register_task
class InpaintTask(Task):
    """Inpainting of missing pixels (a file mask, random pixels or a central box)."""

    name = "inpaint"
    label = "inpainting"
    # --volume: chosen on the external validation slabs at `fast`, 70 % missing (z_tv 0 / 0.003 / 0.005 / 0.01):
    # EPI 26.20 / 26.73 / 26.91 / 27.02 dB, INIA19 29.79 / 30.34 / 30.40 / 30.00 (scripts/volume_coherence.py)
    volume_z_tv = 0.005
    output_suffix = "inpainted"
    progress_label = "inpainting"
    baseline_method = "masked input"
    baseline_title = "input"
    baseline_output = "masked"
    inputs_type = InpaintInputs

    def operator(self, mask: Any) -> Inpainting:
        """``y = m x`` with ``mask`` (H, W) or per image (B, 1, H, W), 1 = known pixel."""
        return Inpainting(mask)

    def warm_start(self, op: Inpainting, y: Tensor, *, hole: bool = False) -> Tensor:
        """The known pixels, the unknown ones filled with the mean of the known ones of their image, or with ``hole``
        by scikit-image's biharmonic inpainting: the best classical fill of a large hole, from which the hole
        presets start at a moderate level (validation: 20 levels from sigma 0.5 gained 1.0 dB over 20 from sigma 10
        on a mean-filled central box; from the mean fill the same chain lost 4 dB). For scattered pixels the mean
        fill stays: from the biharmonic one the deterministic chain lost 0.7 dB (70 % missing)."""
        m = op.A(torch.ones_like(y))
        if hole:
            from ..baselines import inpaint_biharmonic

            shape = (-1, *y.shape[-2:])
            planes = zip(y.detach().cpu().reshape(shape).numpy(), m.cpu().reshape(shape).numpy())
            filled = np.stack([inpaint_biharmonic(plane, known) for plane, known in planes])  # per 2D plane
            return torch.as_tensor(filled, dtype=y.dtype, device=y.device).view_as(y)
        fill = (y.sum(dim=(-2, -1), keepdim=True) / m.sum(dim=(-2, -1), keepdim=True).clamp_min(1))
        return y + (1 - m) * fill

    def guidance(self, op: Inpainting, y: Tensor, *, mode: Consistency = "noisy") -> GuidanceFactory:
        """Known pixels imposed on every chain (per-image masks follow the chains of their image)."""

        def make(g: Generators, n: int, _preset: Preset) -> Guidance:
            return DataConsistency(op.repeat_interleave(n), repeat_chains(y, n), mode=mode, generator=g)

        return make

    def solve(self, model: ScoreModel, image: Tensor, mask: Tensor, opts: SamplerOptions = SamplerOptions(), *,
              consistency: Consistency = "noisy", callback: LevelCallback | None = None) -> SolverResult:
        """Fill the pixels of ``image`` (B, 1, H, W) where ``mask`` is 0: see :func:`medscore.solvers.inpaint`."""
        op = self.operator(mask)
        y = op.A(image)
        key = self.preset_key(mask)
        return solve(model, self.warm_start(op, y, hole=key.endswith("-hole")), opts, key,
                     self.guidance(op, y, mode=consistency), start=WARM_START, callback=callback)

    def preset_key(self, mask: Any) -> str:
        """``inpaint-hole`` when a hole of the batch is large (radius > ``HOLE_RADIUS`` px: far from every known
        pixel the posterior is as wide as the prior, so chains must start high and sample), else ``inpaint``."""
        radius = float(largest_hole_radius(torch.as_tensor(mask)).max())
        return f"{self.name}-hole" if radius > HOLE_RADIUS else self.name

    def degrade(self, spec: TaskSpec, ref: Tensor, seed: int = 0) -> Problem:
        """A central square hole of side ``spec.box`` (a fraction of the smaller side), else a random
        ``spec.missing`` fraction of pixels per image (seeded)."""
        g = torch.Generator().manual_seed(seed)
        n, _, h, w = ref.shape
        if spec.box > 0:
            side = int(round(spec.box * min(h, w)))
            m = torch.ones(h, w)
            m[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side] = 0
            m = m.expand(n, 1, h, w).clone()
        else:
            m = (torch.rand((n, 1, h, w), generator=g) >= spec.missing).float()
        op = self.operator(m)
        y = op.A(ref)
        return Problem(spec, ref, y, y, op, m)

    def solve_problem(self, model: ScoreModel, prob: Problem, opts: SamplerOptions, rows: slice = slice(None), *,
                      method: str | None = None, callback: LevelCallback | None = None) -> SolverResult:
        """Inpainting of the slices ``rows`` with their own masks (one method: ``method`` is ignored)."""
        return self.solve(model, prob.y[rows], prob.mask[rows], opts, callback=callback)

    def classical_methods(self, spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
        """The masked input, biharmonic inpainting (no parameters to tune), nearest training slice."""
        from ..baselines import inpaint_biharmonic, nearest_training_slice

        def nearest(p: Problem) -> tuple[Tensor, int]:
            out = [nearest_training_slice(lambda x, m=p.mask[i]: x * m, p.y[i:i + 1], train_slices,
                                          lambda x, y, m=p.mask[i]: y + (1 - m) * x) for i in range(len(p.ref))]
            return torch.cat(out), 0

        methods: dict[str, Method] = {self.baseline_method: lambda p: (p.baseline, 0),
                                      "biharmonic": lambda p: (per_image(inpaint_biharmonic, p), 0)}
        if train_slices is not None:
            methods["nearest training slice"] = nearest
        return methods

    def check_inputs(self, inputs: InpaintInputs) -> None:
        """A mask or a random missing fraction: exactly one of the two."""
        check_mask_or_missing(inputs.mask, inputs.missing, mask_name="mask", missing_name="missing")

    def slice_masks(self, n: int, shape: tuple[int, int], inputs: InpaintInputs) -> np.ndarray:
        """(N, H, W) masks: one given mask for every slice, or a random ``missing`` fraction per slice."""
        if inputs.mask is None:
            if inputs.missing is None or not 0 < inputs.missing < 1:
                raise InputError("inpainting needs --mask HOLES.npy or --missing FRACTION in (0, 1)")
            rng = np.random.default_rng(inputs.mask_seed)
            return (rng.random((n, *shape)) >= inputs.missing).astype(np.float32)
        return np.broadcast_to(expand_mask(inputs.mask, shape), (n, *shape))

    def prepare_stack(self, stack: ImageStack, device: torch.device, opts: SamplerOptions,
                      inputs: InpaintInputs) -> StackSolve:
        """Remove the pixels where the mask is 0 in every slice, or a random ``missing`` fraction per slice.
        Baseline: the masked slices."""
        ref = stack.ref
        masks = self.slice_masks(len(ref), stack.shape, inputs)

        def solve_rows(model: ScoreModel, rows: slice, opts_rows: SamplerOptions,
                       callback: LevelCallback | None) -> SolverResult:
            known = torch.from_numpy(np.array(masks[rows])[:, None]).to(device)
            return self.solve(model, batch_of(ref, rows, device) * known, known, opts_rows, callback=callback)

        return StackSolve(solve_rows, ref * masks, self.chains(opts))
