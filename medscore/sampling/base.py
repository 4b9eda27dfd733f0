"""The sampler interface and its registry.

Every sampler is a small class whose constructor takes its own settings (steps, step size, eta, ...)
and whose call runs the chain::

    sampler(score_fn, x_init, levels, guidance=None, generator=None, callback=None) -> SampleResult

``levels`` are the noise levels to visit, largest first; ``x_init`` already carries noise at
``levels[0]``. What a sampler knows of the measurements is the :class:`Guidance` protocol: it never
sees an operator, a mask or k-space, so the loop knows no MRI. Samplers register themselves with
:func:`register_sampler`; :func:`build_sampler` makes one from its name and settings (presets are data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor

from ..rng import Generators, randn

__all__ = ["ScoreFn", "Callback", "Guidance", "SampleResult", "Sampler", "SAMPLERS", "register_sampler",
           "build_sampler", "sampler_names", "as_levels", "sigma_rows", "noise_like"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, int, Tensor], None]


class Guidance(Protocol):
    """Data consistency as a sampler sees it (implemented in ``medscore.physics.consistency``).

    ``noisy(x, sigma, step)``: pull an iterate that carries noise ``sigma`` towards the measurements
    (projection onto noised measurements, or a likelihood-gradient step scaled by ``step``, the
    step size alpha of the update just made: x moved by (alpha / 2) * score).
    ``clean(x0, sigma)``: make a denoised estimate consistent with the measurements when they can be
    imposed exactly (``exact``; noiseless data), else return it unchanged.
    ``proximal(z, sigma)``: the half-quadratic-splitting data step on a denoised estimate at level sigma
    (``clean`` for noiseless data, the proximal map of the likelihood otherwise).
    """

    exact: bool

    def noisy(self, x: Tensor, sigma: float, step: float) -> Tensor: ...

    def clean(self, x0: Tensor, sigma: float) -> Tensor: ...

    def proximal(self, z: Tensor, sigma: float) -> Tensor: ...


@dataclass
class SampleResult:
    """Final sample ``x`` (shaped like ``x_init``) and ``nfe``, the number of (batched) score evaluations."""

    x: Tensor
    nfe: int


class Sampler:
    """Base class: subclasses are dataclasses of their settings and implement ``__call__``."""

    name: str = ""

    @property
    def follows_reverse_process(self) -> bool:
        """True when every update is a step of the reverse process (no Langevin corrector): a chain started
        at an observation that is itself a sample of the level-sigma marginal (denoising) then samples the
        posterior without a likelihood term. Langevin steps forget the start and need one."""
        return False

    def nfe(self, num_levels: int) -> int:
        """Score evaluations of one chain over ``num_levels`` levels."""
        raise NotImplementedError

    def __call__(self, score_fn: ScoreFn, x_init: Tensor, levels: Sequence[float], *, guidance: Guidance | None = None,
                 generator: Generators = None, callback: Callback | None = None,
                 sigma_ref: float | None = None) -> SampleResult:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, for presets stored as JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


SAMPLERS: dict[str, type[Sampler]] = {}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    """Class decorator: make a sampler available by its ``name`` to presets, the API and the CLI."""
    if not cls.name or cls.name in SAMPLERS:
        raise ValueError(f"sampler name {cls.name!r} is empty or taken")
    SAMPLERS[cls.name] = cls
    return cls


def sampler_names() -> list[str]:
    """Registered sampler names."""
    return sorted(SAMPLERS)


def build_sampler(name: str, **settings: Any) -> Sampler:
    """A sampler from its registered name and settings (``None`` values mean the sampler's default)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {sampler_names()}")
    cls = SAMPLERS[name]
    own = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k, v in settings.items() if k not in own and v is not None)
    if unknown:
        raise ValueError(f"sampler {name!r} has no setting {', '.join(unknown)}; its settings: {sorted(own)}")
    return cls(**{k: v for k, v in settings.items() if v is not None})


def as_levels(sigmas: Tensor | Sequence[float]) -> list[float]:
    """Noise levels as a list of positive finite floats (largest first is the caller's business)."""
    levels = torch.as_tensor(sigmas, dtype=torch.float64).detach().reshape(-1).cpu().tolist()
    if not levels:
        raise ValueError("sigmas must hold at least one noise level")
    if any(not math.isfinite(s) or s <= 0 for s in levels):
        raise ValueError(f"noise levels must be finite and > 0, got {levels}")
    return levels


def sigma_rows(levels: list[float], x: Tensor) -> Tensor:
    """(L, B) table of per-sample noise levels, built once so the loop only takes row views."""
    col = torch.tensor(levels, dtype=x.dtype, device=x.device)
    return col[:, None].repeat(1, x.shape[0])


def noise_like(x: Tensor, generator: Generators) -> Tensor:
    """Standard normal noise shaped like ``x`` from a generator (or per-row generators)."""
    return randn(x.shape, generator, dtype=x.dtype, device=x.device)
