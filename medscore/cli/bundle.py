"""``medscore export-bundle DIR``: the prior as a MONAI bundle (``python -m monai.bundle run`` runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, handle_errors


def export_bundle_command(
    directory: Annotated[Path, typer.Argument(help="new (or empty) bundle folder")],
    model: Annotated[Optional[Path], typer.Option(
        help="training output folder or its model.safetensors; default: the bundled prior")] = None,
    task: Annotated[str, typer.Option(help="default task of the bundle: mri, inpaint or denoise")] = "mri",
) -> None:
    """Export a score prior as a MONAI bundle (configs, safetensors weights, README)."""
    with handle_errors():
        from ..monai.bundle import export_bundle

        root = export_bundle(directory, model, task=task)
        console.print(f"bundle written to {root}; run it with:\n"
                      f"  python -m monai.bundle run --config_file {root / 'configs' / 'inference.json'} "
                      f"--bundle_root {root} --dataset_dir SCANS_DIR --output_dir OUT_DIR")
