"""The task interface and its registry: one small object per inverse problem (MRI, inpainting, denoising).

A task knows its forward operator, the data consistency samplers see (``DataConsistency``), its warm
start, how it simulates measurements of a reference with a fixed seed (benchmark, tuning), its classical
baselines, and how a stack of slices is measured and solved batch by batch (file pipeline, MONAI
inferer). The API, the CLI, the file pipeline, the inferer and the benchmark look tasks up here by name
(``get_task("mri")``) and never compare task names themselves. Adding a task is one file with a
``@register_task`` class, imported in ``medscore/tasks/__init__.py`` (see ``docs/design.md``).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..solvers import LevelCallback, SamplerOptions, ScoreModel, SolverResult

__all__ = ["TaskSpec", "Problem", "Method", "StackSolve", "StackSolver", "Task", "TASKS", "register_task",
           "get_task", "task_names", "per_image", "volume_options", "batch_of", "TaskInputs", "ImageStack",
           "KSpaceStack", "SliceReader", "Stack"]


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark degradation. ``kind`` names the registered task that simulates and solves it; the other
    fields are that task's parameters (fields another task uses keep their defaults)."""

    name: str
    kind: str
    label: str
    pattern: str = "random"
    accel: float = 4.0
    center: float = 0.08
    kspace_noise: float = 0.0  # std of complex k-space noise (orthonormal FFT, [0, 1] image scale)
    noise: float = 0.0
    missing: float = 0.0
    box: float = 0.0  # side of a central square hole, as a fraction of the smaller image side


@dataclass
class Problem:
    """Degraded observations of ``ref`` (N, 1, H, W) and what each method needs: the measurements ``y``,
    the operator ``op``, the ``baseline`` estimate without a prior (zero-filled / noisy / masked input), the
    mask (k-space or known pixels) and ``noise_std``, the std of the measurement noise ([0, 1] image scale)."""

    spec: TaskSpec
    ref: Tensor
    y: Tensor
    baseline: Tensor
    op: Any = None
    mask: Tensor | None = None
    noise_std: float = 0.0


Method = Callable[[Problem], tuple[Tensor, int]]
"""A benchmark method: problem -> (estimate (N, 1, H, W), network evaluations per slice)."""
StackSolver = Callable[[ScoreModel, slice, SamplerOptions, "LevelCallback | None"], SolverResult]
"""``solve(model, rows, opts, callback)``: the solver's result for the slices ``rows`` of a stack."""


@dataclass(frozen=True)
class TaskInputs:
    """What a task needs besides the slices (a small dataclass per task). The fields named in ``FILES`` may hold
    a file path when the caller gives one; the file driver opens those files before the task sees the inputs, so a
    task only ever gets arrays (or, for large complex files, a :class:`SliceReader`)."""

    FILES: ClassVar[tuple[str, ...]] = ()


class SliceReader(Protocol):
    """A complex array read in batches along its first axis (an opened k-space or coil-map file; ``path`` names it
    in messages and sidecars)."""

    path: Path

    @property
    def shape(self) -> tuple[int, ...]: ...

    def read(self, sl: slice) -> np.ndarray: ...


@dataclass
class ImageStack:
    """Slices (N, H, W) of a scan on the model's [0, 1] scale: what image tasks measure and solve. ``scale``: the
    scan's ``(lo, hi)`` percentiles (0th and 99.5th for the bundled priors) that were mapped to 0 and 1 (default
    (0, 1): the slices are the scan itself)."""

    ref: np.ndarray
    scale: tuple[float, float] = (0.0, 1.0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.ref.shape[1:]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.ref)

    def model_std(self, fraction: float) -> float:
        """A noise std given as a ``fraction`` of the scan's upper percentile ``hi``, on the slices' own scale:
        ``fraction * hi / (hi - lo)`` (the scaling divides by ``hi - lo``, which exceeds ``hi`` when noise reaches
        below zero, ``lo < 0``)."""
        lo, hi = self.scale
        return float(fraction) * hi / (hi - lo)


@dataclass
class KSpaceStack:
    """Measured centred k-space, read batch by batch: ``kspace`` (S, C, H, W) or single coil (S, H, W), its
    sampling ``mask`` (H, W), the zero-filled root-sum-of-squares image (S, H, W) in file units, the ``scale`` that
    maps the data to the model's scale and the k-space noise std (file units)."""

    kspace: SliceReader
    mask: np.ndarray
    zerofilled: np.ndarray
    scale: float
    noise_std: float

    @property
    def single_coil(self) -> bool:
        return len(self.kspace.shape) == 3

    @property
    def shape(self) -> tuple[int, int]:
        return self.kspace.shape[-2:]  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.kspace.shape[0]

    def coils(self, sl: slice) -> np.ndarray:
        """Slices ``sl`` as (B, C, H, W); single-coil data get C = 1."""
        k = self.kspace.read(sl)
        return k[:, None] if k.ndim == 3 else k


Stack = ImageStack | KSpaceStack


@dataclass
class StackSolve:
    """A stack of slices as a task measured it, ready to be solved batch by batch.

    ``baseline`` is the estimate without a prior (complete once every batch is solved); ``chains`` the
    sampler chains per slice and ``channels`` the image channels (2: complex images, streamed as their magnitude),
    both for the memory estimate; ``simulated`` says that the measurements were simulated from the stack, which is
    then the reference for metrics. ``extras`` are arrays the solve fills beside the estimate (the complex image of
    measured k-space) and ``info`` what the run's sidecar records of the task's own steps.
    """

    solve: StackSolver
    baseline: np.ndarray
    chains: int
    simulated: bool = True
    channels: int = 1
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """One inverse problem. Subclasses set the class attributes and implement the abstract methods; their
    tensor-level ``solve`` builds the operator, the guidance and the warm start and calls
    ``medscore.solvers.solve`` (the one driver), with ``name`` as the preset's per-task key."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    output_suffix: ClassVar[str] = "medscore"  # default output: <scan>_<suffix>.nii.gz
    progress_label: ClassVar[str] = "solving"  # the CLI progress bar
    baseline_method: ClassVar[str] = ""  # the benchmark's name of the no-prior estimate
    baseline_title: ClassVar[str] = "input"  # the same in file reports and panels
    baseline_output: ClassVar[str] = ""  # and its file, OUT_<baseline_output>.nii.gz (one of pipeline.DERIVED)
    methods: ClassVar[tuple[str, ...]] = ("sampler",)  # solver methods; the first is the default
    preset_free_methods: ClassVar[tuple[str, ...]] = ()  # methods that ignore the sampler preset
    tune_as_base: ClassVar[bool] = False  # medscore tune: this task's best setting becomes the preset itself
    tune_override: ClassVar[bool] = True  # medscore tune: a different best setting becomes a per-task override
    report_fastmri: ClassVar[bool] = False  # the benchmark adds fastMRI-convention metrics
    complex_data: ClassVar[bool] = False  # solved as complex images: the bundled complex prior when there is one
    inputs_type: ClassVar[type[TaskInputs]] = TaskInputs  # what prepare_stack takes besides the slices
    adaptable: ClassVar[bool] = True  # has a forward operator: test-time adaptation applies (medscore.solvers.adapt)
    #: the weight of TV along the slice axis in a coherent volume solve (``--volume``; None: no data step to couple)
    volume_z_tv: ClassVar[float | None] = None

    @abstractmethod
    def degrade(self, spec: TaskSpec, ref: Tensor, seed: int = 0) -> Problem:
        """Simulate the measurements of ``ref`` (N, 1, H, W) that ``spec`` describes, from fixed seeds."""

    @abstractmethod
    def solve_problem(self, model: ScoreModel, prob: Problem, opts: SamplerOptions, rows: slice = slice(None), *,
                      method: str | None = None, callback: LevelCallback | None = None) -> SolverResult:
        """medscore's estimate of the slices ``rows`` of ``prob`` (``method``: one of ``methods``, None = default;
        tasks with one method ignore it)."""

    @abstractmethod
    def classical_methods(self, spec: TaskSpec, val: Problem, train_slices: Tensor | None) -> dict[str, Method]:
        """The baselines, the no-prior estimate first, parameters tuned on the validation problem ``val``;
        ``train_slices`` (same size as the test slices) adds the nearest-training-slice honesty check."""

    @abstractmethod
    def prepare_stack(self, stack: Stack, device: torch.device, opts: SamplerOptions,
                      inputs: TaskInputs) -> StackSolve:
        """Measure the slices of ``stack`` with the task's ``inputs`` (an instance of ``inputs_type``, files already
        opened) for :class:`StackSolve` batches on ``device``."""

    def preset_key(self, mask: Any = None) -> str:
        """The key of the presets' per-task overrides this problem is solved under: the task's name, or a
        regime of it (``inpaint-hole``) that falls back to the task's own override."""
        return self.name

    def check_inputs(self, inputs: TaskInputs) -> None:
        """Checks of the ``inputs`` of :meth:`prepare_stack` made before any scan or model is loaded."""

    def chains(self, opts: SamplerOptions, method: str | None = None) -> int:
        """Sampler chains per slice for ``opts`` (one for methods that run no chains)."""
        return 1 if method in self.preset_free_methods else opts.n_samples(self.name)


TASKS: dict[str, Task] = {}
"""Registered tasks by name (one instance each: tasks hold no state)."""


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its ``name`` to the API, CLI, pipeline and benchmark."""
    if not cls.name or cls.name in TASKS:
        raise ValueError(f"task name {cls.name!r} is empty or taken")
    TASKS[cls.name] = cls()
    return cls


def task_names() -> list[str]:
    """Registered task names, in registration order."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The registered task ``name``; InputError naming the known tasks otherwise."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}: choose from {', '.join(TASKS)}")
    return TASKS[name]


def volume_options(task: Task, opts: SamplerOptions, volume: bool) -> SamplerOptions:
    """``opts`` for a coherent volume solve: the slice coupling's weight (the caller's ``z_tv``, else the task's
    tuned ``volume_z_tv``); checked before anything is loaded. A weight without ``volume`` is refused: the batches
    of a slice-by-slice solve are not volumes."""
    if not volume:
        if opts.z_tv is not None:
            raise InputError("--z-tv (z_tv=) weights the coupling of a coherent volume solve: add --volume "
                             "(volume=True)")
        return opts
    if task.volume_z_tv is None:
        raise InputError(f"--volume (volume=) couples the data steps of the slices: {task.label} has none")
    return dataclasses.replace(opts, z_tv=task.volume_z_tv if opts.z_tv is None else opts.z_tv)


def batch_of(stack: np.ndarray, rows: slice, device: torch.device) -> Tensor:
    """Slices ``rows`` of an (N, H, W) stack as a (B, 1, H, W) tensor on ``device``."""
    return torch.from_numpy(stack[rows][:, None]).to(device)


def per_image(fn: Callable[..., np.ndarray], prob: Problem, **kw: Any) -> Tensor:
    """A 2D numpy baseline applied to every degraded image of ``prob`` (with its mask when it has one)."""
    out = []
    for i in range(len(prob.ref)):
        args = (prob.y[i, 0].numpy(),) if prob.mask is None else (prob.y[i, 0].numpy(), prob.mask[i, 0].numpy())
        out.append(torch.from_numpy(np.asarray(fn(*args, **kw), dtype=np.float32)))
    return torch.stack(out)[:, None]
