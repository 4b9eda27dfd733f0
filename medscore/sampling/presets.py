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

_FIELDS = ("sampler", "num_levels", "settings", "samples", "sigma_start", "sigma_end", "prepass")


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
        prepass: overrides of the fields above for a cheaper first pass whose estimate the task uses to re-pose
            the problem before this preset's pass (multi-coil MRI: the estimate's smooth phase moves into the coil
            maps, and this pass warm starts from the estimate at ``sigma_start``); empty = one pass, and a
            ``prepass`` of its own inside adds a pass before it. Tasks with no use for a first estimate ignore it.
        tasks: per-task overrides of the fields above, ``{"inpaint": {"sampler": "pc", ...}}``; a key may name a
            task regime, ``inpaint-hole`` for masks with large holes.
        note: where the values come from (tuning run, figures).
    """

    name: str
    sampler: str
    num_levels: int | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    samples: int = 1
    sigma_start: float | None = None
    sigma_end: float | None = None
    prepass: Mapping[str, Any] = field(default_factory=dict)
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"preset {self.name!r}: unknown sampler {self.sampler!r}; choose from {sorted(SAMPLERS)}")
        if self.samples < 1 or (self.num_levels is not None and self.num_levels < 1):
            raise ValueError(f"preset {self.name!r}: samples and num_levels must be >= 1")
        unknown = set(self.prepass) - set(_FIELDS)
        if unknown:
            raise ValueError(f"preset {self.name!r}: the prepass overrides unknown fields {sorted(unknown)}")

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
        """The preset with ``tasks[task]`` applied (itself when there is none). A task regime such as
        ``inpaint-hole`` (large holes) falls back to its task's override (``inpaint``) when it has none."""
        over = (self.tasks.get(task) or self.tasks.get(task.split("-")[0], {})) if task else {}
        unknown = set(over) - set(_FIELDS)
        if unknown:
            raise ValueError(f"preset {self.name!r}: task {task!r} overrides unknown fields {sorted(unknown)}")
        return self.with_changes(**over) if over else self

    def first_pass(self) -> "Preset | None":
        """The preset of the first pass (this one with ``prepass`` applied), or None for a one-pass preset. A
        ``prepass`` holding its own ``prepass`` makes the first pass a two-pass preset (three passes in all)."""
        if not self.prepass:
            return None
        return dataclasses.replace(self.with_changes(**self.prepass), prepass=self.prepass.get("prepass", {}),
                                   tasks={})

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

    def total_nfe(self, model_sigmas: Tensor | Sequence[float] | None = None, sigma_start: float | None = None) -> int:
        """Score evaluations per image: every chain, and the first pass's chains when there is one.
        ``sigma_start`` is the task's warm-start level, used where a pass names none."""
        first = self.first_pass()
        start = self.sigma_start if self.sigma_start is not None else sigma_start
        own = self.nfe(model_sigmas, start) * self.samples
        return own + (first.total_nfe(model_sigmas, sigma_start) if first is not None else 0)

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
_ALD_TASKS = {"sample": {"num_levels": 200, "settings": {"multiplier": 1.0}},
              "denoise": {"settings": {"multiplier": 1.0}}}
# Plug-and-play presets keep annealed Langevin for what has no measurements to project on: unconditional samples
# and Langevin denoising (``denoise --method sampler``; the default denoiser is the one-step Tweedie estimate).
def _ald_tasks_of_pnp(denoise_levels: int) -> dict[str, dict[str, Any]]:
    return {t: {"sampler": "ald", "num_levels": 200 if t == "sample" else denoise_levels, "sigma_start": 0.3,
                "settings": {**_ALD, "multiplier": 1.0}} for t in ("sample", "denoise")}
_ALD_NOTE = ("annealed Langevin (Algorithm 1), x12 step on the NCSNv2 rule, warm start 0.3; tuned on the "
             "validation slab in the first release (4x MRI 30.5 dB at 100 NFE)")


def _pnp(levels: int, samples: int = 1, start: float = 1.0, renoise: float = 0.0,
         transposes: bool = False, momentum: float = 0.0) -> dict[str, Any]:
    # transposes and momentum stated either way: a task's settings are merged into the base preset's
    settings = {"renoise": renoise, "flips": True, "transposes": transposes, "momentum": momentum}
    return {"sampler": "pnp", "num_levels": levels, "samples": samples, "sigma_start": start, "settings": settings}


def _inpaint(levels: int, samples: int) -> dict[str, Any]:
    # Scattered missing pixels: deterministic plug-and-play from sigma 1 (validation, 70 % missing: 31.6 dB at 20
    # NFE against 27.7 for ald). The flip ensemble helps the deterministic chains (70 % missing: 32.11 against 31.63
    # dB at 2 x 25 levels; 32.26 with the second chain on the complementary flips).
    # Large holes (``inpaint-hole``: a hole radius above 4.5 px) start from the biharmonic fill (``InpaintTask``) at
    # sigma 0.5 with half the fresh noise at every level. Central box, mean of the 2 validation slices x 3 chain seeds
    # / the real EPI's validation slice x 3 seeds (biharmonic 28.03 / 31.65 dB): 20 levels 29.48 / 31.74 dB, where
    # the previous hole preset (from sigma 10 on the mean fill, all fresh noise, no flips) gave 28.52 / 29.26 and fell
    # to 19 dB on 4 of 10 test slices (a wrong structure sampled into the hole); from sigma 1, 2 or 0.3: 29.56 /
    # 31.21, 29.52 / -, 29.17 / 31.90; fresh noise 0.3 / 0.7 from sigma 1: 26.86 / 28.52 on validation; from the
    # mean fill: 25.10. 2 chains of 25: 29.62 / 31.75 (the previous 29.16 / 28.77).
    hole = _pnp(levels, samples, start=0.5, renoise=0.5)
    return {"inpaint": _pnp(levels, samples), "inpaint-hole": hole}


# Multi-coil data (coil maps, noisy k-space: the proximal data step by CG), validation slab, mean of 8-coil 1D 4x,
# 1D 8x and Poisson-vd 8x: 50 levels 35.22 dB, 30 levels 35.42, 20 levels 35.51, 2 chains of 25 levels 35.76; the
# last with the flip ensemble 35.86, and with the second chain on the complementary flips (``solve``) 35.92.
# Two passes (``prepass``: the first estimate's smooth phase moves into the coil maps, medscore.tasks.phase_pass),
# with the maps of medscore.tasks.coil_phase (8x / 4x / Poisson-vd, mean): ``fast`` 20 levels in one pass 28.65 / 38.24
# /
# 43.12 (36.67), 10 + 10 levels from sigma 0.3 28.95 / 38.56 / 43.42 (36.98); ``default`` 2 chains of 25 in one
# pass 28.70 / 38.50 / 43.87 (37.02), 10 levels then 2 chains of 20 from 0.3 29.21 / 38.92 / 43.87 (37.33), 20
# then 2 x 15 37.35, 2 x 10 then 2 x 15 37.31; one chain of 30 after 20 levels 36.86 (Poisson-vd needs 2 chains);
# three passes (the phase updated twice), 10 levels, 10 from 0.3, then from 0.3 3 chains of 10: 29.14 / 39.12 /
# 44.31 (37.52); 2 x 15: 29.27 / 39.07 / 43.88 (37.41); 4 x 7: 37.32; 8, 8, 3 x 11: 37.41; 8, 8, 2 x 17: 37.39;
# 5, 5, 2 x 20: 37.33. ``fast`` with the second pass from 0.5: 36.96; 6 + 14 levels: 36.87; 10 then 2 x 5: 36.39;
# three passes of 7, 6, 7: 36.84; 5, 5, then 2 x 5: 36.29.
_MULTICOIL = {"fast": {**_pnp(10, 1, start=0.3), "prepass": {"num_levels": 10, "sigma_start": 1.0}},
              "default": {**_pnp(10, 3, start=0.3), "prepass": {"num_levels": 10, "samples": 1, "sigma_start": 0.3,
                                                                "prepass": {"num_levels": 10, "sigma_start": 1.0}}}}
# Single-coil masks that measure >= 20 % of k-space (``mri-dense``: 1D 4x), validation slab, 1D 4x / 4x with k-space
# noise 0.01. The previous default (50 levels from sigma 1, no flip ensemble): 34.89 / 33.17 dB. From sigma 0.3 with
# the flip ensemble: 25 levels 34.54 / 32.95, 30 levels 34.93 / 33.26, 35 levels 35.24 / 33.51. ``default`` takes
# the fewest levels that keep the previous default's quality on both: 30, 60 % of its NFE. ``fast``: 20 levels from
# sigma 0.3 (34.05 / 32.55 against 33.32 / 31.92 from sigma 1).
#
# The flip ensemble with transposes (eight orientations, ``PlugAndPlay.transposes``) on single-coil MRI, validation
# slab, 1D 8x / 4x / Poisson 8x / 4x with k-space noise: ``default`` 27.37 / 35.67 / 41.03 / 33.82 dB with the four
# flips, 27.56 / 35.91 / 41.22 / 33.96 with the eight orientations; ``fast`` 26.50 / 34.62 / 40.08 / 32.96 against
# 26.69 / 34.80 / 40.42 / 33.07. Not on inpainting (70 % missing, ``default``: 31.90 against 31.50) nor with coil
# maps (mean of the three multi-coil tasks 37.92 against 37.95: level).
#
# Momentum (``PlugAndPlay.momentum``, heavy-ball over-relaxation) on single-coil MRI: the validation slab (2 slices)
# and the real EPI's validation slice 7, 3 degradation seeds each, mean PSNR val / EPI (docs/benchmarks.md,
# "Momentum"). ``fast``, momentum 0 / 0.5 / 0.6 / 0.7: 1D 8x 26.14 / 22.36, 26.62 / 23.77, 26.76 / 24.13,
# 26.79 / 23.84; Poisson 8x 40.32 / 29.80, 40.96 / 29.90, 41.05 / 29.90, 40.96 / 29.93; 1D 4x 34.64 / 28.15,
# 35.46 / 29.05, 35.83 / 28.86, 36.05 / 28.51; 4x + noise 32.78 / 26.93, 33.56 / 28.31, 33.90 / 28.40, 34.19 /
# 28.29. ``default``, momentum 0 / 0.3 / 0.45 / 0.6: 8x 26.98 / 23.86, 27.13 / 24.10, 27.23 / 24.06, 27.34 /
# 23.96; Poisson 41.23 / 30.08, 41.58 / 30.04, 41.75 / 30.02, 41.90 / 29.95; 4x 35.57 / 28.96, 35.77 / 28.88,
# 36.05 / 28.78, 36.44 / 28.48; 4x + noise 33.48 / 27.94, 33.76 / 28.35, 34.02 / 28.36, 34.43 / 28.31. Per preset
# key, the value with the best mean over its tasks on both sets among those that lose at most 0.1 dB on any of them
# (coil maps, ``_MULTICOIL`` above, lost up to 0.6 dB on the EPI with 0.6 at ``fast``, so keep none): longer chains
# need less. ``fast`` 0.7 would tie with 0.6 on ``mri-dense`` (+0.01 dB) and one value serves both keys. Not on
# inpainting: 70 % missing 31.38 / 25.92 at ``fast`` without, 30.89 / 25.76 with 0.6; the central box (half fresh
# noise) 29.52 / 31.22 without, 24.94 / 31.39 with 0.6 (``default``, 0.3: 31.62 / 25.92 and 27.24 / 32.00 against
# 31.65 / 25.74 and 29.56 / 31.62).
MOMENTUM = {"fast": {"mri": 0.6, "mri-dense": 0.6}, "default": {"mri": 0.45, "mri-dense": 0.3}}
_DENSE = {name: _pnp(levels, 1, start=0.3, transposes=True, momentum=MOMENTUM[name]["mri-dense"])
          for name, levels in (("fast", 20), ("default", 30))}
_PNP = {name: {"renoise": 0.0, "flips": True, "transposes": True, "momentum": m["mri"]} for name, m in MOMENTUM.items()}

# Tuned with medscore.evaluation.tuning on the validation slab (2 slices, 151 x 187; docs/benchmarks.md, "Tuning"). At
# <= 20 and <= 50 NFE the deterministic plug-and-play iteration beat every sampler on MRI by 2-6 dB (4x: 33.1 dB at
# 20 NFE and 34.9 at 50, against 27.6 and 30.2 for annealed Langevin; 8x: 26.0 and 26.9 against 22.6 and 24.0):
# on this prior a posterior sample is far from the posterior mean, which is what PSNR rewards.
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("fast", "pnp", 20, _PNP["fast"], samples=1, sigma_start=1.0,
           tasks={**_ald_tasks_of_pnp(6), **_inpaint(20, 1), "mri-dense": _DENSE["fast"],
                  "mri-multicoil": _MULTICOIL["fast"]},
           note="20 NFE: plug-and-play with the flip ensemble (with transposes and momentum 0.6 on single-coil MRI), "
                "20 levels from sigma 1 (MRI, scattered pixels; sigma 0.3 on masks measuring >= 20 % of k-space; "
                "10 + 10 in two passes with coil maps); from the biharmonic fill at sigma 0.5 with half fresh noise "
                "(large holes)"),
    Preset("default", "pnp", 50, _PNP["default"], samples=1, sigma_start=1.0,
           tasks={**_ald_tasks_of_pnp(16), **_inpaint(25, 2), "mri-multicoil": _MULTICOIL["default"],
                  "mri-dense": _DENSE["default"]},
           note="<= 50 NFE: plug-and-play with the flip ensemble (with transposes and momentum 0.45, 0.3 at 4x, on "
                "single-coil MRI), 50 levels from sigma 1 (MRI), 30 from sigma 0.3 (masks measuring >= 20 % of "
                "k-space); mean of 2 chains of 25 (inpainting); with coil maps, three passes: 10 levels, 10 from "
                "sigma 0.3, then 3 chains of 10 from 0.3"),
    Preset("best", "ald", 33, _ALD, samples=8, sigma_start=0.3, tasks={**_ALD_TASKS, **_inpaint(50, 8)},
           note="800 NFE (MRI): mean of 8 annealed-Langevin chains of 100; 400 NFE (inpainting): 8 "
                "plug-and-play chains of 50"),
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
