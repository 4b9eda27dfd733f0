"""Front doors of the file driver: one function per task and kind of input, each one call of :func:`solve_scan`.

Scans (NIfTI, DICOM series, .npy images): :func:`reconstruct_file` (retrospective undersampling), :func:`inpaint_file`,
:func:`denoise_file`. Measured k-space (complex .npy, fastMRI .h5): :func:`reconstruct_kspace_file` (single or multi
coil) and :func:`reconstruct_multicoil_file` (multi coil only). Sizes: the networks are fully convolutional, so
slices are solved at their own size; a model trained with ``spatial: resize`` warns when slices are much larger
than what it saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.arrays import is_kspace_file
from ..solvers import SamplerOptions
from ..solvers.adapt import Adaptation
from ..tasks import DenoiseInputs, InpaintInputs, MRIInputs, MultiCoilInputs
from .driver import solve_scan
from .kspace_source import Crop, KSpaceSource
from .outputs import RunReport
from .scan_source import ScanSource
from .stream import Progress

__all__ = ["reconstruct_file", "inpaint_file", "denoise_file", "reconstruct_kspace_file", "reconstruct_multicoil_file",
           "reconstruct_path"]

BatchSize = int | str
ArrayOrPath = str | Path | np.ndarray


def reconstruct_file(scan: str | Path, mask: ArrayOrPath, *, model: Any = None, out: str | Path | None = None,
                     opts: SamplerOptions | None = None, axis: int = 2, batch_size: BatchSize = 4, device: str = "auto",
                     progress: Progress | None = None, series_uid: str | None = None, adapt: Adaptation | None = None,
                     save_adapted: str | Path | None = None, volume: bool = False) -> RunReport:
    """Retrospective accelerated MRI: undersample each slice's k-space with ``mask`` and reconstruct.

    Writes ``OUT`` (medscore), ``OUT_zerofilled``, ``OUT_std`` (with several samples) and a PNG panel
    zero-filled | medscore | reference | |error| | std of the middle slice. ``batch_size``: slices per
    solver call, or ``"auto"`` (from free memory). ``series_uid`` picks one series of a DICOM folder. ``adapt``:
    test-time adaptation of the prior to this scan (``save_adapted``: a new folder for the adapted prior).
    ``volume``: all slices solved together, coupled along ``axis`` (:func:`~.driver.solve_scan`). A 3D Cartesian scan
    is undersampled with ``axis`` its readout and a (NY, NZ) ``mask`` over the two other (phase-encode) axes, in
    stored order.
    """
    return solve_scan("mri", ScanSource(scan, axis, series_uid), MRIInputs(mask=mask), model=model, out=out,
                      opts=opts, batch_size=batch_size, device=device, progress=progress, adapt=adapt,
                      save_adapted=save_adapted, volume=volume)


def inpaint_file(scan: str | Path, mask: ArrayOrPath | None = None, *, missing: float | None = None,
                 mask_seed: int = 0, model: Any = None, out: str | Path | None = None,
                 opts: SamplerOptions | None = None, axis: int = 2, batch_size: BatchSize = 4, device: str = "auto",
                 progress: Progress | None = None, series_uid: str | None = None, adapt: Adaptation | None = None,
                 save_adapted: str | Path | None = None, volume: bool = False) -> RunReport:
    """Fill pixels where ``mask`` is 0 (1 = known), or a random ``missing`` fraction of pixels per slice;
    ``adapt`` / ``save_adapted`` as :func:`reconstruct_file`'s."""
    return solve_scan("inpaint", ScanSource(scan, axis, series_uid),
                      InpaintInputs(mask=mask, missing=missing, mask_seed=mask_seed), model=model, out=out, opts=opts,
                      batch_size=batch_size, device=device, progress=progress, adapt=adapt, save_adapted=save_adapted,
                      volume=volume)


def denoise_file(scan: str | Path, *, noise_std: float | None = None, add_noise: float | None = None,
                 noise_seed: int = 0, method: str = "tweedie", model: Any = None, out: str | Path | None = None,
                 opts: SamplerOptions | None = None, axis: int = 2, batch_size: BatchSize = 4, device: str = "auto",
                 progress: Progress | None = None, series_uid: str | None = None, adapt: Adaptation | None = None,
                 save_adapted: str | Path | None = None, volume: bool = False) -> RunReport:
    """Denoise a scan. ``add_noise`` simulates Gaussian noise of that std (on the [0, 1] scale: a fraction of the
    scan's 99.5th-percentile intensity) and scores against the clean input; otherwise the scan is the noisy
    input, ``noise_std`` is given on the same scale or estimated (scikit-image ``estimate_sigma``). ``adapt``:
    the prior adapted to the scan by SURE (no operator to fit; ``AdaptedPrior.fit_sure``)."""
    inputs = DenoiseInputs(noise_std=noise_std, add_noise=add_noise, noise_seed=noise_seed, method=method)
    return solve_scan("denoise", ScanSource(scan, axis, series_uid), inputs, model=model, out=out, opts=opts,
                      batch_size=batch_size, device=device, progress=progress, adapt=adapt,
                      save_adapted=save_adapted, volume=volume)


def reconstruct_kspace_file(kspace: str | Path, mask: ArrayOrPath | None = None, *, model: Any = None,
                            out: str | Path | None = None, opts: SamplerOptions | None = None,
                            batch_size: BatchSize = 4, device: str = "auto", progress: Progress | None = None,
                            smaps: ArrayOrPath | None = None, crop: Crop = None, multicoil_only: bool = False,
                            adapt: Adaptation | None = None, save_adapted: str | Path | None = None,
                            volume: bool = False, readout_axis: int | None = None) -> RunReport:
    """Reconstruct measured k-space as a complex image, with the prior on its real and imaginary parts (or a
    2-channel complex prior on the image itself).

    Single coil ((H, W) or (S, H, W)) uses a one-coil map that carries the image's smooth phase; multi coil
    ((S, C, H, W)) uses SENSE data consistency with ``smaps`` (None: estimated per slice by ESPIRiT; else a
    .npy/.h5 file or an array, (S, C, H, W) or (C, H, W)). ``mask`` ((W,) or (H, W), a .npy or an array) None takes
    the sampled locations from the non-zero k-space entries. There is no reference, so no metrics. Outputs: the
    magnitude NIfTI (H, W, S) with an identity affine (k-space files carry no patient geometry), the complex image
    .npy, a fastMRI .h5 (centre-cropped to ``crop``) and a JSON sidecar (:mod:`medscore.pipeline.fastmri`).
    ``readout_axis`` (0-2): the file is 3D Cartesian k-space, (kx, ky, kz) or (coils, kx, ky, kz), solved as its
    planes along that axis (``mask`` and ``smaps`` then over the two phase-encode axes; the NIfTI keeps the file's
    axis order, the complex .npy and the .h5 hold the planes first); ``volume`` couples the planes.
    """
    source = KSpaceSource(kspace, crop, readout_axis)
    with source.open():
        shape = source.src.shape  # type: ignore[union-attr]
        if source.single_coil and multicoil_only:
            raise InputError(f"{source.path.name}: single-coil k-space {shape}: use reconstruct_kspace_file "
                             "(coil maps apply to multi-coil (S, C, H, W) k-space)")
        if source.single_coil and smaps is not None:
            raise InputError(f"{source.path.name}: coil maps need multi-coil k-space (S, C, H, W); this file is "
                             f"single-coil {shape}")
    return solve_scan("mri-multicoil", source, MultiCoilInputs(mask=mask, smaps=smaps), model=model, out=out,
                      opts=opts, batch_size=batch_size, device=device, progress=progress, adapt=adapt,
                      save_adapted=save_adapted, volume=volume)


def reconstruct_multicoil_file(kspace_path: str | Path, mask: ArrayOrPath | None = None, *,
                               smaps: ArrayOrPath | None = None, model: Any = None, out: str | Path | None = None,
                               opts: SamplerOptions | None = None, batch_size: BatchSize = 4, crop: Crop = None,
                               device: str = "auto", progress: Progress | None = None, **adaptation: Any) -> RunReport:
    """Reconstruct multi-coil k-space (fastMRI .h5 ``kspace`` or complex .npy, (S, C, H, W), centred): see
    :func:`reconstruct_kspace_file` (``adaptation``: its ``adapt`` and ``save_adapted``); single-coil files are
    refused."""
    return reconstruct_kspace_file(kspace_path, mask, smaps=smaps, model=model, out=out, opts=opts,
                                   batch_size=batch_size, crop=crop, device=device, progress=progress,
                                   multicoil_only=True, **adaptation)


def reconstruct_path(path: str | Path, mask: ArrayOrPath | None = None, *, smaps: ArrayOrPath | None = None,
                     crop: Crop = None, axis: int = 2, series_uid: str | None = None,
                     readout_axis: int | None = None, **run: Any) -> RunReport:
    """``medscore reconstruct PATH``: measured k-space (a fastMRI .h5 or a complex .npy) through
    :func:`reconstruct_kspace_file`, any other scan through :func:`reconstruct_file` (which needs ``mask``).
    ``readout_axis``: a 3D Cartesian acquisition read out along that axis (k-space: the file's; a scan: its slice
    axis, undersampled over the other two). ``run``: the keywords the two share (model, out, opts, batch_size,
    device, progress, adapt, save_adapted, volume)."""
    if is_kspace_file(path):
        return reconstruct_kspace_file(path, mask, smaps=smaps, crop=crop, readout_axis=readout_axis, **run)
    if readout_axis is not None and axis not in (2, readout_axis):
        raise InputError(f"--axis {axis} and --readout-axis {readout_axis} disagree: the readout axis is the slice "
                         "axis of a 3D Cartesian scan (give one of them)")
    if smaps is not None or crop is not None:
        raise InputError("--smaps and --crop apply to k-space inputs (.h5, complex .npy)")
    if mask is None:
        raise InputError("--mask is required for image inputs (make one with `medscore mask`)")
    return reconstruct_file(path, mask, axis=axis if readout_axis is None else readout_axis, series_uid=series_uid,
                            **run)
