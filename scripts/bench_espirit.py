"""ESPIRiT on a square calibration region: medscore's (exact eigenvectors) against sigpy's ``EspiritCalib`` (power
iterations), in seconds and in map error against the true maps, at the validation slab's size and at fastMRI knee
size. Synthetic acquisitions made here (a textured blob, Gaussian coil profiles with a linear phase each, 15 %
random samples plus a fully sampled centre square); both get the same k-space, region, kernel and thresholds.

    python scripts/bench_espirit.py [--sizes 8x151x187,15x640x368] [--calib 12,24]

Needs sigpy (``pip install "medscore[mri]"``), which medscore itself no longer uses for maps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sigpy.mri.app import EspiritCalib

from medscore.physics.coils import KERNEL_WIDTH, calibration_region, sampling_mask_from_kspace
from medscore.physics.espirit import espirit_maps, map_subspace_error


def acquisition(coils: int, h: int, w: int, calib: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred k-space (C, H, W) of a textured blob seen by ``coils`` smooth coils, its true maps and object."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    obj = np.exp(-8 * ((yy - 0.4) ** 2 + (xx - 0.3) ** 2)) * (1 + 0.3 * rng.standard_normal((h, w)))
    angles = np.linspace(0, 2 * np.pi, coils, endpoint=False)
    maps = np.stack([np.exp(-3 * ((yy - 0.4 - 0.5 * np.cos(a)) ** 2 + (xx - 0.3 - 0.5 * np.sin(a)) ** 2))
                     * np.exp(3j * a * xx) for a in angles])
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(maps * obj, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    mask = rng.random((h, w)) < 0.15
    mask[h // 2 - calib // 2:h // 2 - calib // 2 + calib, w // 2 - calib // 2:w // 2 - calib // 2 + calib] = True
    return (k * mask).astype(np.complex64), maps, np.abs(obj) > 0.2 * np.abs(obj).max()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8x151x187,15x640x368", help="coils x rows x columns, comma-separated")
    ap.add_argument("--calib", default="12,24", help="side of the fully sampled centre square, per size")
    args = ap.parse_args()
    for size, calib in zip(args.sizes.split(","), args.calib.split(",")):
        coils, h, w = (int(v) for v in size.split("x"))
        k, true, support = acquisition(coils, h, w, int(calib))
        k = k / np.abs(k).max()
        region = calibration_region(sampling_mask_from_kspace(k))
        kernel = min(KERNEL_WIDTH, max(3, region[0] // 3))
        t0 = time.perf_counter()
        ours = espirit_maps(k, region, (kernel, kernel))
        t1 = time.perf_counter()
        theirs = EspiritCalib(k, calib_width=region[0], kernel_width=kernel, show_pbar=False).run()
        t2 = time.perf_counter()
        print(f"{coils} coils {h}x{w}, calibration {region}, kernel {kernel}: medscore {t1 - t0:.1f} s, "
              f"map error {map_subspace_error(ours, true, support):.4f}; sigpy {t2 - t1:.1f} s, "
              f"map error {map_subspace_error(theirs, true, support):.4f}", flush=True)


if __name__ == "__main__":
    main()
