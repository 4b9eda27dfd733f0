"""Sampler presets as data: which sampler, its settings, how many levels and averaged samples.

A preset is plain JSON-able data, so tuned settings travel with the weights: ``model.json`` may hold a
``"presets"`` table (written by ``medscore tune``) that overrides and extends :data:`PRESETS`, the
built-in table tuned for the bundled prior. ``tasks`` holds per-task overrides (``mri``, ``inpaint``,
``denoise``, ``sample``) of any field, e.g. another sampler for inpainting or more levels for
unconditional sampling. NFE figures are per chain; the estimate costs ``samples`` times that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from torch import Tensor

from .base import SAMPLERS, Sampler, build_sampler
from .levels import select_levels

__all__ = ["Preset", "PRESETS", "preset_table", "presets_to_json"]

_FIELDS = ("sampler", "num_levels", "settings", "samples", "sigma_start", "sigma_end")


@dataclass(frozen=True)
class Preset:
    """One sampler setting.

    Attributes:
        name: preset name.
        sampler: registered sampler name (``ald``, ``pc``, ``ddim``, ...).
        num_levels: levels taken geometrically from the model's schedule (``None`` = every level).
        settings: the sampler's constructor arguments.
        samples: posterior samples averaged into the estimate.
        sigma_start: warm-start level for tasks that start from an estimate (``None`` = the task's default).
        sigma_end: the last level visited (``None`` = the model's sigma_L); stopping early at a moderate level
            returns the measurement-consistent Tweedie estimate there, closer to the posterior mean than a
            sample (higher PSNR, less texture).
        tasks: per-task overrides of the fields above, ``{"inpaint": {"sampler": "pc", ...}}``.
        note: where the values come from (tuning run, figures).
    """

    name: str
    sampler: str
    num_levels: int | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    samples: int = 1
    sigma_start: float | None = None
    sigma_end: float | None = None
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"preset {self.name!r}: unknown sampler {self.sampler!r}; choose from {sorted(SAMPLERS)}")
        if self.samples < 1 or (self.num_levels is not None and self.num_levels < 1):
            raise ValueError(f"preset {self.name!r}: samples and num_levels must be >= 1")

    def with_changes(self, **changes: Any) -> "Preset":
        """A copy with fields replaced; a new ``sampler`` drops the old sampler's settings, and a
        ``settings`` dict is merged into the current ones."""
        changes = {k: v for k, v in changes.items() if v is not None}
        settings = dict(self.settings)
        if "sampler" in changes and changes["sampler"] != self.sampler:
            settings = {}
        settings.update(changes.pop("settings", {}))
        return dataclasses.replace(self, settings=settings, **changes)

    def for_task(self, task: str | None) -> "Preset":
        """The preset with ``tasks[task]`` applied (itself when there is none)."""
        over = self.tasks.get(task, {}) if task else {}
        unknown = set(over) - set(_FIELDS)
        if unknown:
            raise ValueError(f"preset {self.name!r}: task {task!r} overrides unknown fields {sorted(unknown)}")
        return self.with_changes(**over) if over else self

    def build(self) -> Sampler:
        """The sampler object."""
        return build_sampler(self.sampler, **self.settings)

    def nfe(self, model_sigmas: Tensor | Sequence[float] | None = None, sigma_start: float | None = None) -> int:
        """Score evaluations of one chain (on ``model_sigmas`` when given; needed if ``num_levels`` is None)."""
        if model_sigmas is None:
            if self.num_levels is None:
                raise ValueError(f"preset {self.name!r} uses every model level: pass model_sigmas")
            levels = self.num_levels
        else:
            levels = len(select_levels(model_sigmas, self.num_levels, sigma_start, self.sigma_end))
        return self.build().nfe(levels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``name`` is the key of the table)."""
        d = {k: getattr(self, k) for k in (*_FIELDS, "tasks", "note")}
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items() if v not in ({}, "", None)
                or k == "num_levels"}

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> "Preset":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {*_FIELDS, "tasks", "note"}
        if unknown:
            raise ValueError(f"preset {name!r}: unknown keys {sorted(unknown)}")
        return cls(name=name, **d)


_ALD = {"n_steps_each": 3, "multiplier": 12.0}
# Chains without a measurement projection (unconditional samples, Langevin denoising): the x12 step was
# tuned on projected MRI/inpainting chains; without a projection the NCSNv2 rule itself is used, and
# unconditional samples start at sigma_1 with no data, so they need many more levels (200).
_ALD_TASKS = {"sample": {"num_levels": 200, "settings": {"multiplier": 1.0}}, "denoise": {"settings": {"multiplier": 1.0}}}
_ALD_NOTE = ("annealed Langevin (Algorithm 1), x12 step on the NCSNv2 rule, warm start 0.3; tuned on the "
             "validation slab in the first release (4x MRI 30.5 dB at 100 NFE)")


def _inpaint(levels: int, samples: int) -> dict[str, Any]:
    # Inpainting: annealed Langevin with the x12 step diverges inside large holes (central box: 15-19 dB on the
    # validation slab); DDIM on Tweedie estimates started high (sigma 3) is stable there (26.1 dB at 20 NFE).
    return {"sampler": "ddim", "num_levels": levels, "samples": samples, "sigma_start": 3.0, "settings": {"eta": 1.0}}


# Tuned with medscore.tuning on the validation slab (2 slices, 151 x 187; docs/benchmarks.md, "Tuning"). At
# <= 20 and <= 50 NFE annealed Langevin with fewer levels beat DDIM and predictor-corrector on MRI (4x: 27.6 vs
# 27.6 / 27.2 dB at 20 NFE, 30.2 vs 29.5 (2 chains) at 50 NFE; 8x: 22.6 vs 19.8 at 20 NFE, 24.0 at 49 NFE).
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("fast", "ald", 6, _ALD, samples=1, sigma_start=0.3, tasks={**_ALD_TASKS, "inpaint": _inpaint(20, 1)},
           note="19 NFE: annealed Langevin, 6 levels x 3 steps (MRI); DDIM 20 levels from sigma 3 (inpainting)"),
    Preset("default", "ald", 16, _ALD, samples=1, sigma_start=0.3, tasks={**_ALD_TASKS, "inpaint": _inpaint(25, 2)},
           note="49-50 NFE: annealed Langevin, 16 levels x 3 steps (MRI); mean of 2 DDIM chains of 25 (inpainting)"),
    Preset("best", "ald", 33, _ALD, samples=8, sigma_start=0.3, tasks={**_ALD_TASKS, "inpaint": _inpaint(50, 8)},
           note="800 NFE (MRI): mean of 8 annealed-Langevin chains of 100; 400 NFE (inpainting): 8 DDIM chains of 50"),
    Preset("ald-fast", "ald", 33, _ALD, samples=1, sigma_start=0.3, tasks=_ALD_TASKS, note=_ALD_NOTE + "; 100 NFE"),
    Preset("ald", "ald", 33, _ALD, samples=2, sigma_start=0.3, tasks=_ALD_TASKS,
           note=_ALD_NOTE + "; the first release's default: 2 chains = 200 NFE"),
    Preset("ald-best", "ald", 33, _ALD, samples=8, sigma_start=0.3, tasks=_ALD_TASKS, note=_ALD_NOTE + "; 800 NFE"),
]}


def preset_table(model_presets: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Preset]:
    """The built-in presets, overridden and extended by a model's own table (from its ``model.json``)."""
    table = dict(PRESETS)
    for name, d in (model_presets or {}).items():
        table[name] = Preset.from_dict(name, d)
    return table


def presets_to_json(presets: Mapping[str, Preset]) -> dict[str, dict[str, Any]]:
    """``{name: preset.to_dict()}``, the form stored in ``model.json``."""
    return {name: p.to_dict() for name, p in presets.items()}
