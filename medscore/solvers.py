"""Inverse-problem solvers on tensors: a registered sampler with data consistency, for a trained prior.

Every solver takes a score model (``model(x, sigma)``, one image channel), images on the model's
[0, 1] intensity scale as (B, 1, H, W) tensors, and returns a :class:`SolverResult` with the mean of
``samples`` posterior samples (what users get: an estimate, not one random draw), their per-pixel
std, the number of network evaluations and the wall time. The sampler, its settings and the number
of samples come from a preset (``medscore.sampling.presets``; a model may carry its own tuned table)
with :class:`SamplerOptions` overrides. Nothing here knows about files. :func:`solve` is the one driver;
``reconstruct_mri``, ``inpaint`` and ``denoise`` are the tasks of :mod:`medscore.tasks` under their
historical names.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from .errors import InputError
from .nets.accelerate import PRECISIONS, autocast_score
from .rng import Generators, RowGenerators, make_generators, randn
from .sampling import Guidance, Preset, preset_table, select_levels
from .sampling.pnp import alternate_chain_flips

__all__ = ["SolverResult", "SamplerOptions", "score_function", "solve", "reconstruct_mri", "inpaint", "denoise",
           "sample", "presets_of", "WARM_START", "model_sigmas", "repeat_chains"]

ScoreModel = Callable[[Tensor, Tensor], Tensor]
LevelCallback = Callable[[int, int], None]

# Warm-start level of MRI and inpainting when a preset names none, on the [0, 1] intensity scale: tuned
# on the validation slab (0.3 matched or beat 1.0 and beat 0.1 with the bundled prior).
WARM_START = 0.3
_SAMPLER_SETTINGS = ("n_steps_each", "eps", "multiplier", "eta", "snr", "n_corrector", "renoise", "flips", "momentum")


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


@dataclass(frozen=True)
class SamplerOptions:
    """A preset plus optional overrides.

    ``sampler`` replaces the preset's sampler (its settings then start from that sampler's defaults);
    ``n_steps_each``/``eps``/``multiplier`` (ald), ``eta`` (ddim), ``snr``/``n_corrector`` (pc),
    ``renoise``/``flips``/``momentum`` (pnp) override the sampler's settings; ``sigma_start`` the warm-start level
    (``0`` is not allowed, use a small level), ``sigma_end`` the last level. ``precision`` is the score network's
    arithmetic (``auto``: bf16 on CUDA, fp32 on CPU; ``bf16`` asks for it on CPUs with native bf16, where a network
    evaluation is about 1.6x faster). ``seed`` seeds one generator for the whole batch; ``slice_seeds`` (one per image of the
    batch) gives every image its own stream, so results do not depend on how slices are batched.
    """

    preset: str = "default"
    sampler: str | None = None
    num_levels: int | None = None
    n_steps_each: int | None = None
    eps: float | None = None
    multiplier: float | None = None
    eta: float | None = None
    snr: float | None = None
    n_corrector: int | None = None
    renoise: float | None = None
    flips: bool | None = None
    momentum: float | None = None
    sigma_start: float | None = None
    sigma_end: float | None = None
    samples: int | None = None  # None: the preset's
    precision: str = "auto"
    seed: int = 0
    slice_seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        from .validation import check_choice, check_sampler_overrides  # checks numbers before anything is computed

        check_sampler_overrides(samples=self.samples, num_levels=self.num_levels, n_steps_each=self.n_steps_each,
                                eps=self.eps, multiplier=self.multiplier, sigma_start=self.sigma_start,
                                sigma_end=self.sigma_end, snr=self.snr, eta=self.eta, n_corrector=self.n_corrector,
                                renoise=self.renoise, flips=self.flips, momentum=self.momentum,
                                seed=self.seed)
        check_choice("precision", self.precision, PRECISIONS)

    def resolve(self, task: str | None = None, table: dict[str, Preset] | None = None) -> Preset:
        """The preset for ``task`` from ``table`` (default: the built-in presets) with these overrides."""
        table = table if table is not None else preset_table()
        if self.preset not in table:
            raise InputError(f"unknown preset {self.preset!r}; choose from {', '.join(sorted(table))}")
        settings = {k: getattr(self, k) for k in _SAMPLER_SETTINGS if getattr(self, k) is not None}
        preset = table[self.preset].for_task(task)
        return preset.with_changes(sampler=self.sampler, num_levels=self.num_levels, samples=self.samples,
                                   sigma_start=self.sigma_start, sigma_end=self.sigma_end, settings=settings)

    def n_samples(self, task: str | None = None, table: dict[str, Preset] | None = None) -> int:
        """Posterior samples to average: explicit, else the preset's."""
        return self.resolve(task, table).samples

    def generators(self, batch: int, samples: int, device: torch.device | str) -> Generators:
        """One generator (``seed``) or per-image generators (``slice_seeds``) covering ``samples`` chains each."""
        if self.slice_seeds is None:
            return make_generators(self.seed, device)
        if len(self.slice_seeds) != batch:
            raise ValueError(f"slice_seeds has {len(self.slice_seeds)} seeds for a batch of {batch} images")
        gens = make_generators(list(self.slice_seeds), device)
        assert isinstance(gens, RowGenerators)
        return gens.repeat_rows(samples)


def score_function(model: ScoreModel, complex_image: bool = False) -> ScoreModel:
    """Score of a one-channel prior; for complex images (real, imag channels) the prior is applied to
    each channel separately (the "RI" variant of score-MRI), batched into one network call. A complex
    prior (``model.in_channels == 2``) takes the image as is."""
    channels = getattr(model, "in_channels", 1)
    if not complex_image or channels == 2:
        return model

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        b, c, h, w = x.shape
        out = model(x.reshape(b * c, 1, h, w), sigma.repeat_interleave(c))
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
    score = autocast_score(score_function(model, complex_image), opts.precision, x0.device)
    if preset.settings.get("flips"):
        score = alternate_chain_flips(score, n)  # the chains of one image: complementary flips at every level
    res = sampler(score, x, levels, guidance=make_guidance(g, n, preset),
                  generator=g, callback=cb, sigma_ref=float(sigmas[-1]))
    out = res.x.reshape(b, n, *x0.shape[1:])
    std = out.std(dim=1, unbiased=True) if n > 1 else None
    return SolverResult(out.mean(dim=1), std, res.nfe, time.perf_counter() - t0, n)


def reconstruct_mri(model: ScoreModel, kspace: Tensor, mask: Tensor, opts: SamplerOptions = SamplerOptions(), *,
                    real_image: bool = True, noise_std: float = 0.0, smaps: Tensor | None = None,
                    consistency: Literal["noisy", "hard", "gradient"] | None = None, dc_weight: float = 1.0,
                    callback: LevelCallback | None = None) -> SolverResult:
    """Accelerated MRI: ``kspace`` (B, 1 or K, H, W) complex, ``mask`` (H, W) or (W,) over centred k-space.

    ``real_image`` solves for a real image (retrospective undersampling of magnitude data; one
    channel); otherwise the image is complex (real, imag channels, prior applied to each). Noiseless
    data use projection onto the measurements noised to the current level (Song et al. 2022);
    ``noise_std`` > 0 or coil maps switch to a likelihood-gradient step: the posterior score at level
    sigma adds A^H(y - A x) / (noise_std^2 + sigma^2) (Jalal et al. 2021). Denoiser-based samplers
    impose the data on each clean estimate instead (exactly, or noise-weighted).
    The warm start is the zero-filled image plus noise at the preset's ``sigma_start``. This is
    ``medscore.tasks.get_task("mri").solve``.
    """
    from .tasks import get_task

    return get_task("mri").solve(model, kspace, mask, opts, real_image=real_image, noise_std=noise_std, smaps=smaps,
                                 consistency=consistency, dc_weight=dc_weight, callback=callback)


def inpaint(model: ScoreModel, image: Tensor, mask: Tensor, opts: SamplerOptions = SamplerOptions(), *,
            consistency: Literal["noisy", "hard"] = "noisy", callback: LevelCallback | None = None) -> SolverResult:
    """Fill the pixels where ``mask`` ((H, W) or per image (B, 1, H, W)) is 0; known pixels are kept.

    The warm start fills unknown pixels with the mean of the known ones (large holes: by biharmonic inpainting),
    plus noise at the preset's ``sigma_start``. This is ``medscore.tasks.get_task("inpaint").solve``.
    """
    from .tasks import get_task

    return get_task("inpaint").solve(model, image, mask, opts, consistency=consistency, callback=callback)


DENOISE_METHODS = ("tweedie", "sampler", "langevin")


#: the four flips of the last two axes; :func:`tweedie_denoise` also uses each with those axes transposed
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _dihedral(x: Tensor, flip: tuple[int, ...], transpose: bool) -> Tensor:
    x = x.flip(flip) if flip else x
    return x.transpose(-1, -2) if transpose else x


def _undo_dihedral(x: Tensor, flip: tuple[int, ...], transpose: bool) -> Tensor:
    x = x.transpose(-1, -2) if transpose else x
    return x.flip(flip) if flip else x


def tweedie_denoise(model: ScoreModel, image: Tensor, noise_std: float, flip_average: bool = True,
                    transpose: bool = True, precision: str = "auto") -> SolverResult:
    """One-step MMSE estimate x + sigma^2 s(x, sigma), the score averaged over symmetries of the image.

    ``flip_average``: over the four horizontal/vertical flips (4 NFE); the prior was trained with flips, so
    its exact score is flip-equivariant and averaging only removes network error (+0.3 dB on the validation
    slab). ``transpose`` (with ``flip_average``): the same four with the in-plane axes swapped as well, the
    whole dihedral group (8 NFE). The prior never saw transposed images, but at denoising noise levels its
    score is local, and the transposed evaluations added 0.11-0.12 dB at sigma 0.05 and 0.1 on the validation
    slab (docs/benchmarks.md, "a fine-level expert and the 8-NFE Tweedie denoiser"). medscore's networks are
    fully convolutional, so any image shape works; a score model that only takes one in-plane shape needs
    ``transpose=False`` for non-square images. ``precision``: as :class:`SamplerOptions`'.
    """
    t0 = time.perf_counter()
    s = torch.full((image.shape[0],), float(noise_std), device=image.device, dtype=image.dtype)
    transposes = (False, True) if transpose else (False,)
    group = [(f, t) for t in transposes for f in _FLIPS] if flip_average else [((), False)]
    net = autocast_score(model, precision, image.device)
    with torch.inference_mode():
        score = sum(_undo_dihedral(net(_dihedral(image, f, t), s), f, t) for f, t in group) / len(group)
        out = image + noise_std**2 * score
    return SolverResult(out, None, len(group), time.perf_counter() - t0)


def denoise(model: ScoreModel, image: Tensor, noise_std: float, opts: SamplerOptions = SamplerOptions(), *,
            method: Literal["tweedie", "sampler", "langevin"] = "tweedie", flip_average: bool = True,
            transpose: bool = True, callback: LevelCallback | None = None) -> SolverResult:
    """Remove Gaussian noise of std ``noise_std`` (on the [0, 1] scale).

    ``tweedie``: :func:`tweedie_denoise` (``flip_average`` and ``transpose`` are its). ``sampler`` (or its historical name ``langevin``): posterior
    samples from the preset's sampler, started at the noisy image itself (no extra noise: it already sits
    at that level) from the first model level <= ``noise_std``. Samplers that only follow the reverse
    process (DDIM, predictor without corrector) need no likelihood term from there; samplers with
    Langevin steps (annealed Langevin, correctors) forget the start, so they add the likelihood term
    (y - x) / (noise_std^2 + sigma^2) as a gradient step after each update. This is
    ``medscore.tasks.get_task("denoise").solve``.
    """
    from .tasks import get_task

    return get_task("denoise").solve(model, image, noise_std, opts, method=method, flip_average=flip_average,
                                     transpose=transpose, callback=callback)


def sample(model: ScoreModel, n: int, shape: tuple[int, int], opts: SamplerOptions = SamplerOptions(), *,
           device: str | torch.device = "cpu", callback: LevelCallback | None = None) -> SolverResult:
    """Unconditional samples (n, 1, H, W) from uniform noise, from sigma_1 down (the preset's ``sample``
    task settings: many more levels than the warm-started solvers need)."""
    g = torch.Generator(device=device).manual_seed(opts.seed)
    x0 = torch.rand((n, 1, *shape), generator=g, device=device)
    opts = dataclasses.replace(opts, samples=1)
    return solve(model, x0, opts, "sample", lambda _g, _n, _p: None, start=None, callback=callback)

