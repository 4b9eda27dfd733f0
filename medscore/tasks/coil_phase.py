"""The coil maps medscore reconstructs multi-coil k-space with: ESPIRiT maps that carry the image's smooth phase.

Coil maps are defined up to a per-pixel complex factor that the image absorbs (``S_k x = (S_k c)(x / c)``), so
the smooth phase of the image can be moved into the maps without changing the forward model. The priors
applied to the real and imaginary parts expect a nearly real image: the better that phase is known, the better
they do. Two estimates, one after the other:

1. ESPIRiT from the fully sampled centre (:mod:`medscore.physics.espirit`: the square of 2D masks, the rectangle
   of 1D masks) and the phase of the calibration square's low-resolution image
   (:func:`medscore.physics.coils.estimate_image_maps`). A 1D mask at 8x leaves 9 central lines, so this phase
   has the resolution of a 9 x 9 block and the Gibbs ringing of its edges;
2. the phase of a short TV-CS reconstruction with those maps, low-passed (:func:`refine_image_phase`): an
   estimate of the whole image, so its phase is no longer limited to the calibration block.

Why (``python scripts/bench_coil_maps.py``: the validation slab's problems, 8 coils, ``fast``): with the true maps
and phase, medscore reached 34.6 dB at 1D 8x against 27.0 dB with the maps of step 1, although those agreed with
the true maps to a correlation of 0.9995 inside the head; the true phase on the ESPIRiT maps gave 30.8 dB. With
step 2, 28.6 dB (TV-CS with the two sets of maps: 26.9 and 27.1 dB): half of the gap was the phase, and step 2
closes a fifth of it (the other half is the maps outside the head, docs/benchmarks.md). Every method of
the benchmark gets the maps of step 2; maps read from a file keep theirs, and the phase of step 2 is moved in
and out around the solve (:mod:`medscore.pipeline.multicoil`). Single-coil k-space gets the phase of step 2 as a
one-coil map (:func:`single_coil_phase_map`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..baselines.sense import tv_sense
from ..physics import MultiCoilMRI, estimate_image_maps, smooth_image_phase
from ..physics.coils import sampling_mask_from_kspace

__all__ = ["estimate_reconstruction_maps", "refine_image_phase", "tv_image_phase", "single_coil_phase_map",
           "PHASE_TV_WEIGHT", "PHASE_TV_ITERATIONS", "PHASE_SMOOTHING"]

#: TV weight of the phase pre-reconstruction, on the [0, 1] image scale (TV-CS's tuned weight at 8 coils 1D 8x)
PHASE_TV_WEIGHT = 0.003
#: PDHG iterations of the pre-reconstruction: 100 gave the phase of 200 within 0.06 dB on validation
PHASE_TV_ITERATIONS = 100
#: std of the Gaussian low-pass of that phase, as a fraction of the image's larger side (4 px at 187 px; phase
#: varies over physical distances, so a fraction of the field of view transfers across matrix sizes)
PHASE_SMOOTHING = 0.02


@torch.no_grad()
def tv_image_phase(kspace: Tensor, smaps: Tensor, mask: Tensor | np.ndarray, *, lam: float = PHASE_TV_WEIGHT,
                   n_iter: int = PHASE_TV_ITERATIONS, smoothing: float = PHASE_SMOOTHING) -> Tensor:
    """The smooth phase (B, 1, H, W) unit factors of a TV-CS reconstruction of ``kspace`` (B, K, H, W) with ``smaps``.

    ``kspace`` on the [0, 1] image scale (``lam`` is relative to it), ``mask`` (W,) or (H, W); the low-pass has a
    std of ``smoothing`` times the larger image side (:func:`~medscore.physics.smooth_image_phase`).
    """
    image = tv_sense(kspace, MultiCoilMRI(mask, smaps), lam=lam, n_iter=n_iter)
    return smooth_image_phase(image, smoothing * max(kspace.shape[-2:]))


def refine_image_phase(kspace: Tensor, smaps: Tensor, mask: Tensor | np.ndarray) -> Tensor:
    """``smaps`` (B, K, H, W) times :func:`tv_image_phase`: the forward model ``S_k x`` is unchanged, only the share
    of the phase that the image must carry shrinks."""
    return smaps * tv_image_phase(kspace, smaps, mask).to(smaps.dtype)


def estimate_reconstruction_maps(kspace: np.ndarray, mask: np.ndarray | None = None) -> Tensor:
    """Coil maps (B, K, H, W) complex64 for undersampled centred k-space (B, K, H, W) on the [0, 1] image scale.

    ESPIRiT per slice with the calibration region's phase (:func:`~medscore.physics.estimate_image_maps`), then
    the phase refined by :func:`refine_image_phase` for the batch at once. ``mask``: the sampling mask ((W,) or
    (H, W)); by default the zero pattern of ``kspace``.
    """
    k = np.asarray(kspace)
    maps = torch.from_numpy(np.stack([estimate_image_maps(s) for s in k]))
    m = sampling_mask_from_kspace(k) if mask is None else mask
    return refine_image_phase(torch.from_numpy(k.astype(np.complex64, copy=False)), maps, torch.as_tensor(m))


def single_coil_phase_map(kspace: Tensor, mask: Tensor | np.ndarray) -> Tensor:
    """A one-coil "map" (B, 1, H, W) for single-coil complex k-space (B, 1, H, W) on the [0, 1] image scale: the
    smooth phase of a TV-CS reconstruction (:func:`tv_image_phase` with a unit map).

    Single-coil images keep the scanner's phase. Solved with this map, the image left to reconstruct is nearly
    real, as with multi-coil maps, so the magnitude prior on the real and imaginary parts applies and the
    multi-coil passes refine the phase further; the solved image times the map is the image itself. Validation
    slab, simulated phase, 1D 4x / 8x at ``default``: 32.33 / 18.84 dB against 28.87 / 18.23 for the channel-pair
    prior on the raw image (docs/benchmarks.md, "Single-coil complex k-space").
    """
    ones = torch.ones((kspace.shape[0], 1, *kspace.shape[-2:]), dtype=torch.complex64, device=kspace.device)
    return tv_image_phase(kspace.to(torch.complex64), ones, mask).to(torch.complex64)
