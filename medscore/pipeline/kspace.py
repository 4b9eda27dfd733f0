"""Measured k-space files: single coil here, multi coil handed to :mod:`.multicoil` (one driver for both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..solvers import SamplerOptions
from .inputs import open_kspace
from .job import RunReport
from .multicoil import Crop, reconstruct_measured, reconstruct_multicoil_file
from .volume import Progress

__all__ = ["reconstruct_kspace_file"]


def reconstruct_kspace_file(kspace: str | Path, mask: str | Path | np.ndarray | None, *, model: Any = None,
                            out: str | Path | None = None, opts: SamplerOptions | None = None,
                            batch_size: int | str = 4, device: str = "auto", progress: Progress | None = None,
                            smaps: str | Path | np.ndarray | None = None, crop: Crop = None) -> RunReport:
    """Reconstruct measured k-space: a complex image, with the prior on its real and imaginary parts (or a
    2-channel complex prior on the image itself).

    Single coil ((H, W) or (S, H, W)) uses the masked FFT; multi coil ((S, C, H, W)) goes to
    :func:`~medscore.pipeline.multicoil.reconstruct_multicoil_file` with ``smaps`` (None: estimated).
    ``mask`` None takes the sampled locations from the non-zero k-space entries. There is no reference, so
    no metrics. Outputs: the magnitude NIfTI (H, W, S) with an identity affine (k-space files carry no
    patient geometry), the complex image .npy, a fastMRI .h5 (centre-cropped to ``crop``) and a JSON sidecar
    (:mod:`medscore.pipeline.fastmri`). ``batch_size``: slices per solver call, or ``"auto"``.
    """
    with open_kspace(kspace) as src:
        if len(src.shape) == 3:
            if smaps is not None:
                raise InputError(f"{src.path.name}: coil maps need multi-coil k-space (S, C, H, W); this file is "
                                 f"single-coil {src.shape}")
            return reconstruct_measured(src, mask, None, inputs=(kspace, mask), model=model, out=out, opts=opts,
                                        batch_size=batch_size, crop=crop, device=device, progress=progress)
    return reconstruct_multicoil_file(kspace, mask, smaps=smaps, model=model, out=out, opts=opts,
                                      batch_size=batch_size, crop=crop, device=device, progress=progress)
