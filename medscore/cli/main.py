"""Entry point: ``medscore COMMAND``. Commands import torch and MONAI lazily so --help is instant."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import __version__
from .train import train_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Score-based generative priors (NCSN) for medical scans: train, sample, reconstruct.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medscore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="show the version")] = None,
) -> None:
    """medscore command line."""


app.command("train")(train_command)

if __name__ == "__main__":
    app()
