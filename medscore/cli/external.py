"""``medscore benchmark-external``: medscore against classical methods on real scans it never trained or tuned on."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, err_console, handle_errors


def _names(text: str, known: list[str], option: str) -> list[str]:
    from ..errors import InputError

    names = known if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise InputError(f"{option}: unknown name(s) {bad}; choose from {', '.join(known)} or 'all'")
    return names


def external_command(
    out: Annotated[Path, typer.Option(help="folder for external.md, external_results.json and panels")] = Path("docs"),
    scans: Annotated[str, typer.Option(help="comma-separated external scans, or 'all'")] = "all",
    tasks: Annotated[str, typer.Option(help="comma-separated task names, or 'all'")] = "all",
    preset: Annotated[str, typer.Option(help="medscore's sampler preset")] = "fast",
    adapt: Annotated[bool, typer.Option("--adapt/--no-adapt", help="also run medscore with test-time "
                                                                   "adaptation")] = True,
    bart: Annotated[bool, typer.Option("--bart/--no-bart", help="add BART's pics when bart is installed")] = True,
    model: Annotated[Optional[Path], typer.Option(help="model folder; default: the bundled prior")] = None,
) -> None:
    """Real scans that are neither training data nor used for tuning (nibabel's EPI, the INIA19 macaque brain):
    1D 4x / 8x, multi-coil Poisson 8x and 1D 8x, inpainting, denoising; PSNR, SSIM and HFEN; writes external.md."""
    with handle_errors():
        from ..evaluation.benchmark import check_presets
        from ..evaluation.report import machine, write_json
        from ..evaluation.external import (EXTERNAL_SCANS, EXTERNAL_TASKS, available_scans, run_external,
                                           write_external)
        from ..io.atomic import check_out_folder
        from ..solvers.adapt import Adaptation

        scan_names = _names(scans, list(EXTERNAL_SCANS), "--scans")
        task_names = _names(tasks, EXTERNAL_TASKS, "--tasks")
        check_presets([preset], model)
        check_out_folder(out, [Path("external.md"), Path("external_results.json")])
        log = lambda m: err_console.print(m, highlight=False)  # noqa: E731
        found = available_scans(scan_names, log)
        if not found:
            from ..errors import InputError

            raise InputError("none of the external scans is installed (apt-get install mricron-data for INIA19)")
        tables = run_external(found, task_names, preset, model=model, adapt=Adaptation() if adapt else None,
                              out_dir=out / "figures" / "external", log=log, bart=bart)
        command = "medscore benchmark-external " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        md = write_external(tables, out / "external.md", command, machine())
        write_json(tables, out / "external_results.json", {"command": command, "machine": machine()})
        console.print(f"wrote {md}")
