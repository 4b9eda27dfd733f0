"""Shared CLI pieces: consoles, the single error boundary, progress bars."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import typer
from rich.console import Console
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
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def progress_bar(*extra: str) -> Progress:
    """A rich progress bar on stderr: description, bar, count, extra fields, elapsed and ETA."""
    fields = [TextColumn(f"{{task.fields[{name}]}}") for name in extra]
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *fields,
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console, transient=False,
    )
