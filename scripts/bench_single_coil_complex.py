"""Single-coil complex k-space with a scanner phase: medscore's default path against the priors on the raw image.

    python scripts/bench_single_coil_complex.py --slab test --slices 2 5 8

Each slice of the embedded held-out slab gets a simulated scanner phase (``random_phase``, seed 10 + i), its
centred k-space complex noise of std 0.005 and a 1D random mask (seed 1; 4x with an 8 % centre, 8x with 4 %).
No coil maps, so the phase stays in the image (as in single-coil fastMRI files). Prints one JSON line per
acceleration and preset: mean magnitude PSNR of zero-filled; of what ``medscore reconstruct`` and
``api.reconstruct_mri`` do (the default prior, the image's smooth phase moved into a one-coil map,
:func:`medscore.tasks.coil_phase.single_coil_phase_map`, and the multi-coil passes); and, on the raw image with its
phase, of the default prior applied to the real and imaginary parts and of ``bundled:ncsn-complex`` (the previous
default).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from medscore import metrics
from medscore.tasks.coil_phase import single_coil_phase_map
from medscore.io.embedded import held_out
from medscore.priors.store import load_prior
from medscore.physics import fft2c, ifft2c, make_mask, random_phase
from medscore.solvers import SamplerOptions
from medscore.tasks import reconstruct_mri

NOISE = 0.005


def _kspace(ref: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """(N, 1, H, W) noisy undersampled k-space of the slices ``ref`` given a simulated phase (seeded)."""
    phased = np.stack([r * np.exp(1j * random_phase(r.shape, 10 + i)) for i, r in enumerate(ref)])
    image = torch.from_numpy(phased.astype(np.complex64))[:, None]
    g = torch.Generator().manual_seed(0)
    noise = torch.complex(torch.randn(image.shape, generator=g), torch.randn(image.shape, generator=g))
    return (fft2c(image) + NOISE / np.sqrt(2) * noise) * torch.from_numpy(mask)


def _psnr(ref: np.ndarray, est: np.ndarray) -> float:
    return round(float(np.mean([metrics.psnr(r, e) for r, e in zip(ref, est)])), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slab", choices=["val", "test"], default="val")
    ap.add_argument("--slices", nargs="+", type=int, default=None, help="slice indices (default: all)")
    args = ap.parse_args()
    ref = held_out(args.slab)
    ref = ref[args.slices] if args.slices else ref
    priors = {"magnitude on real/imaginary": load_prior(None).model,
              "ncsn-complex": load_prior("bundled:ncsn-complex").model}
    for accel, center in ((4, 0.08), (8, 0.04)):
        mask = make_mask("random", ref.shape[1:], accel, center, seed=1)
        k = _kspace(ref, mask)
        m = torch.from_numpy(mask)
        runs = {"phase map (default)": (priors["magnitude on real/imaginary"], single_coil_phase_map(k, m)),
                **{f"{name}, raw phase": (net, None) for name, net in priors.items()}}
        for preset in ("fast", "default"):
            row = {"accel": accel, "preset": preset, "zero-filled": _psnr(ref, ifft2c(k).abs()[:, 0].numpy())}
            for name, (net, smaps) in runs.items():
                res = reconstruct_mri(net, k, m, SamplerOptions(preset=preset, seed=0), real_image=False,
                                      noise_std=NOISE, smaps=smaps)
                row[name] = _psnr(ref, torch.linalg.vector_norm(res.mean, dim=1).numpy())
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
