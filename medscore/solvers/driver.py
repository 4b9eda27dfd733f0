"""The one tensor driver of every task: preset -> noise levels -> chains batched -> mean and std.

Every solver takes a score model (``model(x, sigma)``, one image channel), images on the model's
[0, 1] intensity scale as (B, 1, H, W) tensors, and returns a :class:`SolverResult` with the mean of
``samples`` posterior samples (what users get: an estimate, not one random draw), their per-pixel
std, the number of network evaluations and the wall time. The sampler, its settings and the number
of samples come from a preset (``medscore.sampling.presets``; a model may carry its own tuned table)
with :class:`~medscore.solvers.options.SamplerOptions` overrides. Nothing here knows about files or tasks.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..nets.accelerate import autocast_score, chunked_score, images_per_call
from ..rng import Generators, randn
from ..sampling import Guidance, Preset, preset_table, select_levels
from ..sampling.pnp import alternate_chain_flips
from ..errors import InputError
from .adapt import AdaptedPrior
from .options import SamplerOptions
from .slice_coupling import SliceCoupledGuidance

__all__ = ["SolverResult", "score_function", "solve", "sample", "presets_of", "model_sigmas", "repeat_chains",
           "ScoreModel", "LevelCallback", "GuidanceFactory"]

ScoreModel = Callable[[Tensor, Tensor], Tensor]
LevelCallback = Callable[[int, int], None]


@dataclass
class SolverResult:
    """Posterior mean (B, C, H, W), per-pixel std (or None for one sample), NFE per sample, seconds; a two-pass
    solve adds the network evaluations of its first pass (``prepass_nfe``, all its chains)."""

    mean: Tensor
    std: Tensor | None
    nfe: int
    seconds: float
    samples: int = 1
    prepass_nfe: int = 0

    @property
    def total_nfe(self) -> int:
        """Network evaluations per image: every chain of both passes."""
        return self.nfe * self.samples + self.prepass_nfe



def score_function(model: ScoreModel, complex_image: bool = False, per_call: int | None = None) -> ScoreModel:
    """Score of a one-channel prior; for complex images (real, imag channels) the prior is applied to
    each channel separately (the "RI" variant of score-MRI), batched into one network call. A complex
    prior (``model.in_channels == 2``) takes the image as is. ``per_call``: the network runs that many images at a
    time (:func:`~medscore.nets.accelerate.images_per_call`; None: the whole batch)."""
    channels = getattr(model, "in_channels", 1)
    net = chunked_score(model, per_call)
    if not complex_image or channels == 2:
        return net

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        b, c, h, w = x.shape
        out = net(x.reshape(b * c, 1, h, w), sigma.repeat_interleave(c))
        return out.reshape(b, c, h, w)

    return score


def model_sigmas(model: ScoreModel) -> Tensor:
    """The training noise levels the score model carries (``model.sigmas``), largest first."""
    sig = getattr(model, "sigmas", None)
    if sig is None:
        raise ValueError("the score model must carry its training noise levels as `.sigmas`")
    return sig


def presets_of(model: ScoreModel) -> dict[str, Preset]:
    """The built-in presets overridden by the model's own tuned table (``model.presets``, from model.json)."""
    return preset_table(getattr(model, "presets", None))


def repeat_chains(t: Tensor, n: int) -> Tensor:
    """Each image (row) of ``t`` ``n`` times in a row: the batch of ``n`` chains per image that ``solve`` runs."""
    return t.repeat_interleave(n, dim=0) if n > 1 else t


GuidanceFactory = Callable[[Generators, int, Preset], "Guidance | None"]


def solve(model: ScoreModel, x0: Tensor, opts: SamplerOptions, task: str, make_guidance: GuidanceFactory, *,
          start: float | None, warm: bool = True, complex_image: bool = False,
          callback: LevelCallback | None = None, preset: Preset | None = None) -> SolverResult:
    """The one driver of every task: preset -> levels -> ``samples`` chains batched -> mean and std.

    ``x0`` (B, C, H, W) is the starting estimate. With ``warm`` it gets noise at the first level: the
    preset's ``sigma_start`` (else ``start``; ``None`` = sigma_1, unconditional sampling). Without, the
    chain starts at level ``start`` and ``x0`` is taken to carry that noise already (denoising).
    ``make_guidance(generators, samples, preset)`` builds the data consistency for the repeated batch
    (``None`` for unconditional sampling). ``preset``: an already resolved preset (a pass of a two-pass
    solve); by default ``opts`` resolved for ``task``.
    """
    t0 = time.perf_counter()
    sigmas = model_sigmas(model).to(x0.device)
    preset = preset or opts.resolve(task, presets_of(model))
    if preset.settings.get("flips") and not getattr(model, "flip_invariant", True):
        preset = preset.with_changes(settings={"flips": False})  # a prior trained without flips: no ensemble
    sampler = preset.build()
    if warm and start is not None and preset.sigma_start is not None:
        start = preset.sigma_start
    levels = select_levels(sigmas, preset.num_levels, start, preset.sigma_end)
    n, b = preset.samples, x0.shape[0]
    g = opts.generators(b, n, x0.device)
    x = repeat_chains(x0, n)
    if warm:
        x = x + float(levels[0]) * randn(x.shape, g, dtype=x.dtype, device=x.device)
    cb = None if callback is None else (lambda i, total, _x: callback(i, total))
    per_call = images_per_call(x0.shape[-2:], x0.device)
    score = chunked_score(autocast_score(score_function(model, complex_image, per_call), opts.precision, x0.device,
                                         model=model), opts.network_batch)
    if preset.settings.get("flips"):
        score = alternate_chain_flips(score, n)  # the chains of one image: complementary flips at every level
    guidance = make_guidance(g, n, preset)
    if opts.z_tv and b > 1 and guidance is not None:  # the batch is one volume: couple neighbouring slices
        guidance = SliceCoupledGuidance(guidance, opts.z_tv, chains=n)
    if isinstance(model, AdaptedPrior):  # one adaptation step after every level, on the image as it stands
        plain = autocast_score(score_function(model, complex_image, per_call), opts.precision, x0.device,
                               model=model)
        cb = model.after_levels(plain, _fidelity_of(guidance), levels, cb, rows=opts.network_batch)
    res = sampler(score, x, levels, guidance=guidance, generator=g, callback=cb, sigma_ref=float(sigmas[-1]))
    out = res.x.reshape(b, n, *x0.shape[1:])
    std = out.std(dim=1, unbiased=True) if n > 1 else None
    return SolverResult(out.mean(dim=1), std, res.nfe, time.perf_counter() - t0, n)


def _fidelity_of(guidance: Guidance | None) -> Callable[[Tensor], Tensor]:
    """The data misfit an adapted prior is fitted to: that of the task's measurements."""
    fidelity = getattr(guidance, "fidelity", None)
    if fidelity is None:
        raise InputError("test-time adaptation needs measurements with a forward operator (MRI, inpainting); "
                         "this solve has none")
    return fidelity


def sample(model: ScoreModel, n: int, shape: tuple[int, int], opts: SamplerOptions = SamplerOptions(), *,
           device: str | torch.device = "cpu", callback: LevelCallback | None = None) -> SolverResult:
    """Unconditional samples (n, 1, H, W) from uniform noise, from sigma_1 down (the preset's ``sample``
    task settings: many more levels than the warm-started solvers need)."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    x0 = torch.rand((n, 1, *shape), generator=g, device=device)
    opts = dataclasses.replace(opts, samples=1)
    return solve(model, x0, opts, "sample", lambda _g, _n, _p: None, start=None, callback=callback)

