"""``medscore demo`` and ``medscore benchmark``: medscore against classical methods on held-out slices."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, err_console, handle_errors

ModelOpt = Annotated[Optional[Path], typer.Option(help="model folder or weights; default: the bundled prior")]


def _table(tables, title: str):
    from rich.table import Table

    table = Table(title=title)
    fastmri = any(t.fastmri for t in tables)  # fastMRI-convention columns (volume PSNR, SSIM) for tasks that have them
    cols = [("task", "left"), ("method", "left"), ("PSNR dB", "right"), ("SSIM", "right"), ("s/slice", "right"),
            ("NFE", "right")] + [("fastMRI PSNR", "right"), ("fastMRI SSIM", "right")] * fastmri
    for col, j in cols:
        table.add_column(col, justify=j)  # type: ignore[arg-type]
    for t in tables:
        best = t.best_classical()
        for i, (k, r) in enumerate(t.results.items()):
            plain = f"[bold]{k}[/]" if k.startswith("medscore") else k
            name = f"{k} [dim](best classical)[/]" if k == best else plain
            fm = [f"{r.fastmri['psnr']:.2f}", f"{r.fastmri['ssim']:.4f}"] if r.fastmri else ["", ""]
            table.add_row(t.label if i == 0 else "", name, f"{r.psnr.mean():.2f}", f"{r.ssim.mean():.4f}",
                          f"{r.seconds_per_slice:.2f}", str(r.nfe), *fm[:2 * fastmri],
                          end_section=i == len(t.results) - 1)
    return table


def demo_command(
    out: Annotated[Path, typer.Option(help="folder for NIfTI outputs and PNG panels")] = Path("medscore-demo"),
    slices: Annotated[int, typer.Option(help="held-out test slices to use (from the middle of the slab)")] = 2,
    preset: Annotated[str, typer.Option(help="sampler preset for medscore")] = "fast",
    model: ModelOpt = None,
) -> None:
    """Held-out embedded slices: 4x and 8x MRI, 70 % missing pixels, sigma 0.1 noise; medscore vs classical."""
    with handle_errors():
        from ..evaluation.benchmark import DEMO_TASKS, check_presets, embedded_slices, run_tasks, task_outputs
        from ..io.atomic import check_out_folder
        from ..io.embedded import TEST_SLAB

        check_out_folder(out, [p for t in DEMO_TASKS for p in task_outputs(Path(), t).values()])
        check_presets([preset], model)
        n = TEST_SLAB[1] - TEST_SLAB[0]
        k = max(1, min(slices, n))
        ref, val, affine = embedded_slices(list(range((n - k) // 2, (n - k) // 2 + k)))
        err_console.print(f"medscore demo: {k} held-out slice(s), outputs in {out.resolve()}")
        with err_console.status("running") as status:
            tables = run_tasks(DEMO_TASKS, ref, val, [preset], model=model, out_dir=out, affine=affine,
                               denoise_methods=("tweedie",), log=lambda m: status.update(m.strip()))
        console.print(_table(tables, f"medscore demo on {k} held-out slice(s) (PSNR/SSIM on the [0, 1] scale)"))
        console.print(f"NIfTI outputs and PNG panels: {out.resolve()}")


def benchmark_command(
    out: Annotated[Path,
                   typer.Option(help="folder for benchmarks.md, benchmark_results.json and figures")] = Path("docs"),
    presets: Annotated[str, typer.Option(help="comma-separated medscore presets")] = "fast,default,ald",
    tasks: Annotated[str, typer.Option(help="comma-separated task names, or 'all'")] = "all",
    slices: Annotated[str, typer.Option(help="'all' test slices or a comma-separated index list")] = "all",
    curve: Annotated[bool, typer.Option(help="also measure the quality-vs-NFE curve for MRI 4x")] = True,
    external: Annotated[bool, typer.Option(
        help="also run on a real scan the prior never saw (nibabel's example EPI)")] = True,
    model: ModelOpt = None,
) -> None:
    """Every method on the same degraded held-out slab; writes docs/benchmarks.md and figures."""
    with handle_errors():
        from ..evaluation.benchmark import embedded_slices, external_slices, run_tasks, speed_table
        from ..evaluation.report import machine, write_json, write_markdown

        names, index, chosen = _check_benchmark(out, tasks, slices, presets, curve, external, model)
        presets = ",".join(chosen)
        ref, val, affine = embedded_slices(index)
        command = "medscore benchmark " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        log = lambda m: err_console.print(m, highlight=False)  # noqa: E731
        figs = out / "figures" / "benchmark"
        tables = run_tasks(names, ref, val, presets.split(","), model=model, out_dir=figs, affine=affine, log=log)
        extra = _targets(tables)
        if curve:
            extra += _curve_section(tables, ref, out, model, log)
        if external:
            import nibabel

            epi = Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"
            ext_ref, ext_val, ext_aff = external_slices(epi, [10, 13, 16], [7])
            log("out of distribution: nibabel's example4d.nii.gz (real EPI, 2 mm)")
            ext = run_tasks(EXTERNAL_TASKS, ext_ref, ext_val, [presets.split(",")[0]], model=model,
                            out_dir=figs / "external", affine=ext_aff, log=log, nearest=False,
                            denoise_methods=("tweedie",))
            for t in ext:
                t.task, t.label = "epi-" + t.task, "EPI (out of distribution): " + t.label
            tables += ext
        preamble = PREAMBLE.format(n=len(ref), speed=speed_table(model))
        md = write_markdown(tables, out / "benchmarks.md", command, extra, preamble=preamble)
        write_json(tables, out / "benchmark_results.json", {"command": command, "machine": machine()})
        console.print(_table(tables, "medscore benchmark"))
        console.print(f"wrote {md}")


EXTERNAL_TASKS = ["mri-1d-4x", "denoise-0.05"]  # run on nibabel's example EPI (--external)
CURVE_FIGURE = "figures/nfe_curve_mri4x.png"


def _parse_slices(text: str) -> list[int] | None:
    """``--slices``: ``'all'`` (None) or comma-separated indices of the held-out test slab, each in range."""
    from ..errors import InputError
    from ..io.embedded import TEST_SLAB

    n = TEST_SLAB[1] - TEST_SLAB[0]
    if text.strip() == "all":
        return None
    try:
        index = [int(s) for s in text.split(",")]
    except ValueError:
        index = []
    if not index or any(not 0 <= i < n for i in index):
        raise InputError(f"--slices must be 'all' or comma-separated test slice indices in 0..{n - 1}, got {text!r}")
    return index


def _check_benchmark(out: Path, tasks: str, slices: str, presets: str, curve: bool, external: bool,
                     model) -> tuple[list[str], list[int] | None, list[str]]:
    """``medscore benchmark``'s checks before its minutes of compute: the task names, --slices, every output
    under --out and the presets; returns the tasks, the slice indices (None: all) and the presets."""
    from ..errors import InputError
    from ..evaluation.benchmark import BENCHMARK_TASKS, check_presets
    from ..evaluation.specs import TASKS
    from ..io.atomic import check_out_folder

    names = BENCHMARK_TASKS if tasks == "all" else [t.strip() for t in tasks.split(",")]
    bad = [t for t in names if t not in TASKS]
    if bad:
        raise InputError(f"unknown task(s) {bad}: choose from {', '.join(TASKS)}")
    index = _parse_slices(slices)
    check_out_folder(out, _benchmark_files(names, curve, external))
    chosen = [p.strip() for p in presets.split(",")]
    check_presets(chosen, model, "--presets")
    return names, index, chosen


def _benchmark_files(names: list[str], curve: bool, external: bool) -> list[Path]:
    """Every file ``medscore benchmark`` writes, relative to --out: checked before its minutes of compute."""
    from ..evaluation.benchmark import task_outputs

    figs = Path("figures") / "benchmark"
    files = [Path("benchmarks.md"), Path("benchmark_results.json")]
    files += [p for t in names for p in task_outputs(figs, t).values()]
    files += [Path(CURVE_FIGURE)] * curve
    files += [p for t in EXTERNAL_TASKS for p in task_outputs(figs / "external", t).values()] * external
    return files


PREAMBLE = """All numbers below were produced by the command above, on the code as committed, on the machine named.
Test data: {n} axial slices of the embedded held-out test slab (MNI152 T1, z 76-85, 151 x 187 px,
1 mm; never used for training). Classical parameters were tuned on the validation slab (z 100-101),
medscore's sampler settings too. Every method sees exactly the same degraded inputs (fixed seeds).
Metrics: PSNR / SSIM (scikit-image) / NMSE on the [0, 1] scale of the reference volume (0th and 99.5th
percentiles), data range 1, no cropping; mean +- std over slices. Seconds are wall time per slice on
this machine; NFE = network evaluations per slice (all averaged samples counted). The "nearest training
slice" row is a no-learning honesty check: the training slice that best fits the measurements, with the
measured data kept. It shows how much of a score is memorisation of the one template brain.

## Speed (the prior benchmarked)

{speed}

## Quality
"""


def _curve_section(tables, ref, out: Path, model, log) -> str:
    """Quality-vs-NFE curves of every sampler on 4x MRI (test slices), as a table and a figure."""
    from ..evaluation.curves import nfe_curves, plot_curves

    curves = nfe_curves("mri-1d-4x", ref, model=model, log=log)
    t4 = next((t for t in tables if t.task == "mri-1d-4x"), None)
    base = {} if t4 is None else {k.split(" (")[0]: float(r.psnr.mean()) for k, r in t4.results.items()
                                  if k == "zero-filled" or k.startswith("TV-CS")}
    plot_curves(curves, base, out / CURVE_FIGURE,
                "PSNR (dB) vs NFE per slice, MRI 1D 4x, test slices")
    rows = [f"| {name} | {n} | {p:.2f} | {s:.4f} |" for name, pts in curves.items() for n, p, s in pts]
    return ("\n### Quality vs NFE, MRI 1D 4x (test slices, one chain per point)\n\n| sampler | NFE | PSNR dB | SSIM |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + f"\n\n![quality vs NFE]({CURVE_FIGURE})\n")


def _targets(tables) -> str:
    """Issue 8's targets, checked on the measured tables."""
    lines = ["### Targets", "", "| task | target | reached |", "|---|---|---|"]
    for t in tables:
        best = t.best_classical()
        ms = {k: r for k, r in t.results.items() if k.startswith("medscore")}
        if best is None or not ms:
            continue
        b = float(t.results[best].psnr.mean())
        main = ms.get("medscore tweedie") or ms.get("medscore default") or next(iter(ms.values()))
        name = next(k for k, r in ms.items() if r is main)
        need = 2.0 if t.task == "mri-1d-8x" else (0.0 if t.task == "inpaint-box" else 1.0)
        lines.append(_row(t.label, f"{name} >= best classical ({best.split(' (')[0]}) + {need:g} dB",
                          float(main.psnr.mean()) - b, need))
        if "medscore ald" in ms and "medscore default" in ms and _default_uses_presets(t.kind):
            d = float(ms["medscore default"].psnr.mean() - ms["medscore ald"].psnr.mean())
            lines.append(_row(t.label, "default (<= 50 NFE) >= the 200-NFE ald preset - 0.3 dB", d, -0.3))
        tv = next((k for k in t.results if k.startswith("TV-CS")), None)
        if tv and "medscore fast" in ms:
            d = float(ms["medscore fast"].psnr.mean() - t.results[tv].psnr.mean())
            lines.append(_row(t.label, "fast (<= 20 NFE) >= TV-CS + 0.5 dB", d, 0.5))
    return "\n".join(lines) + "\n"


def _default_uses_presets(kind: str) -> bool:
    """Whether the task's default medscore method runs the sampler presets (not so for Tweedie denoising)."""
    from ..tasks import get_task

    task = get_task(kind)
    return task.methods[0] not in task.preset_free_methods


def _row(label: str, target: str, diff: float, need: float) -> str:
    """A target row: the measured difference and whether it reaches ``need``."""
    return f"| {label} | {target} | {'yes' if diff >= need else 'NO'} ({diff:+.2f} dB) |"


def tune_command(
    model: Annotated[Path, typer.Argument(help="training output folder (its model.json receives the presets)")],
    tasks: Annotated[str, typer.Option(help="comma-separated benchmark task names")] = (
        "mri-1d-4x,mri-1d-8x,mri-2d-poisson-8x,inpaint-70,inpaint-box"),
    write: Annotated[bool, typer.Option(help="write the chosen presets into MODEL/model.json")] = True,
) -> None:
    """Tune the fast and default presets on the validation slices; store them with the weights."""
    with handle_errors():
        import torch

        from ..io.embedded import held_out
        from ..errors import InputError
        from ..evaluation.specs import TASKS
        from ..priors.store import load_prior
        from ..evaluation.tuning import choose_presets, default_candidates, run_trials, write_presets

        names = [t.strip() for t in tasks.split(",")]
        if any(t not in TASKS for t in names):
            raise InputError(f"unknown task(s) in --tasks: choose from {', '.join(TASKS)}")
        if not (model / "model.json").is_file():
            raise InputError(f"{model} is not a model folder (no model.json)")
        if write:  # before minutes of trials: the presets go into MODEL/model.json
            _check_model_writable(model)
        prior = load_prior(model)
        val = torch.from_numpy(held_out("val"))[:, None]
        trials = run_trials(prior.model, val, names, default_candidates(),
                            log=lambda m: err_console.print(m, highlight=False))
        presets = choose_presets(trials)
        for p in presets.values():
            console.print(f"{p.name}: {p.to_dict()}")
        if write:
            console.print(f"wrote {write_presets(model, presets)}")


def _check_model_writable(model: Path) -> None:
    """``medscore tune`` writes MODEL/model.json (atomically, beside it): refuse a folder it cannot write, up front."""
    from ..errors import OutputError
    from ..io.atomic import ensure_writable

    try:
        ensure_writable(model / "model.json", "MODEL")
    except OutputError as exc:
        raise OutputError(f"{exc}; pass --no-write to print the tuned presets only") from None
