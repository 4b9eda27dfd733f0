"""Sampler options: a preset plus the caller's overrides, checked before anything is loaded or computed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..checks import check_choice, check_int, check_positive, check_sampler_overrides
from ..errors import InputError
from ..nets.accelerate import PRECISIONS
from ..rng import Generators, RowGenerators, make_generators
from ..sampling import Preset, preset_table

__all__ = ["SamplerOptions", "check_solver_options", "WARM_START"]

# Warm-start level of MRI and inpainting when a preset names none, on the [0, 1] intensity scale: tuned
# on the validation slab (0.3 matched or beat 1.0 and beat 0.1 with the bundled prior).
WARM_START = 0.3
_SAMPLER_SETTINGS = ("n_steps_each", "eps", "multiplier", "eta", "snr", "n_corrector", "renoise", "flips", "momentum")


@dataclass(frozen=True)
class SamplerOptions:
    """A preset plus optional overrides.

    ``sampler`` replaces the preset's sampler (its settings then start from that sampler's defaults);
    ``n_steps_each``/``eps``/``multiplier`` (ald), ``eta`` (ddim), ``snr``/``n_corrector`` (pc),
    ``renoise``/``flips``/``momentum`` (pnp) override the sampler's settings; ``sigma_start`` the warm-start level
    (``0`` is not allowed, use a small level), ``sigma_end`` the last level. ``precision`` is the score network's
    arithmetic (``auto``: bf16 on CUDA, fp32 on CPU; ``bf16`` asks for it on CPUs with native bf16, where a network
    evaluation is about 1.6x faster). ``seed`` seeds one generator for the whole batch; ``slice_seeds`` (one per image
    of the batch) gives every image its own stream, so results do not depend on how slices are batched.
    ``z_tv`` couples the images of a batch as neighbouring slices of one volume: total variation of that weight along
    the batch axis in every data step (:mod:`medscore.solvers.slice_coupling`; None or 0: slices independent);
    ``network_batch`` caps the images per network call (None: the whole batch at once).
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
    z_tv: float | None = None
    network_batch: int | None = None

    def __post_init__(self) -> None:
        if self.z_tv is not None:
            check_positive("z_tv", self.z_tv, allow_zero=True)
        if self.network_batch is not None:
            check_int("network_batch", self.network_batch, 1)
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



def check_solver_options(preset: str, samples: Any, seed: Any, overrides: dict[str, Any],
                         names: dict[str, str] | None = None) -> SamplerOptions:
    """The caller's sampler arguments as :class:`SamplerOptions`, checked once, before any model is loaded: numbers in
    range, known option names, a known preset, and settings the sampler has. ``names`` maps an option to what the
    caller calls it in messages (``{"multiplier": "--step-multiplier"}`` on the CLI); default: its own name."""
    check_sampler_overrides(names=names, samples=samples, seed=seed, **overrides)
    try:
        opts = SamplerOptions(preset=preset, samples=samples, seed=seed, **overrides)
    except TypeError:
        own = ("preset", "samples", "seed")
        known = sorted(f.name for f in dataclasses.fields(SamplerOptions) if f.name not in own)
        unknown = sorted(set(overrides) - set(known))
        raise InputError(f"unknown sampler option(s) {unknown}: choose from {', '.join(known)}") from None
    try:
        opts.resolve().build()  # a setting the sampler lacks (ald with momentum): now, not after the model loads
    except (ValueError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else repr(exc)
        for key, name in (names or {}).items():
            msg = msg.replace(f"{key} ", f"{name} ")
        raise InputError(f"preset/sampler options: {msg}") from None
    return opts
