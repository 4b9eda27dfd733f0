"""The one file driver: source -> scaled stack -> the task measures it -> streamed batches -> unscaled -> files.

:func:`solve_scan` serves every registered task and both kinds of source: scans (NIfTI, DICOM, NumPy;
:class:`~.scan_source.ScanSource`) and measured k-space (:class:`~.kspace_source.KSpaceSource`). Before any model is
loaded it opens the source, opens every file the task's inputs name (:func:`open_inputs`: masks read and checked
against the slices, coil maps opened for batch reads) and checks every output path; the task then sees arrays only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ..checks import check_memory
from ..errors import InputError, OutputError
from ..io.atomic import ensure_writable
from ..devices import resolve_device
from ..io.arrays import open_smaps, read_mask
from ..physics import expand_mask
from ..priors import load_prior
from ..priors.adapted import save_adapted_prior
from ..solvers import SamplerOptions
from ..solvers.adapt import Adaptation, AdaptedPrior
from ..tasks import Stack, StackSolve, Task, TaskInputs, get_task, volume_options
from .memory import free_memory, model_width, resolve_batch_size, slice_bytes, volume_bytes
from .outputs import OutputPlan, RunReport
from .stream import Progress, Streamed, batch_options, channel_magnitude, first_channel, stream

__all__ = ["Source", "solve_scan", "open_inputs", "check_slice_memory"]


class Source(Protocol):
    """What the driver needs of an input file: open it, plan the outputs, give the stack, write the results."""

    path: Path
    complex_data: bool
    channels: int

    def open(self) -> contextlib.AbstractContextManager[Any]: ...

    @property
    def slice_shape(self) -> tuple[int, int]: ...

    def output_plan(self, out: str | Path | None, task: Task, input_files: tuple[Any, ...]) -> OutputPlan: ...

    def stack(self, prior: Any, inputs: TaskInputs) -> Stack: ...

    def write(self, report: RunReport, plan: OutputPlan, task: Task, prepared: StackSolve, res: Streamed,
              info: dict[str, Any]) -> None: ...


@contextlib.contextmanager
def open_inputs(inputs: TaskInputs, source: Source) -> Iterator[tuple[TaskInputs, tuple[Any, ...]]]:
    """``inputs`` with every file field opened: a mask path read and checked against the source's slices (so is
    a mask array), coil maps (a path or an array) opened for batch reads and read once (finite, no slice all zero:
    :func:`~medscore.io.arrays.check_smaps`). Also yields
    the file paths among the inputs, which no output may overwrite."""
    files = tuple(getattr(inputs, name) for name in inputs.FILES if isinstance(getattr(inputs, name), (str, Path)))
    opened: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        for name in inputs.FILES:
            value = getattr(inputs, name)
            if value is None:
                continue
            if name == "smaps":  # read once as they open: NaN/inf and all-zero slices are refused now
                opened[name] = stack.enter_context(open_smaps(value, _kspace_shape(source)))
            else:
                arr = read_mask(value) if isinstance(value, (str, Path)) else value
                expand_mask(arr, source.slice_shape)  # checked now, before any model is loaded
                opened[name] = arr
        yield dataclasses.replace(inputs, **opened), files


def _kspace_shape(source: Source) -> tuple[int, ...]:
    src = getattr(source, "src", None)
    return tuple(src.shape) if src is not None else ()


def solve_scan(task: Task | str, source: Source, inputs: TaskInputs | None = None, *, model: Any = None,
               out: str | Path | None = None, opts: SamplerOptions | None = None, batch_size: int | str = 4,
               device: str = "auto", progress: Progress | None = None, adapt: Adaptation | bool | None = None,
               save_adapted: str | Path | None = None, volume: bool = False) -> RunReport:
    """Solve ``task`` on every slice of ``source`` with the task's ``inputs`` (its ``inputs_type``; default: its
    defaults), writing what the source writes (``OUT``, default ``<input>_<task.output_suffix>.nii.gz``, and its
    side files). ``batch_size``: slices per solver call, or ``"auto"`` (from free memory). ``adapt``: test-time
    adaptation of the prior, one parameter set for the whole scan (:mod:`medscore.solvers.adapt`);
    ``save_adapted``: a new folder for the adapted prior, which ``model=`` loads for the next scan. ``volume``: one
    coherent solve of all slices, coupled along the slice axis in every data step
    (:mod:`medscore.solvers.slice_coupling`, the task's tuned ``volume_z_tv`` unless ``opts.z_tv`` is set); the network
    still runs ``batch_size`` slices at a time."""
    t0 = time.perf_counter()
    task = get_task(task) if isinstance(task, str) else task
    inputs = inputs if inputs is not None else task.inputs_type()
    task.check_inputs(inputs)
    asked, adapt = adapt, check_adaptation(task, adapt, save_adapted)
    opts = volume_options(task, opts or SamplerOptions(), volume)
    with source.open(), open_inputs(inputs, source) as (opened, files):
        plan = source.output_plan(out, task, files)
        dev = resolve_device(device)
        prior = load_prior(model, dev, complex_data=source.complex_data)
        _check_memory(task, source, prior, opts, dev, getattr(inputs, "method", None))
        prepared = task.prepare_stack(source.stack(prior, opened), dev, opts, opened)
        net = AdaptedPrior(prior.model, Adaptation.of(asked, prior.model)) if adapt is not None else prior.model
        res = _stream(prepared, source, prior, net, opts, batch_size, dev, progress, volume)
        report = RunReport(task.name, nfe=res.nfe, seconds=res.seconds, slices=len(res.mean))
        info = {"prior": prior, "opts": opts, "device": dev, "raw": inputs,
                "elapsed": lambda: time.perf_counter() - t0}
        source.write(report, plan, task, prepared, res, info)
        if isinstance(net, AdaptedPrior):
            report.info["adaptation"] = net.report()
            if save_adapted is not None:
                report.outputs["adapted_prior"] = save_adapted_prior(save_adapted, prior, net)
    return report


def check_adaptation(task: Task, adapt: Adaptation | bool | None, save_adapted: str | Path | None) -> Adaptation | None:
    """Before anything is loaded: the task has an operator to adapt to; ``save_adapted`` names a new, writable
    folder and comes with ``adapt``. Returns the settings (``True``: the defaults; ``False``/None: no adaptation)."""
    adapt = Adaptation.of(adapt)
    if adapt is not None and not task.adaptable:
        raise InputError(f"--adapt (adapt=) needs a forward operator: {task.label} has none")
    if save_adapted is None:
        return adapt
    if adapt is None:
        raise InputError("--save-adapted (save_adapted=) needs --adapt (adapt=)")
    folder = Path(save_adapted)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputError(f"--save-adapted {folder} exists and is not an empty folder: choose a new folder")
    ensure_writable(folder / "model.json", "--save-adapted")
    return adapt


def check_slice_memory(shape: tuple[int, int], ngf: int, chains: int, channels: int, device: Any, what: str,
                       hint: str) -> None:
    """One slice of ``shape`` solved with ``chains`` chains (the batch ``batch_size="auto"`` never goes below) fits in
    the free memory of ``device``, by the estimate of :func:`.memory.slice_bytes`; else one InputError line."""
    free = free_memory(device) if getattr(device, "type", "cpu") == "cuda" else None  # None: host memory, if known
    check_memory(what, slice_bytes(shape, ngf, chains, channels), hint, free)


def _check_memory(task: Task, source: Source, prior: Any, opts: SamplerOptions, device: Any,
                  method: str | None) -> None:
    """Before the stack is measured or any slice solved: one slice and its chains fit in free memory."""
    chains, (h, w) = task.chains(opts, method), source.slice_shape
    check_slice_memory((h, w), model_width(prior.meta), chains, source.channels, device,
                       f"one {h} x {w} slice with {chains} chain(s)", "lower --samples (samples=) or free memory")


def _check_volume_memory(n: int, shape: tuple[int, int], bs: int, prior: Any, prepared: StackSolve, source: Source,
                         device: Any) -> None:
    """Before a coherent solve: the whole volume's solver state and one network batch fit in free memory."""
    coils = getattr(source, "coils", 0)  # measured multi-coil k-space: its data and maps are held for every slice
    need = (bs * slice_bytes(shape, model_width(prior.meta), prepared.chains, prepared.channels)
            + volume_bytes(n, shape, prepared.chains, prepared.channels, coils))
    free = free_memory(device) if getattr(device, "type", "cpu") == "cuda" else None
    check_memory(f"a coherent solve of {n} slices of {shape[0]} x {shape[1]}", need,
                 "solve slice by slice (--slices), lower --batch-size, or free memory", free)


def _stream(prepared: StackSolve, source: Source, prior: Any, net: Any, opts: SamplerOptions, batch_size: int | str,
            device: Any, progress: Progress | None, volume: bool = False) -> Streamed:
    """Every slice through the prepared solver with the score model ``net`` (the prior's, or its adapted copy), in
    batches of ``batch_size`` (``"auto"``: from free memory); with ``volume`` all slices in one solver batch whose
    network calls take ``batch_size`` slices (with their chains and channels) at a time."""
    n, shape = len(prepared.baseline), source.slice_shape
    bs = resolve_batch_size(batch_size, n, shape, device, model_width(prior.meta), prepared.chains,
                            channels=prepared.channels)
    if volume:
        _check_volume_memory(n, shape, bs, prior, prepared, source, device)
        opts, bs = dataclasses.replace(opts, network_batch=bs * prepared.chains), n
    reduce = channel_magnitude if prepared.channels == 2 else first_channel
    return stream(n, shape, lambda sl, cb: prepared.solve(net, sl, batch_options(opts, sl), cb), bs,
                  progress, reduce=reduce)
