"""File-level solvers (implemented in :mod:`medscore.pipeline`, re-exported here): scan file -> scaled slices -> solver -> unscaled volume -> NIfTI with the input's geometry.

Slicing: a 3D scan (X, Y, Z) is cut along ``axis`` (default 2, the last stored axis) into 2D slices
in stored voxel order; for ``axis=2`` each slice is (X, Y) and a (W,) line mask indexes Y. Images
are scaled per volume with the model's intensity rule (percentiles 0 and 99.5 -> 0 and 1) and
mapped back afterwards, so outputs are in the scanner's units.

Size: the bundled prior was trained on 64 px patches at native resolution and is fully
convolutional, so slices are solved at their own size (padded internally to a multiple of 4); no
resampling happens. A model trained with ``spatial: resize`` still runs at native size; a warning
says when the scan's slices are much larger than what it saw.

Metrics (PSNR, SSIM, NMSE) are computed on the [0, 1] scale against the input, which is the fully
sampled reference for retrospective experiments (see ``medscore.metrics``).
"""

from __future__ import annotations

from .pipeline import (
    RunReport,
    denoise_file,
    inpaint_file,
    is_kspace_file,
    load_kspace,
    load_mask,
    reconstruct_file,
    reconstruct_kspace_file,
    reconstruct_multicoil_file,
    slices_of,
    volume_of,
)

__all__ = ["RunReport", "load_mask", "is_kspace_file", "load_kspace", "reconstruct_file", "reconstruct_kspace_file",
           "reconstruct_multicoil_file", "inpaint_file", "denoise_file", "slices_of", "volume_of"]
