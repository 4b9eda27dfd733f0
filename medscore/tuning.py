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

from .evaluation import TASKS, degrade, medscore_method, run_method
from .fileio import atomic_path
from .sampling import Preset, preset_table
from .solvers import SamplerOptions

__all__ = ["Candidate", "Trial", "default_candidates", "run_trials", "choose_presets", "write_presets", "BUDGETS"]

# NFE per slice (all averaged samples counted) of the presets medscore tune writes.
BUDGETS = {"fast": 20, "default": 50}
TASK_OF_KIND = {"mri": "mri", "inpaint": "inpaint"}


@dataclass(frozen=True)
class Candidate:
    """One sampler setting to try."""

    sampler: str
    num_levels: int
    samples: int = 1
    sigma_start: float | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    def options(self, seed: int = 0) -> SamplerOptions:
        return SamplerOptions(preset="fast", sampler=self.sampler, num_levels=self.num_levels, samples=self.samples,
                              sigma_start=self.sigma_start, seed=seed, **dict(self.settings))

    def nfe(self) -> int:
        return self.as_preset("c").nfe() * self.samples

    def as_preset(self, name: str) -> Preset:
        return Preset(name, self.sampler, self.num_levels, dict(self.settings), self.samples, self.sigma_start)


@dataclass
class Trial:
    """A candidate's validation PSNR on one task."""

    task: str
    candidate: Candidate
    psnr: float
    ssim: float
    nfe: int
    seconds_per_slice: float


def default_candidates() -> list[Candidate]:
    """The grid: annealed Langevin at 19-50 NFE (step multiplier 12 or 24, 1 or 2 chains), DDIM and
    predictor-corrector at 20-50 NFE; warm start 0.3 (the first release's tuned level)."""
    ald = [(6, 3, 12.0, 1), (9, 2, 12.0, 1), (6, 3, 24.0, 1), (16, 3, 12.0, 1), (16, 3, 24.0, 1), (8, 3, 12.0, 2),
           (12, 2, 12.0, 2)]
    out = [Candidate("ald", lv, n, 0.3, (("n_steps_each", st), ("multiplier", mult))) for lv, st, mult, n in ald]
    out += [Candidate("ddim", lv, n, 0.3, (("eta", 1.0),)) for lv, n in ((20, 1), (50, 1), (25, 2))]
    out += [Candidate("pc", lv, n, 0.3, (("n_corrector", 1), ("snr", 0.16))) for lv, n in ((10, 1), (25, 1), (12, 2))]
    return [c for c in out if c.nfe() <= max(BUDGETS.values())]


def run_trials(model: Any, val: torch.Tensor, tasks: list[str], candidates: list[Candidate],
               log: Callable[[str], None] = print, seed: int = 1) -> list[Trial]:
    """Every candidate on every task's degraded validation slices (same seeds for all candidates)."""
    trials = []
    for name in tasks:
        spec = TASKS[name]
        prob = degrade(spec, val, seed=seed)
        for cand in candidates:
            res = run_method(medscore_method(spec, model, cand.options(), denoise_method="sampler"), prob)
            trials.append(Trial(name, cand, float(res.psnr.mean()), float(res.ssim.mean()), res.nfe,
                                res.seconds_per_slice))
            log(f"{name:20s} {cand.sampler:5s} L={cand.num_levels:3d} x{cand.samples} start={cand.sigma_start} "
                f"{dict(cand.settings)}: {trials[-1].psnr:6.2f} dB, {res.nfe} NFE, {res.seconds_per_slice:.1f} s/slice")
    return trials


def _best(trials: list[Trial], budget: int) -> Trial | None:
    ok = [t for t in trials if t.nfe <= budget]
    return max(ok, key=lambda t: t.psnr) if ok else None


def choose_presets(trials: list[Trial], budgets: dict[str, int] = BUDGETS) -> dict[str, Preset]:
    """Per preset budget: the setting with the best mean PSNR over MRI tasks is the preset; tasks of another
    kind (inpainting) whose own best setting differs get it as a per-task override."""
    by_task: dict[str, list[Trial]] = {}
    for t in trials:
        by_task.setdefault(t.task, []).append(t)
    table = preset_table()
    out: dict[str, Preset] = {}
    for name, budget in budgets.items():
        kinds: dict[str, dict[Candidate, list[float]]] = {}
        for task, ts in by_task.items():
            kind = TASKS[task].kind
            for t in ts:
                if t.nfe <= budget:
                    kinds.setdefault(kind, {}).setdefault(t.candidate, []).append(t.psnr)
        best = {k: max(c, key=lambda cand: sum(c[cand]) / len(c[cand])) for k, c in kinds.items()}
        main = best.get("mri") or next(iter(best.values()))
        base = main.as_preset(name)
        overrides = {TASK_OF_KIND[k]: _override(c) for k, c in best.items() if c != main and k in TASK_OF_KIND}
        keep = {t: dict(o) for t, o in table[name].tasks.items() if t not in overrides}  # e.g. "sample"
        note = f"tuned by medscore tune on the validation slices, <= {budget} NFE per slice"
        out[name] = Preset(name, base.sampler, base.num_levels, dict(base.settings), base.samples, base.sigma_start,
                           tasks={**keep, **overrides}, note=note)
    return out


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
