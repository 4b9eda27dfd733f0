"""Shared CLI pieces: consoles, the single error boundary, progress bars."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err_console = Console(stderr=True)
console = Console()


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn user-facing errors into one red line on stderr and exit code 1.

    Set ``MEDSCORE_DEBUG=1`` to see the traceback instead.
    """
    from ..errors import MedscoreError

    try:
        yield
    except (MedscoreError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if os.environ.get("MEDSCORE_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def progress_bar(*extra: str) -> Progress:
    """A rich progress bar on stderr: description, bar, count, extra fields, elapsed and ETA."""
    fields = [TextColumn(f"{{task.fields[{name}]}}") for name in extra]
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *fields,
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console, transient=False,
    )


def print_report(report, title: str | None = None) -> None:
    """Rich table of a RunReport's metrics (mean +- std over slices), then the files written."""
    from rich.table import Table

    if report.metrics:
        table = Table(title=title or f"{report.task}: {report.slices} slice(s), {report.nfe} NFE/slice, "
                                     f"{report.seconds:.1f} s")
        table.add_column("method")
        for name in ("PSNR dB", "SSIM", "NMSE"):
            table.add_column(name, justify="right")
        for method, vals in report.metrics.items():
            table.add_row(method,
                          *(f"{vals[k][0]:.4f} ± {vals[k][1]:.4f}" if k != "psnr" else f"{vals[k][0]:.2f} ± "
                                                                                       f"{vals[k][1]:.2f}"
                                    for k in ("psnr", "ssim", "nmse")))
        console.print(table)
    else:
        console.print(f"{report.task}: {report.slices} slice(s), {report.nfe} NFE/slice, {report.seconds:.1f} s (no "
                      f"reference: no metrics)")
    width = max([11, *(len(name) for name in report.info)])
    for name, value in report.info.items():  # what the task chose, e.g. the noise level on both scales
        console.print(f"{name:>{width}}: {value}")
    for name, path in report.outputs.items():
        console.print(f"{name:>{width}}: {path}")


@contextlib.contextmanager
def slice_progress(description: str) -> Iterator:
    """Progress bar over slices x noise levels; yields the ``progress(done, total)`` callback."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def preflight(scan, out, suffix: str, *, axis: int | None = 2, batch_size=None, kspace: bool = False) -> None:
    """Checks of a solve command made before any model is loaded: the scan exists, its slices are large
    enough (from the file header), the batch size, and that the output location can be written: a NIfTI, or for
    ``kspace`` input also a fastMRI ``.h5``, never the input itself."""
    from pathlib import Path

    from ..errors import InputError
    from ..io.atomic import check_not_input, ensure_writable
    from ..io.scans import output_paths, peek_shape
    from ..checks import check_batch_size, check_slice_shape

    scan = Path(scan)
    if not scan.exists():
        raise InputError(f"scan not found: {scan}")
    if batch_size is not None:
        check_batch_size("--batch-size", batch_size)
    shape = peek_shape(scan)
    if shape is not None and not kspace:
        check_slice_shape(scan.name, shape, axis)
    elif shape is not None and len(shape) in (2, 3):
        check_slice_shape(scan.name, shape[-2:])
    target = output_paths(scan, out, suffix)
    name = target.name.lower()
    if name.endswith(".h5") and not kspace:
        raise InputError(f"--out {target.name}: a fastMRI .h5 output needs k-space input (a fastMRI .h5 or a complex "
                         ".npy); for image inputs give a .nii or .nii.gz file")
    if not name.endswith((".nii", ".nii.gz", ".h5")):
        h5 = " (or a fastMRI .h5)" if kspace else ""
        raise InputError(f"--out must be a .nii or .nii.gz file{h5}, got {target.name}")
    check_not_input(target, scan)
    ensure_writable(target, "--out")
