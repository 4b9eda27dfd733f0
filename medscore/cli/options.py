"""The options every solving command shares, declared once: model, output, device, batching and the sampler.

:func:`solver_command` adds the sampler options (preset, samples, seed, step size, start level, sampler and its
settings, precision) to a command's signature, checks them once with the API's own check
(:func:`medscore.solvers.check_solver_options`, named as the CLI spells them) and hands the command one
``opts: SamplerOptions``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ._common import handle_errors

ModelOpt = Annotated[Optional[Path], typer.Option(help="training output folder or its model.safetensors; default: "
                                                       "the bundled prior")]
OutOpt = Annotated[Optional[Path], typer.Option("-o", "--out", help="output NIfTI (default: next to the input)")]
AxisOpt = Annotated[int, typer.Option(help="slice axis of a 3D scan (stored voxel order)")]
BatchOpt = Annotated[str, typer.Option(help="slices solved together: an integer >= 1, or auto (as many as free memory "
                                            "allows; at most 2 on CPU)")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
AdaptOpt = Annotated[bool, typer.Option("--adapt/--no-adapt", help="test-time adaptation: fit the prior's norm "
                                                                   "parameters to this scan during the solve (about "
                                                                   "2.5x the network cost; see the README)")]
VolumeOpt = Annotated[bool, typer.Option("--volume/--slices", help="solve all slices together, coupled along the "
                                                                    "slice axis (TV in every data step; denoising: "
                                                                    "on the estimate); --slices: each on its own")]
SaveAdaptedOpt = Annotated[Optional[Path], typer.Option(help="with --adapt: a new folder for the adapted prior "
                                                              "(--model DIR loads it for the next scan)")]
SeriesOpt = Annotated[Optional[str], typer.Option("--series", help="SeriesInstanceUID to read from a DICOM folder "
                                                                  "holding several series")]

_PRESET_HELP = ("sampler preset: fast (<= 20 NFE), default (<= 50), best; ald, ald-fast, ald-best = the first "
                "release's annealed Langevin; a model's own table may add more")
_PRECISION_HELP = ("network arithmetic: auto (bf16 on CUDA, fp32 on CPU), fp32, or bf16 (about 1.6x faster per "
                   "network evaluation on CPUs with AVX512-BF16 or AMX; PSNR within 0.05 dB)")
#: (parameter, its type with the typer option, default): the sampler options in the order --help shows them
SAMPLER_OPTIONS: list[tuple[str, Any, Any]] = [
    ("samples", Annotated[Optional[int], typer.Option(
        help="posterior samples averaged into the estimate (std written when > 1); default: the preset's")], None),
    ("preset", Annotated[str, typer.Option(help=_PRESET_HELP)], "default"),
    ("seed", Annotated[int, typer.Option(help="random seed")], 0),
    ("step_multiplier", Annotated[Optional[float], typer.Option(help="multiplier on the preset's step size")], None),
    ("sigma_start", Annotated[Optional[float], typer.Option(help="warm-start noise level (default: the task's)")],
     None),
    ("sampler", Annotated[Optional[str], typer.Option(help="override the preset's sampler: pnp, ddim, pc or ald")],
     None),
    ("eta", Annotated[Optional[float], typer.Option(
        help="ddim: share of fresh noise per step, 0 (deterministic) to 1")], None),
    ("snr", Annotated[Optional[float], typer.Option(
        help="pc: signal-to-noise ratio of the Langevin corrector steps")], None),
    ("renoise", Annotated[Optional[float], typer.Option(
        help="pnp: fresh noise re-injected per level, 0 (deterministic) to 1")], None),
    ("flips", Annotated[Optional[bool], typer.Option("--flips/--no-flips", help="pnp: periodic flip ensemble (no extra "
                                                                                "NFE); default: the preset's")], None),
    ("momentum", Annotated[Optional[float], typer.Option(
        help="pnp: heavy-ball over-relaxation of the iteration, 0 (none) to < 1; default: the preset's")], None),
    ("precision", Annotated[str, typer.Option(help=_PRECISION_HELP)], "auto"),
    ("z_tv", Annotated[Optional[float], typer.Option(
        help="with --volume: weight of the total variation along the slice axis; default: the task's tuned one")],
     None),
]
#: how the CLI spells the options whose API name differs, in messages
CLI_NAMES = {"samples": "--samples", "seed": "--seed", "multiplier": "--step-multiplier",
             "sigma_start": "--sigma-start", "eta": "--eta", "snr": "--snr", "renoise": "--renoise",
             "momentum": "--momentum", "flips": "--flips", "z_tv": "--z-tv"}


def cli_solver_options(preset: str = "default", samples: int | None = None, seed: int = 0,
                       step_multiplier: float | None = None, **settings: Any) -> Any:
    """The command line's sampler options as :class:`~medscore.solvers.SamplerOptions`, checked once."""
    from ..solvers import check_solver_options

    return check_solver_options(preset, samples, seed, {"multiplier": step_multiplier, **settings}, names=CLI_NAMES)


def solver_command(*, without: tuple[str, ...] = ()) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the sampler options (all of :data:`SAMPLER_OPTIONS` but ``without``); it receives them as
    ``opts``. Option errors print one line and exit 1 before the command body runs."""
    params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
              for name, kind, default in SAMPLER_OPTIONS if name not in without]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(command, include_extras=True)  # the Annotated typer options, resolved
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(command).parameters.values() if p.name != "opts"]

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            chosen = {p.name: kwargs.pop(p.name) for p in params}
            with handle_errors():
                kwargs["opts"] = cli_solver_options(**chosen)
            command(**kwargs)

        run.__signature__ = inspect.Signature([*own, *params])  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in [*own, *params]}
        return run

    return decorate
