"""Accelerated MRI: a Cartesian k-space mask with the centred orthonormal FFT, single coil.

Noiseless data use projection onto the measurements noised to the current level (Song et al. 2022);
noisy k-space or coil maps switch to a likelihood-gradient step (Jalal et al. 2021). The warm start is
the zero-filled image plus noise at the preset's ``sigma_start``. The operator, guidance, warm start and
``solve`` already take coil maps, so a multi-coil task is one more file: a subclass with its own
``name``, ``degrade`` (coil simulation), ``classical_methods`` (e.g. SENSE) and ``prepare_stack``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..physics import (DataConsistency, MultiCoilMRI, SingleCoilMRI, channels_to_complex, complex_to_channels,
                       expand_mask, make_mask)
from ..rng import Generators
from ..sampling import Guidance, Preset
from ..solvers import (WARM_START, GuidanceFactory, LevelCallback, SamplerOptions, ScoreModel, SolverResult, presets_of,
                       repeat_chains, solve)
from .base import ImageStack, Method, Problem, StackSolve, Task, TaskInputs, TaskSpec, batch_of, register_task
from .phase_pass import solve_two_pass

__all__ = ["MRITask", "MRIInputs", "MULTICOIL_KEY", "DENSE_KEY", "DENSE_FRACTION"]

Consistency = Literal["noisy", "hard", "gradient"]
MRIOperator = SingleCoilMRI | MultiCoilMRI
#: the presets' per-task key for data with coil maps, whichever task solves them (the benchmark's multi-coil
#: task, measured multi-coil k-space through ``reconstruct_mri(smaps=...)``)
MULTICOIL_KEY = "mri-multicoil"
#: the regime key of single-coil masks that measure at least ``DENSE_FRACTION`` of k-space (acceleration <= 5):
#: the zero-filled image is then close enough that chains can start at a lower level and need fewer levels
#: (validation slab, 1D 4x: 30 levels from sigma 0.3 matched 50 levels from sigma 1). It falls back to ``mri``.
DENSE_KEY = "mri-dense"
DENSE_FRACTION = 0.2


@dataclass(frozen=True)
class MRIInputs(TaskInputs):
    """Retrospective undersampling: a 0/1 k-space ``mask`` ((W,) lines or (H, W)), or a ``mask_pattern`` drawn at
    ``accel`` with a fully sampled ``center`` fraction for the slice size, seeded by ``mask_seed``."""

    FILES = ("mask",)
    mask: Any = None
    mask_pattern: str | None = None
    accel: float = 4.0
    center: float = 0.08
    mask_seed: int = 0


@register_task
class MRITask(Task):
    """Accelerated MRI: retrospective undersampling of magnitude images, or measured complex k-space."""

    name = "mri"
    label = "accelerated MRI"
    # --volume: chosen on the external validation slabs at `fast` (scripts/volume_coherence.py --split val; z_tv 0 /
    # 0.003 / 0.01 / 0.03): EPI 1D 8x 24.01 / 24.33 / 24.55 / 24.58 dB, INIA19 1D 8x 26.07 / 26.17 / 25.92 / 25.35,
    # INIA19 read out along x with 2D Poisson-vd 8x 35.23 / 35.59 / 35.31 / 33.98: 0.003 is the weight no cell loses at
    volume_z_tv = 0.003
    output_suffix = "medscore"
    progress_label = "reconstructing"
    baseline_method = "zero-filled"
    baseline_title = "zero-filled"
    baseline_output = "zerofilled"
    tune_as_base = True
    inputs_type = MRIInputs

    def operator(self, mask: Any, *, real_image: bool = True, smaps: Tensor | None = None) -> MRIOperator:
        """``M F`` on a real (B, 1, H, W) or complex (B, 2, H, W) image; ``M F S_k`` with coil maps ``smaps``."""
        return MultiCoilMRI(mask, smaps) if smaps is not None else SingleCoilMRI(mask, real_input=real_image)

    def warm_start(self, op: MRIOperator, kspace: Tensor) -> Tensor:
        """The zero-filled image: ``A^+ y`` for one coil, the coil-combined ``A^H y`` for several."""
        return op.zero_filled(kspace)

    def default_consistency(self, noise_std: float, smaps: Tensor | None) -> Consistency:
        """Projection for noiseless single-coil data, the likelihood step for noisy or multi-coil data."""
        return "noisy" if noise_std == 0 and smaps is None else "gradient"

    def guidance(self, op: MRIOperator, kspace: Tensor, *, noise_std: float = 0.0, mode: Consistency = "noisy",
                 dc_weight: float = 1.0) -> GuidanceFactory:
        """The data consistency of the repeated batch: the chains of image b are rows b n .. b n + n - 1, so
        per-image masks and coil maps follow them."""

        def make(g: Generators, n: int, _preset: Preset) -> Guidance:
            return DataConsistency(op.repeat_interleave(n), repeat_chains(kspace, n), noise_std=noise_std, mode=mode,
                                   dc_weight=dc_weight, generator=g)

        return make

    def solve(self, model: ScoreModel, kspace: Tensor, mask: Tensor, opts: SamplerOptions = SamplerOptions(), *,
              real_image: bool = True, noise_std: float = 0.0, smaps: Tensor | None = None,
              consistency: Consistency | None = None, dc_weight: float = 1.0,
              callback: LevelCallback | None = None) -> SolverResult:
        """``kspace`` (B, 1 or K, H, W) complex, ``mask`` (H, W) or (W,) over centred k-space: see
        :func:`medscore.solvers.reconstruct_mri`. With coil maps, a preset with a ``prepass`` solves in two or
        more passes (:func:`~medscore.tasks.phase_pass.solve_two_pass`)."""
        real_image = real_image and smaps is None
        mode = consistency or self.default_consistency(noise_std, smaps)
        key = self.preset_key(mask, smaps)
        preset = opts.resolve(key, presets_of(model))

        def guidance_for(maps: Tensor | None) -> GuidanceFactory:
            op = self.operator(mask, real_image=real_image, smaps=maps)
            return self.guidance(op, kspace, noise_std=noise_std, mode=mode, dc_weight=dc_weight)

        if smaps is not None and preset.prepass:
            return solve_two_pass(model, self.warm_start(self.operator(mask, smaps=smaps), kspace), smaps, opts, preset,
                                  guidance_for, key=key, callback=callback)
        op = self.operator(mask, real_image=real_image, smaps=smaps)
        res = solve(model, self.warm_start(op, kspace), opts, key, guidance_for(smaps), start=WARM_START,
                    complex_image=not real_image, callback=callback, preset=preset)
        if not real_image:
            res.mean = complex_to_channels(channels_to_complex(res.mean))
        return res

    def degrade(self, spec: TaskSpec, ref: Tensor, seed: int = 0) -> Problem:
        """``spec.pattern`` mask at ``spec.accel`` (seeded), complex k-space noise of std ``spec.kspace_noise``
        on the measured samples; baseline: the zero-filled magnitude."""
        g = torch.Generator().manual_seed(seed)
        _, _, h, w = ref.shape
        m = torch.from_numpy(make_mask(spec.pattern, (h, w), spec.accel, spec.center, seed=seed))
        op = SingleCoilMRI(m, real_input=True)
        y = op.A(ref)
        if spec.kspace_noise > 0:
            noise = torch.complex(torch.randn(y.shape, generator=g), torch.randn(y.shape, generator=g))
            y = y + op.mask_for(y) * noise * (spec.kspace_noise / np.sqrt(2))
        return Problem(spec, ref, y, op.zero_filled_magnitude(y), op, m, noise_std=spec.kspace_noise)

    def solve_problem(self, model: ScoreModel, prob: Problem, opts: SamplerOptions, rows: slice = slice(None), *,
                      method: str | None = None, callback: LevelCallback | None = None) -> SolverResult:
        """Real-image reconstruction of the slices ``rows`` (one method: ``method`` is ignored)."""
        return self.solve(model, prob.y[rows], prob.mask, opts, real_image=True, noise_std=prob.noise_std,
                          callback=callback)

    def classical_methods(self, spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
        """Zero-filled, TV-CS and L1-wavelet CS (lambda tuned on ``val``), nearest training slice."""
        from ..baselines import nearest_training_slice, tune, tv_cs, wavelet_cs

        refs = [r for r in val.ref[:, 0].numpy()]
        degraded = [(val.y[i],) for i in range(len(refs))]
        lams = {"lam": [3e-4, 1e-3, 3e-3, 1e-2]}
        methods: dict[str, Method] = {self.baseline_method: lambda p: (p.baseline, 0)}
        tv_lam = tune(lambda y, lam: tv_cs(y[None], val.op, lam, n_iter=200)[0, 0].numpy(), degraded, refs, lams)["lam"]
        methods[f"TV-CS (lam {tv_lam:g})"] = lambda p, lam=tv_lam: (tv_cs(p.y, p.op, lam, n_iter=200), 0)
        wl_lam = tune(lambda y, lam: wavelet_cs(y[None], val.op, lam, n_iter=100, wavelet="haar")[0, 0].numpy(),
                      degraded, refs, lams)["lam"]
        methods[f"L1-wavelet CS (haar, lam {wl_lam:g})"] = lambda p, lam=wl_lam: (
            wavelet_cs(p.y, p.op, lam, n_iter=100, wavelet="haar"), 0)
        if train_slices is not None:
            methods["nearest training slice"] = lambda p: (
                nearest_training_slice(p.op.A, p.y, train_slices, p.op.project), 0)
        return methods

    def preset_key(self, mask: Any = None, smaps: Any = None) -> str:
        """``mri-multicoil`` for data with coil maps (its own tuned override); ``mri-dense`` for a mask that
        measures at least ``DENSE_FRACTION`` of k-space; else the task's name."""
        if smaps is not None:
            return MULTICOIL_KEY
        if mask is not None and float((torch.as_tensor(mask) != 0).float().mean()) >= DENSE_FRACTION:
            return DENSE_KEY
        return self.name

    def check_inputs(self, inputs: MRIInputs) -> None:
        """A mask, or a pattern to draw one from."""
        if inputs.mask is None and inputs.mask_pattern is None:
            raise InputError("MRI needs a k-space mask (make one with `medscore mask`)")

    def slice_mask(self, inputs: MRIInputs, shape: tuple[int, int]) -> np.ndarray:
        """The (H, W) mask of every slice: the given one, or ``mask_pattern`` drawn for ``shape``."""
        self.check_inputs(inputs)
        if inputs.mask is not None:
            return expand_mask(inputs.mask, shape)
        return expand_mask(make_mask(inputs.mask_pattern, shape, inputs.accel, inputs.center, inputs.mask_seed), shape)

    def prepare_stack(self, stack: ImageStack, device: torch.device, opts: SamplerOptions,
                      inputs: MRIInputs) -> StackSolve:
        """Retrospective undersampling of every slice with the inputs' mask. Baseline: the zero-filled magnitude
        ``|F^H M y|``."""
        ref = stack.ref
        m = torch.from_numpy(self.slice_mask(inputs, stack.shape)).to(device)
        op = self.operator(m)
        zero = np.empty_like(ref)

        def solve_rows(model: ScoreModel, rows: slice, opts_rows: SamplerOptions,
                       callback: LevelCallback | None) -> SolverResult:
            y = op.A(batch_of(ref, rows, device))
            zero[rows] = op.zero_filled_magnitude(y)[:, 0].cpu().numpy()
            return self.solve(model, y, m, opts_rows, real_image=True, callback=callback)

        return StackSolve(solve_rows, zero, self.chains(opts))
