"""BART's ``pics`` (the compressed-sensing reconstruction MRI papers report), run as a subprocess when installed.

BART (Uecker et al., the Berkeley Advanced Reconstruction Toolbox; Debian package ``bart``) is a command-line
program, so medscore talks to it through its own file format (``.cfl`` data + ``.hdr`` dimensions, complex64,
column-major) in a temporary folder. Nothing here is needed at run time: the benchmark adds BART's columns only
when ``bart`` is on the PATH (:func:`bart_available`).

Conventions: medscore's k-space is centred (DC at ``(H // 2, W // 2)``) with the orthonormal FFT, as BART's; on an
axis of odd length BART's image comes out one pixel further along (its centring multiplies by a phase that for odd
lengths is a one-pixel shift away from ``fftshift``), so images and maps cross in :func:`_to_bart` /
:func:`_from_bart`. ``-S`` returns the image in the data's scale. BART's first two dimensions are medscore's
``H, W``; the fourth holds coils.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["bart_available", "write_cfl", "read_cfl", "bart", "pics", "ecalib", "calibration_size", "REGULARISERS"]

#: medscore's names -> BART ``pics -R`` regularisers (bitmask 3: both image axes)
REGULARISERS = {"l1-wavelet": "W:3:0:{lam}", "tv": "T:3:0:{lam}"}


def bart_available() -> bool:
    """True when the ``bart`` command is on the PATH."""
    return shutil.which("bart") is not None


def write_cfl(stem: Path, array: np.ndarray) -> None:
    """``stem.hdr`` + ``stem.cfl``: BART's format (dimensions, then complex64 in Fortran order)."""
    arr = np.asarray(array, dtype=np.complex64)
    Path(f"{stem}.hdr").write_text("# Dimensions\n" + " ".join(str(n) for n in arr.shape) + "\n")
    arr.ravel(order="F").tofile(f"{stem}.cfl")


def read_cfl(stem: Path) -> np.ndarray:
    """The array of ``stem.cfl`` with the dimensions of ``stem.hdr`` (trailing ones dropped)."""
    dims = [int(n) for n in Path(f"{stem}.hdr").read_text().splitlines()[1].split()]
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    return np.fromfile(f"{stem}.cfl", dtype=np.complex64).reshape(dims, order="F")


def _odd_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(ax for ax in (-2, -1) if shape[ax] % 2)


def _to_bart(image: np.ndarray) -> np.ndarray:
    """An image (..., H, W) in medscore's frame -> BART's (one pixel on along each odd axis)."""
    odd = _odd_axes(image.shape)
    return np.roll(image, (1,) * len(odd), odd) if odd else image


def _from_bart(image: np.ndarray) -> np.ndarray:
    """An image (..., H, W) in BART's frame -> medscore's."""
    odd = _odd_axes(image.shape)
    return np.roll(image, (-1,) * len(odd), odd) if odd else image


def bart(*args: str, cwd: Path) -> None:
    """Run one BART command in ``cwd``; its stderr becomes the error message when it fails."""
    done = subprocess.run(["bart", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bart {' '.join(args)} failed: {done.stderr.strip()[:300]}")


def calibration_size(kspace: np.ndarray) -> int:
    """Side of the largest fully sampled square about the k-space centre (DC at ``(H // 2, W // 2)``) of
    (K, H, W) k-space: what ``ecalib -r`` must be given (its default, 24, reads unsampled lines as zeros)."""
    sampled = np.abs(kspace).sum(axis=0) > 0
    h, w = sampled.shape
    n = 1
    while n + 1 <= min(h, w):
        top, left = h // 2 - (n + 1) // 2, w // 2 - (n + 1) // 2
        if not sampled[top:top + n + 1, left:left + n + 1].all():
            break
        n += 1
    return n


def ecalib(kspace: np.ndarray) -> np.ndarray:
    """``bart ecalib -m1 -r N -k K -c 0.2``: one set of ESPIRiT maps (K, H, W) from k-space (K, H, W) with a fully
    sampled centre of N x N (:func:`calibration_size`). BART's defaults (a 24 x 24 region, kernel 6, crop 0.8)
    leave 2-5 % of a 128 x 96 slice covered when the centre is 8 lines wide: a kernel of at most half the region
    (K = max(3, min(6, N // 2 - 1))) and a low crop threshold keep the whole field of view (EPI validation slice,
    8-coil 1D 8x: 23.1 dB against 19.4 with the defaults)."""
    n = calibration_size(kspace)
    with tempfile.TemporaryDirectory(prefix="medscore-bart-") as tmp:
        d = Path(tmp)
        write_cfl(d / "k", np.moveaxis(kspace, 0, -1)[:, :, None])
        bart("ecalib", "-m1", "-r", str(n), "-k", str(max(3, min(6, n // 2 - 1))), "-c", "0.2", "k", "maps", cwd=d)
        maps = read_cfl(d / "maps")
    return _from_bart(np.moveaxis(maps.reshape(*maps.shape[:2], -1), -1, 0))


def pics(kspace: np.ndarray, maps: np.ndarray | None, lam: float, reg: str = "l1-wavelet",
         iters: int = 100) -> np.ndarray:
    """``bart pics -S -i iters -R reg:lam``: the complex image (H, W) from k-space (K, H, W) (zeros where not
    measured) and coil maps (K, H, W); ``maps`` None means one coil of sensitivity 1."""
    if reg not in REGULARISERS:
        raise ValueError(f"reg must be one of {sorted(REGULARISERS)}, got {reg!r}")
    k = np.asarray(kspace)
    maps = np.ones_like(k) if maps is None else _to_bart(np.asarray(maps))
    with tempfile.TemporaryDirectory(prefix="medscore-bart-") as tmp:
        d = Path(tmp)
        write_cfl(d / "k", np.moveaxis(k, 0, -1)[:, :, None])
        write_cfl(d / "s", np.moveaxis(maps, 0, -1)[:, :, None])
        bart("pics", "-S", "-i", str(iters), "-R", REGULARISERS[reg].format(lam=lam), "k", "s", "x", cwd=d)
        return _from_bart(read_cfl(d / "x").reshape(k.shape[-2:]))
