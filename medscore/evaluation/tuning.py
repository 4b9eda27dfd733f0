"""``medscore tune``: measure sampler settings on validation slices and write the best as presets.

For every task and candidate setting (sampler, levels, averaged samples, warm start, sampler settings)
the validation slices are degraded with fixed seeds, solved, and scored (PSNR). Each preset has an NFE
budget per slice (all averaged samples counted); for each task the best candidate within the budget
becomes that preset's setting for the task. The result is a presets table (``medscore.sampling.presets``
form) that :func:`write_presets` stores in the model's ``model.json``, so tuned settings travel with the
weights. Test slices are never used here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .specs import TASKS, degrade, medscore_method, run_method
from ..io.atomic import atomic_path
from ..sampling import Preset, preset_table
from ..solvers import SamplerOptions
from ..tasks import get_task

__all__ = ["Candidate", "Trial", "default_candidates", "run_trials", "choose_presets", "write_presets", "BUDGETS"]

# NFE per slice (all averaged samples counted) of the presets medscore tune writes.
BUDGETS = {"fast": 20, "default": 50}


@dataclass(frozen=True)
class Candidate:
    """One sampler setting to try, on the task kinds ``kinds`` (preset keys: ``mri``, ``mri-dense``,
    ``inpaint``, ``inpaint-hole``; empty = every task)."""

    sampler: str
    num_levels: int
    samples: int = 1
    sigma_start: float | None = None
    settings: tuple[tuple[str, Any], ...] = ()
    kinds: tuple[str, ...] = ()

    def options(self, seed: int = 0) -> SamplerOptions:
        return SamplerOptions(preset="fast", sampler=self.sampler, num_levels=self.num_levels, samples=self.samples,
                              sigma_start=self.sigma_start, seed=seed, **dict(self.settings))

    def nfe(self) -> int:
        return self.as_preset("c").nfe() * self.samples

    def as_preset(self, name: str) -> Preset:
        return Preset(name, self.sampler, self.num_levels, dict(self.settings), self.samples, self.sigma_start)


@dataclass
class Trial:
    """A candidate's validation PSNR on one task; ``key`` is the preset key the task solves under."""

    task: str
    candidate: Candidate
    psnr: float
    ssim: float
    nfe: int
    seconds_per_slice: float
    key: str = ""


def default_candidates() -> list[Candidate]:
    """The grid at <= 20 and <= 50 NFE: deterministic plug-and-play started at sigma 0.3, 1 or 3 (MRI and scattered
    missing pixels), on MRI also with momentum 0.3, 0.45 or 0.6, plug-and-play with half fresh noise from sigma 0.5
    or 1 on the biharmonic fill (large holes), and annealed Langevin (x12 step, warm start 0.3) as the reference;
    DDIM and predictor-corrector lost to both in the previous grid (docs/benchmarks.md, "Tuning"); momentum lost on
    inpainting ("Momentum")."""
    pnp = [(20, 1, 1.0), (20, 1, 0.3), (20, 1, 3.0), (30, 1, 0.3), (50, 1, 1.0), (50, 1, 0.3), (25, 2, 1.0)]
    # every setting stated: a candidate is the "fast" preset with these overrides, whose MRI keys have momentum
    out = [Candidate("pnp", lv, n, start, (("renoise", 0.0), ("momentum", 0.0)), ("mri", "mri-dense", "inpaint"))
           for lv, n, start in pnp]
    out += [Candidate("pnp", lv, 1, start, (("renoise", 0.0), ("momentum", m)), ("mri", "mri-dense"))
            for lv, start in ((20, 1.0), (20, 0.3), (30, 0.3), (50, 1.0)) for m in (0.3, 0.45, 0.6)]
    out += [Candidate("pnp", lv, n, start, (("renoise", 0.5), ("flips", True), ("momentum", 0.0)),
                      ("inpaint-hole",))
            for lv, n, start in ((20, 1, 0.5), (20, 1, 1.0), (25, 2, 0.5), (50, 1, 0.5))]
    out += [Candidate("ald", lv, 1, 0.3, (("n_steps_each", 3), ("multiplier", 12.0)), ("mri", "mri-dense"))
            for lv in (6, 16)]
    return [c for c in out if c.nfe() <= max(BUDGETS.values())]


def preset_key(spec: Any, prob: Any) -> str:
    """The preset key a benchmark problem is solved under (the task's regime, e.g. ``inpaint-hole``)."""
    return get_task(spec.kind).preset_key(prob.mask)


def run_trials(model: Any, val: torch.Tensor, tasks: list[str], candidates: list[Candidate],
               log: Callable[[str], None] = print, seed: int = 1) -> list[Trial]:
    """Every candidate on every task's degraded validation slices (same seeds for all candidates)."""
    trials = []
    for name in tasks:
        spec = TASKS[name]
        prob = degrade(spec, val, seed=seed)
        key = preset_key(spec, prob)
        for cand in candidates:
            if cand.kinds and key not in cand.kinds:
                continue
            res = run_method(medscore_method(spec, model, cand.options(), denoise_method="sampler"), prob)
            trials.append(Trial(name, cand, float(res.psnr.mean()), float(res.ssim.mean()), res.nfe,
                                res.seconds_per_slice, key))
            log(f"{name:20s} {cand.sampler:5s} L={cand.num_levels:3d} x{cand.samples} start={cand.sigma_start} "
                f"{dict(cand.settings)}: {trials[-1].psnr:6.2f} dB, {res.nfe} NFE, {res.seconds_per_slice:.1f} s/slice")
    return trials


def choose_presets(trials: list[Trial], budgets: dict[str, int] = BUDGETS) -> dict[str, Preset]:
    """Per preset budget: the setting with the best mean PSNR over the tasks of the kind that sets the preset
    (``Task.tune_as_base``: MRI) is the preset; tasks of another kind that take overrides (``Task.tune_override``:
    inpainting) and whose own best setting differs get it as a per-task override."""
    by_task: dict[str, list[Trial]] = {}
    for t in trials:
        by_task.setdefault(t.task, []).append(t)
    table = preset_table()
    out: dict[str, Preset] = {}
    for name, budget in budgets.items():
        kinds: dict[str, dict[Candidate, list[float]]] = {}
        for task, ts in by_task.items():
            for t in ts:
                kind = t.key or TASKS[task].kind
                if t.nfe <= budget:
                    kinds.setdefault(kind, {}).setdefault(t.candidate, []).append(t.psnr)
        best = {k: max(c, key=lambda cand: sum(c[cand]) / len(c[cand])) for k, c in kinds.items()}
        main = _base_choice(best)
        base = main.as_preset(name)
        overrides = {k: _override(c) for k, c in best.items()
                     if c != main and (_task_of(k).tune_override or k != _task_of(k).name)}
        # untuned tasks keep the built-in override (e.g. "sample"); tuned ones get theirs or none
        keep = {t: dict(o) for t, o in table[name].tasks.items() if t not in best}
        note = f"tuned by medscore tune on the validation slices, <= {budget} NFE per slice"
        out[name] = Preset(name, base.sampler, base.num_levels, dict(base.settings), base.samples, base.sigma_start,
                           tasks={**keep, **overrides}, note=note)
    return out


def _base_choice(best: dict[str, Candidate]) -> Candidate:
    """The preset's own setting: the best on the base task's own key (``mri``, not a regime such as
    ``mri-dense``), else on any key of that task, else the first."""
    base = [k for k in best if _task_of(k).tune_as_base]
    own = [k for k in base if k == _task_of(k).name]
    return best[(own or base or list(best))[0]]


def _task_of(key: str) -> Any:
    """The task of a preset key (``inpaint-hole`` is a regime of ``inpaint``)."""
    return get_task(key.split("-")[0])


def _override(c: Candidate) -> dict[str, Any]:
    return {"sampler": c.sampler, "num_levels": c.num_levels, "samples": c.samples, "sigma_start": c.sigma_start,
            "settings": dict(c.settings)}


def write_presets(model_dir: str | Path, presets: dict[str, Preset]) -> Path:
    """Store ``presets`` in ``model_dir/model.json`` (merged into any table already there), atomically."""
    meta_path = Path(model_dir) / "model.json"
    meta = json.loads(meta_path.read_text())
    table = dict(meta.get("presets", {}))
    table.update({name: p.to_dict() for name, p in presets.items()})
    meta["presets"] = table
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta_path
