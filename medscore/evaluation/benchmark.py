"""``medscore demo`` and ``medscore benchmark``: every method on the same degraded held-out slices.

The demo is the short version (two test slices, four tasks, the fast preset); the benchmark runs all
tasks, all methods and the chosen presets on the test slab and writes ``docs/benchmarks.md``, a JSON
file with every number, PNG panels and a quality-vs-NFE curve for 4x MRI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import InputError
from ..io.embedded import TEST_SLAB, held_out, load_embedded
from .specs import (MULTICOIL_TASKS, TASKS, Method, MethodResult, Problem, TaskSpec, classical_methods, degrade,
                    medscore_method, run_method, training_axial_slices)
from ..priors.store import load_prior
from ..solvers import SamplerOptions
from ..solvers.adapt import Adaptation, AdaptedPrior
from ..tasks import TASKS as TASK_REGISTRY
from ..tasks import Task, get_task
from ..io.pictures import save_panel

__all__ = ["TaskTable", "run_tasks", "embedded_slices", "external_slices", "DEMO_TASKS", "BENCHMARK_TASKS",
           "speed_table", "task_outputs", "check_presets"]

DEMO_TASKS = ["mri-1d-4x", "mri-1d-8x", "inpaint-70", "denoise-0.1"]
BENCHMARK_TASKS = [t for t in TASKS if t not in MULTICOIL_TASKS]  # the multi-coil specs run by name only
Log = Callable[[str], None]
MoreBaselines = Callable[[TaskSpec, Problem], dict[str, Method]]


@dataclass
class TaskTable:
    """Results of all methods on one benchmark task (``task``: the spec's name, ``kind``: its registered task)."""

    task: str
    label: str
    results: dict[str, MethodResult] = field(default_factory=dict)
    kind: str = ""

    @property
    def fastmri(self) -> bool:
        """Whether the results carry the fastMRI-convention metrics (tasks that declare ``report_fastmri``)."""
        return any(r.fastmri for r in self.results.values())

    def best_classical(self) -> str | None:
        skip = {t.baseline_method for t in TASK_REGISTRY.values()} | {"nearest training slice"}
        cands = {k: v for k, v in self.results.items() if not k.startswith("medscore") and k not in skip}
        return max(cands, key=lambda k: cands[k].psnr.mean()) if cands else None


def _save_nifti(stack: torch.Tensor, path: Path, affine: np.ndarray) -> None:
    import nibabel as nib

    from ..io.atomic import atomic_path

    img = nib.Nifti1Image(np.moveaxis(stack[:, 0].float().numpy(), 0, -1), affine)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def task_outputs(out_dir: Path, task: str) -> dict[str, Path]:
    """The files :func:`run_tasks` writes for ``task`` into ``out_dir`` (NIfTI stacks and the panel), by kind."""
    kinds = {"reference": ".nii.gz", "input": ".nii.gz", "medscore": ".nii.gz", "panel": ".png"}
    return {kind: out_dir / f"{task}_{kind}{ext}" for kind, ext in kinds.items()}


def check_presets(presets: list[str], model=None, name: str = "--preset") -> None:
    """Every name of ``presets`` is in the model's preset table (the built-in presets and its own), checked before
    any compute; ``name`` is the option in messages."""
    from ..solvers import presets_of

    table = presets_of(load_prior(model).model)
    bad = [p for p in presets if p not in table]
    if bad or not presets:
        raise InputError(f"{name}: unknown preset(s) {bad}; choose from {', '.join(sorted(table))}")


def embedded_slices(slice_index: list[int] | None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(test, validation, affine of the first test slice) from the embedded held-out slabs."""
    test = torch.from_numpy(held_out("test"))[:, None]
    idx = list(range(len(test))) if slice_index is None else slice_index
    _, affine = load_embedded()
    return test[idx], torch.from_numpy(held_out("val"))[:, None], _slice_affine(affine, TEST_SLAB[0] + idx[0])


def external_slices(path: str | Path, test_index: list[int], val_index: list[int],
                    frame: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Axial slices of a scan the prior never saw (e.g. nibabel's example EPI), scaled like any input."""
    import nibabel as nib

    from ..transforms import RobustScaleIntensity

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., frame]
    scaled = RobustScaleIntensity(0.0, 99.5)(data)
    stack = torch.from_numpy(np.ascontiguousarray(np.moveaxis(scaled, -1, 0)))[:, None]
    return stack[test_index], stack[val_index], _slice_affine(img.affine, test_index[0])


def _slice_affine(affine: np.ndarray, z0: int) -> np.ndarray:
    aff = np.asarray(affine, dtype=np.float64).copy()
    aff[:3, 3] = affine[:3, :3] @ np.array([0, 0, z0]) + affine[:3, 3]
    return aff


def run_tasks(tasks: list[str], ref: torch.Tensor, val: torch.Tensor, presets: list[str], *, model=None,
              out_dir: Path | None = None, affine: np.ndarray | None = None,
              denoise_methods: tuple[str, ...] = ("tweedie", "sampler"), samples: int | None = None,
              log: Log | None = None, seed: int = 0, nearest: bool = True, adapt: Adaptation | None = None,
              baselines: MoreBaselines | None = None) -> list[TaskTable]:
    """Degrade the test slices ``ref`` for each task, run classical methods (tuned on ``val``) and medscore.

    With ``out_dir``, NIfTI stacks (reference, input, medscore) and a PNG panel per task are written.
    ``nearest`` adds the nearest-training-slice honesty check (embedded data only: same slice size).
    ``denoise_methods``: the medscore methods run on tasks that offer several (denoising: tweedie, sampler).
    ``adapt``: also run medscore with test-time adaptation (``medscore <preset> + adapt``) on the tasks that have
    a forward operator. ``baselines(spec, val)``: more classical methods (e.g. BART's), tuned on ``val``.
    """
    log = log or (lambda _m: None)
    torch.manual_seed(seed)
    priors = {flag: load_prior(model, complex_data=flag) for flag in (False, True)}  # differ only when bundled
    train_slices = training_axial_slices() if nearest else None
    tables = []
    for name in tasks:
        spec = TASKS[name]
        prob = degrade(spec, ref, seed=seed)
        table = TaskTable(name, spec.label, kind=spec.kind)
        task = get_task(spec.kind)
        fastmri, prior = task.report_fastmri, priors[task.complex_data]
        log(f"{spec.label}: tuning classical methods on the validation slices")
        val_prob = degrade(spec, val, seed=seed + 1000)
        methods = classical_methods(spec, val_prob, train_slices)
        methods.update(baselines(spec, val_prob) if baselines is not None else {})
        for mname, fn in methods.items():
            table.results[mname] = run_method(fn, prob, fastmri)
            log(f"  {mname}: {table.results[mname].psnr.mean():.2f} dB")
        for label, fn in _medscore_methods(spec, prior.model, presets, denoise_methods, samples, seed, adapt):
            r = table.results[label] = run_method(fn, prob, fastmri)
            log(f"  {label}: {r.psnr.mean():.2f} dB, {r.nfe} NFE, {r.seconds_per_slice:.1f} s/slice")
        if out_dir is not None:
            _write_task_outputs(out_dir, table, prob, affine if affine is not None else np.eye(4))
        tables.append(table)
    return tables


def _medscore_methods(spec: TaskSpec, model, presets: list[str], denoise_methods: tuple[str, ...],
                      samples: int | None, seed: int, adapt: Adaptation | None) -> Iterator[tuple[str, Method]]:
    """(label, method) of every medscore run of a task: each preset and solver method, and with ``adapt`` each
    preset again with a fresh adaptation of the prior to this task's slices."""
    task = get_task(spec.kind)
    for preset in presets:
        opts = SamplerOptions(preset=preset, samples=samples, seed=seed)
        for dm in _solver_methods(task, denoise_methods):
            name = dm if dm in task.preset_free_methods else preset
            if name != preset and preset != presets[0]:
                continue  # e.g. tweedie: one NFE, independent of the preset
            yield f"medscore {name}", medscore_method(spec, model, opts, denoise_method=dm)
            if adapt is not None and task.adaptable:
                yield f"medscore {name} + adapt", medscore_method(spec, AdaptedPrior(model, adapt), opts,
                                                                  denoise_method=dm)


def _solver_methods(task: Task, wanted: tuple[str, ...]) -> list[str]:
    """The medscore methods to run on a task: those of ``wanted`` it offers when it offers several, else its one."""
    return [m for m in wanted if m in task.methods] if len(task.methods) > 1 else [task.methods[0]]


def _write_task_outputs(out_dir: Path, table: TaskTable, prob: Problem, affine: np.ndarray) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    best = table.best_classical()
    ms = [k for k in table.results if k.startswith("medscore")]
    main = ms[-1] if ms else None
    paths = task_outputs(out_dir, table.task)
    _save_nifti(prob.ref, paths["reference"], affine)
    _save_nifti(prob.baseline, paths["input"], affine)
    if main is not None:
        _save_nifti(table.results[main].estimate, paths["medscore"], affine)
    mid = len(prob.ref) // 2
    cols = [(next(iter(table.results)), prob.baseline)]
    if best is not None:
        cols.append((best.split(" (")[0], table.results[best].estimate))
    if main is not None:
        cols.append((main, table.results[main].estimate))
    cols.append(("reference", prob.ref))
    if main is not None:
        cols.append(("|error| x5", (table.results[main].estimate - prob.ref).abs()))
    titles = [c[0] for c in cols]
    wins = [(0.0, 0.2) if t.startswith("|error|") else (0.0, 1.0) for t in titles]
    save_panel([c[1][mid, 0] for c in cols], titles, paths["panel"], wins)


def _time(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def speed_table(model=None, *, device: str = "cpu", train_size: int = 64, batch: int = 16,
                slice_shape: tuple[int, int] = (151, 187), slice_batch: int = 4, repeats: int = 5) -> str:
    """Markdown rows: training images/s (DSM loss, Adam, EMA on random data) and ms per network evaluation
    per slice at inference, for the given model (default: the bundled prior's architecture)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from ..training.losses import dsm_loss
    from ..nets import count_parameters

    dev = torch.device(device)
    net = load_prior(model, dev).model.train()
    sig = net.sigmas
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(batch, 1, train_size, train_size, device=dev)
    amp = dev.type == "cuda"

    def train_step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = dsm_loss(net, x, sig[torch.randint(0, len(sig), (batch,), generator=g, device=dev)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(net)

    t_train = _time(train_step, repeats)
    net.eval()
    xs = torch.rand(slice_batch, 1, *slice_shape, device=dev)
    s = torch.full((slice_batch,), 0.1, device=dev)

    @torch.inference_mode()
    def forward() -> None:
        net(xs, s)

    t_fwd = _time(forward, repeats)
    return "\n".join([
        "| what | value |", "|---|---|",
        f"| parameters | {count_parameters(net):,} |",
        f"| training, {train_size} px patches, batch {batch} | {batch / t_train:.1f} images/s |",
        f"| inference, {slice_shape[0]}x{slice_shape[1]} slices, batch {slice_batch} | "
        f"{t_fwd / slice_batch * 1000:.0f} ms per network evaluation per slice |",
        f"| 100-NFE reconstruction of one such slice | {100 * t_fwd / slice_batch:.1f} s |",
    ])
