"""Denoising of additive Gaussian noise of known (or estimated) std on the [0, 1] scale.

``tweedie`` (default): the one-step MMSE estimate, its score averaged over the 8 flips and transposes (8 NFE,
no sampler). ``sampler`` (historical name ``langevin``): posterior samples started at the noisy image itself,
from the first model level <= the noise std, with no extra noise; samplers with Langevin steps add the
likelihood term.

File inputs give ``noise_std`` as a fraction of the scan's 99.5th-percentile intensity ``hi``; the slices are
scaled by ``(x - lo) / (hi - lo)`` (``lo``: the 0th percentile, below zero where noise reaches under a zero
background), so the solver gets ``noise_std * hi / (hi - lo)`` (:meth:`ImageStack.model_std`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_positive
from ..errors import InputError
from .. import physics
from ..physics import DataConsistency, Denoising
from ..rng import Generators
from ..sampling import Guidance, Preset
from ..solvers.adapt import AdaptedPrior
from ..solvers.slice_coupling import tv_prox_along
from ..solvers import (DENOISE_METHODS, GuidanceFactory, LevelCallback, SamplerOptions, ScoreModel, SolverResult,
                       model_sigmas, repeat_chains, solve, tweedie_denoise)
from .base import (ImageStack, Method, Problem, StackSolve, Task, TaskInputs, TaskSpec, batch_of, per_image,
                   register_task)

__all__ = ["DenoiseTask", "DenoiseInputs"]


@dataclass(frozen=True)
class DenoiseInputs(TaskInputs):
    """The noise: its std ``noise_std`` as a fraction of the scan's upper-percentile (99.5th) intensity (None:
    estimated), or ``add_noise`` to simulate noise of that std on the model's [0, 1] scale (seeded by
    ``noise_seed``) and score against the clean slices; the solver ``method``."""

    noise_std: float | None = None
    add_noise: float | None = None
    noise_seed: int = 0
    method: str = "tweedie"


@register_task
class DenoiseTask(Task):
    """Gaussian denoising: the Tweedie estimate or posterior samples started at the noise level."""

    name = "denoise"
    label = "denoising"
    output_suffix = "denoised"
    progress_label = "denoising"
    baseline_method = "noisy input"
    baseline_title = "input"
    baseline_output = "noisy"
    methods = DENOISE_METHODS
    preset_free_methods = ("tweedie",)
    tune_override = False
    adaptable = True  # no forward operator: adaptation minimises SURE instead (AdaptedPrior.fit_sure)
    inputs_type = DenoiseInputs
    # --volume: TV along the slice axis of the denoised estimates (couple_slices), chosen on the external validation
    # slabs (z_tv 0 / 0.003 / 0.01 / 0.03), sigma 0.05: EPI 31.49 / 31.54 / 31.36 / 30.38 dB, INIA19 34.76 / 34.93 /
    # 34.87 / 33.59; sigma 0.1: EPI 28.41 / 28.48 / 28.49 / 28.12, INIA19 30.90 / 31.07 / 31.23 / 30.81. 0.003 is the
    # weight no cell loses at (scripts/volume_coherence.py --split val --tasks denoise-0.05,denoise-0.1)
    volume_z_tv = 0.003

    def operator(self, noise_std: float) -> Denoising:
        """The identity, with the noise level (not projectable: a projection would return the noisy image)."""
        return Denoising(noise_std)

    def warm_start(self, op: Denoising, y: Tensor) -> Tensor:
        """The noisy image itself: it already carries noise at its level, so none is added."""
        return y

    def start_level(self, model: ScoreModel, noise_std: float) -> float:
        """The level the chains start from: the noise std, or the model's smallest level if that is larger."""
        return max(float(noise_std), float(model_sigmas(model)[-1]))

    def guidance(self, op: Denoising, y: Tensor) -> GuidanceFactory:
        """No guidance for samplers that follow the reverse process from y (DDIM, predictor without
        corrector); the likelihood step (y - x) / (noise_std^2 + sigma^2) for chains with Langevin steps."""

        def make(_g: Generators, n: int, preset: Preset) -> Guidance | None:
            if preset.build().follows_reverse_process:
                return None
            return DataConsistency(op, repeat_chains(y, n).clone(), noise_std=op.noise_std, mode="gradient")

        return make

    def solve(self, model: ScoreModel, image: Tensor, noise_std: float, opts: SamplerOptions = SamplerOptions(), *,
              method: str = "tweedie", flip_average: bool = True, transpose: bool = True,
              callback: LevelCallback | None = None) -> SolverResult:
        """Remove noise of std ``noise_std`` from ``image`` (B, 1, H, W): see :func:`medscore.solvers.denoise`."""
        if not noise_std > 0:
            raise ValueError(f"noise_std must be > 0, got {noise_std}")
        if method not in self.methods:
            raise ValueError(f"unknown denoising method {method!r}; choose from {', '.join(self.methods)}")
        if isinstance(model, AdaptedPrior):  # fitted by SURE on this batch first; the method runs with its network
            model.fit_sure(image, noise_std, rows=opts.network_batch)
            model = model.net
        if method == "tweedie":
            res = tweedie_denoise(model, image, noise_std, flip_average, transpose, opts.precision, opts.network_batch)
        else:
            op = self.operator(noise_std)
            plain = dataclasses.replace(opts, z_tv=None)  # the likelihood step is no data step: coupled after
            res = solve(model, self.warm_start(op, image), plain, self.name, self.guidance(op, image),
                        start=self.start_level(model, noise_std), warm=False, callback=callback)
        return self.couple_slices(res, opts)

    def couple_slices(self, res: SolverResult, opts: SamplerOptions) -> SolverResult:
        """A coherent volume (``opts.z_tv`` and the batch the slices of one volume): the estimate becomes
        ``prox_{z_tv TV_z}`` of the slices' denoised estimates, the closest volume to them whose slices do not
        flicker (denoising has no data step for the coupling to sit in, so it acts once, on the estimate)."""
        if opts.z_tv and res.mean.shape[0] > 1:
            res.mean = tv_prox_along(res.mean, opts.z_tv)
        return res

    def degrade(self, spec: TaskSpec, ref: Tensor, seed: int = 0) -> Problem:
        """Gaussian noise of std ``spec.noise`` (seeded); the baseline is the noisy image."""
        g = torch.Generator().manual_seed(seed)
        y = ref + spec.noise * torch.randn(ref.shape, generator=g)
        return Problem(spec, ref, y, y, self.operator(spec.noise), noise_std=spec.noise)

    def solve_problem(self, model: ScoreModel, prob: Problem, opts: SamplerOptions, rows: slice = slice(None), *,
                      method: str | None = None, callback: LevelCallback | None = None) -> SolverResult:
        """Denoising of the slices ``rows`` with ``method`` (None: tweedie)."""
        return self.solve(model, prob.y[rows], prob.noise_std, opts, method=method or self.methods[0],
                          callback=callback)

    def classical_methods(self, spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
        """The noisy input, TV and NLM (tuned on ``val``), BM3D when installed, nearest training slice."""
        from ..baselines import denoise_bm3d, denoise_nlm, denoise_tv, nearest_training_slice, tune

        sigma = spec.noise
        refs = [r for r in val.ref[:, 0].numpy()]
        deg = [val.y[i, 0].numpy() for i in range(len(refs))]
        methods: dict[str, Method] = {self.baseline_method: lambda p: (p.baseline, 0)}
        w = tune(denoise_tv, deg, refs, {"weight": [0.02, 0.04, 0.06, 0.1, 0.15]})["weight"]
        methods[f"TV (weight {w:g})"] = lambda p, w=w: (per_image(denoise_tv, p, weight=w), 0)
        h = tune(lambda y, h: denoise_nlm(y, sigma, h=h), deg, refs,
                 {"h": [0.6 * sigma, 0.8 * sigma, 1.0 * sigma]})["h"]
        methods["NLM"] = lambda p, h=h: (per_image(denoise_nlm, p, sigma=sigma, h=h), 0)
        try:
            import bm3d  # noqa: F401  (optional extra)

            methods["BM3D"] = lambda p: (per_image(denoise_bm3d, p, sigma=sigma), 0)
        except ImportError:
            pass
        if train_slices is not None:
            methods["nearest training slice"] = lambda p: (nearest_training_slice(lambda x: x, p.y, train_slices), 0)
        return methods

    def check_inputs(self, inputs: DenoiseInputs) -> None:
        """Noise levels > 0 when given, a known method."""
        for name, value in (("noise_std", inputs.noise_std), ("add_noise", inputs.add_noise)):
            if value is not None:
                check_positive(name, value)
        if inputs.method not in self.methods:
            raise InputError(f"unknown denoising method {inputs.method!r}; choose from {', '.join(self.methods)}")

    def noisy_input(self, stack: ImageStack, inputs: DenoiseInputs) -> tuple[np.ndarray, float, dict[str, Any]]:
        """The noisy slices (simulated with ``add_noise``, on the slices' [0, 1] scale, else the slices
        themselves), the noise std on that scale and what to report of it.

        A given ``noise_std`` is a fraction of the scan's upper percentile ``hi`` and becomes
        ``noise_std * hi / (hi - lo)`` on the slices' scale (:meth:`ImageStack.model_std`), so that the level means
        the same noise whatever the scan's range; without one the level is estimated (scikit-image) on that scale.
        """
        noise_std, add_noise = inputs.noise_std, inputs.add_noise
        if add_noise is not None:
            if add_noise <= 0:
                raise InputError(f"--add-noise must be > 0, got {add_noise}")
            rng = np.random.default_rng(inputs.noise_seed)
            noisy = (stack.ref + add_noise * rng.standard_normal(stack.ref.shape)).astype(np.float32)
        else:
            noisy = stack.ref
        if noise_std is not None:
            sigma, source = stack.model_std(noise_std), "given"
        elif add_noise is not None:
            sigma, source = float(add_noise), "simulated"
        else:
            sigma, source = physics.estimate_noise_std(noisy[:, None]), "estimated"
        if not np.isfinite(sigma):  # scikit-image's estimate is NaN on some scans (e.g. flat, noise-free slices)
            raise InputError("the noise std could not be estimated from the scan (NaN): pass --noise-std")
        if sigma <= 0:
            raise InputError(f"noise std must be > 0 on the model's scale, got {sigma:.4g} (--noise-std is a fraction "
                             f"of the scan's upper-percentile intensity, {stack.scale[1]:.4g} here)")
        return noisy, sigma, _noise_info(stack, sigma, source)

    def prepare_stack(self, stack: ImageStack, device: torch.device, opts: SamplerOptions,
                      inputs: DenoiseInputs) -> StackSolve:
        """Denoise the slices (or a copy with simulated noise); the noise std given or estimated. Baseline: the
        noisy slices; only simulated noise has a reference. ``info``: the noise level (:meth:`noisy_input`)."""
        noisy, sigma, info = self.noisy_input(stack, inputs)

        def solve_rows(model: ScoreModel, rows: slice, opts_rows: SamplerOptions,
                       callback: LevelCallback | None) -> SolverResult:
            return self.solve(model, batch_of(noisy, rows, device), sigma, opts_rows, method=inputs.method,
                              callback=callback)

        return StackSolve(solve_rows, noisy, self.chains(opts, inputs.method), simulated=inputs.add_noise is not None,
                          info=info)


def _noise_info(stack: ImageStack, sigma: float, source: str) -> dict[str, Any]:
    """The noise level as a fraction of the scan's upper percentile (what --noise-std takes) and on the model's
    [0, 1] scale (what the solver used), and where it came from (given, simulated, estimated)."""
    lo, hi = stack.scale
    fraction = round(sigma * (hi - lo) / hi, 6) if hi > 0 else None
    return {"noise_std": fraction, "noise_std_model": round(sigma, 6), "noise_std_from": source}
