"""``medscore mask``: k-space undersampling masks (fastMRI-style lines or 2D Poisson disc)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, handle_errors


def mask_command(
    shape: Annotated[tuple[int, int], typer.Option(help="image size H W; for a 3D Cartesian scan the two phase-encode "
                                                         "sizes NY NZ (use it with reconstruct --readout-axis)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output .npy")],
    pattern: Annotated[str,
                       typer.Option(help="random | equispaced (1D lines, shape (W,)) | poisson | poisson-vd (2D, shape "
                                         "(H, W); poisson-vd: the usual variable density, needs sigpy)")] = "random",
    accel: Annotated[float, typer.Option(help="acceleration factor R")] = 4.0,
    center: Annotated[float, typer.Option(help="fully sampled centre fraction")] = 0.08,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    max_size: Annotated[int,
                        typer.Option(help="largest H or W accepted (guards memory; raise it explicitly for larger "
                                          "masks)")] = 4096,
) -> None:
    """Write a 0/1 mask over centred k-space (1 = sampled). Nothing is written unless the mask is valid."""
    with handle_errors():
        import numpy as np

        from ..errors import InputError
        from ..io.atomic import atomic_path, ensure_writable
        from ..physics import acceleration, make_mask
        from ..checks import check_choice, check_int, check_seed

        check_choice("--pattern", pattern, ("random", "equispaced", "poisson", "poisson-vd"))
        if out.suffix != ".npy":
            raise InputError(f"--out must end in .npy, got {out.name}")
        check_int("--max-size", max_size, 2)
        check_seed("--seed", seed)
        ensure_writable(out, "--out")
        try:
            m = make_mask(pattern, tuple(shape), accel, center, seed, max_size=max_size)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        accel_got = acceleration(m)  # of the mask as made: a (W,) mask is not expanded to (H, W) for it
        with atomic_path(out) as tmp:
            np.save(tmp, m)
        console.print(f"{out}: {pattern} mask, shape {m.shape}, acceleration {accel_got:.2f}")
