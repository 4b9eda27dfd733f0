"""Entry point: ``medscore COMMAND``. Commands import torch and MONAI lazily so --help is instant."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import __version__
from .bundle import export_bundle_command
from .evaluate import benchmark_command, demo_command, tune_command
from .external import external_command
from .mask import mask_command
from .models import level_split_command, models_command
from .solve import denoise_command, inpaint_command, reconstruct_command, sample_command
from .train import train_command

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Score-based generative priors (NCSN) for medical scans: train, sample, reconstruct.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medscore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="show the version")] = None,
) -> None:
    """medscore command line."""


app.command("train")(train_command)
app.command("reconstruct")(reconstruct_command)
app.command("inpaint")(inpaint_command)
app.command("denoise")(denoise_command)
app.command("sample")(sample_command)
app.command("mask")(mask_command)
app.command("models")(models_command)
app.command("level-split")(level_split_command)
app.command("demo")(demo_command)
app.command("benchmark")(benchmark_command)
app.command("benchmark-external")(external_command)
app.command("tune")(tune_command)
app.command("export-bundle")(export_bundle_command)

if __name__ == "__main__":
    app()
