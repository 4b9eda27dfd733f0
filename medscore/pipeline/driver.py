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

from ..devices import resolve_device
from ..io.arrays import ComplexArrayFile, open_smaps, read_mask
from ..physics import expand_mask
from ..priors import load_prior
from ..solvers import SamplerOptions
from ..tasks import Stack, StackSolve, Task, TaskInputs, get_task
from .memory import model_width, resolve_batch_size
from .outputs import OutputPlan, RunReport
from .stream import Progress, Streamed, batch_options, channel_magnitude, first_channel, stream

__all__ = ["Source", "solve_scan", "open_inputs"]


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
    a mask array), coil maps (a path or an array) opened for batch reads and read once for finiteness. Also yields
    the file paths among the inputs, which no output may overwrite."""
    files = tuple(getattr(inputs, name) for name in inputs.FILES if isinstance(getattr(inputs, name), (str, Path)))
    opened: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        for name in inputs.FILES:
            value = getattr(inputs, name)
            if value is None:
                continue
            if name == "smaps":
                opened[name] = stack.enter_context(open_smaps(value, _kspace_shape(source)))
                _read_all(opened[name])
            else:
                arr = read_mask(value) if isinstance(value, (str, Path)) else value
                expand_mask(arr, source.slice_shape)  # checked now, before any model is loaded
                opened[name] = arr
        yield dataclasses.replace(inputs, **opened), files


def _kspace_shape(source: Source) -> tuple[int, ...]:
    src = getattr(source, "src", None)
    return tuple(src.shape) if src is not None else ()


def _read_all(maps: ComplexArrayFile, chunk: int = 8) -> None:
    """Read every batch of the maps once, so NaN/inf values are refused before any compute."""
    if len(maps.shape) == 3:
        return  # shared maps are read whole when they are used
    for start in range(0, maps.shape[0], chunk):
        maps.read(slice(start, start + chunk))


def solve_scan(task: Task | str, source: Source, inputs: TaskInputs | None = None, *, model: Any = None,
               out: str | Path | None = None, opts: SamplerOptions | None = None, batch_size: int | str = 4,
               device: str = "auto", progress: Progress | None = None) -> RunReport:
    """Solve ``task`` on every slice of ``source`` with the task's ``inputs`` (its ``inputs_type``; default: its
    defaults), writing what the source writes (``OUT``, default ``<input>_<task.output_suffix>.nii.gz``, and its
    side files). ``batch_size``: slices per solver call, or ``"auto"`` (from free memory)."""
    t0 = time.perf_counter()
    task = get_task(task) if isinstance(task, str) else task
    inputs = inputs if inputs is not None else task.inputs_type()
    task.check_inputs(inputs)
    opts = opts or SamplerOptions()
    with source.open(), open_inputs(inputs, source) as (opened, files):
        plan = source.output_plan(out, task, files)
        dev = resolve_device(device)
        prior = load_prior(model, dev, complex_data=source.complex_data)
        prepared = task.prepare_stack(source.stack(prior, opened), dev, opts, opened)
        res = _stream(prepared, source, prior, opts, batch_size, dev, progress)
        report = RunReport(task.name, nfe=res.nfe, seconds=res.seconds, slices=len(res.mean))
        info = {"prior": prior, "opts": opts, "device": dev, "raw": inputs,
                "elapsed": lambda: time.perf_counter() - t0}
        source.write(report, plan, task, prepared, res, info)
    return report


def _stream(prepared: StackSolve, source: Source, prior: Any, opts: SamplerOptions, batch_size: int | str,
            device: Any, progress: Progress | None) -> Streamed:
    """Every slice through the prepared solver, in batches of ``batch_size`` (``"auto"``: from free memory)."""
    n, shape = len(prepared.baseline), source.slice_shape
    bs = resolve_batch_size(batch_size, n, shape, device, model_width(prior.meta), prepared.chains,
                            channels=prepared.channels)
    reduce = channel_magnitude if prepared.channels == 2 else first_channel
    return stream(n, shape, lambda sl, cb: prepared.solve(prior.model, sl, batch_options(opts, sl), cb), bs,
                  progress, reduce=reduce)
