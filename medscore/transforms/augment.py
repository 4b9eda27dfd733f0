"""Augmentations for priors meant for real scans: another pixel size, a noise floor, oblique planes.

A prior trained on 1 mm, noiseless template slices paints 1 mm, noiseless anatomy into every scan. These
transforms widen what "a brain slice" looks like, built on MONAI's operators:

* :class:`RandPixelSize`: the slice as a scanner with pixels of ``px x py`` mm (each drawn in ``mm``, so
  anisotropic) would show it: Gaussian blur for the coarser point-spread function (MONAI ``GaussianSmooth``),
  then resampling to the new grid (MONAI ``Zoom``); with probability ``keep_grid`` the coarse image is
  interpolated back to the original grid (a thick-slice scan shown at fine pixels);
* :class:`RandRicianSNR`: magnitude noise at a signal-to-noise ratio drawn log-uniformly in ``snr`` (MONAI
  ``RandRicianNoise`` draws the noise; this picks its level so the SNR range is what the config says);
* :func:`oblique_copies`: whole volumes turned by random angles (MONAI ``Rotate``), so slices cut from them
  are oblique planes.

Intensities are on the [0, 1] scale of every medscore input (the 99.5th percentile is 1), so an SNR of 20
means noise of standard deviation 0.05.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import GaussianSmooth, MapTransform, RandomizableTransform, RandRicianNoise, Rotate, Zoom

__all__ = ["RandPixelSize", "RandPixelSized", "RandRicianSNR", "RandRicianSNRd", "oblique_copies"]

# Gaussian sigma (in source pixels) of a pixel of width w source pixels: the FWHM of the blur is w - 1 on
# top of the source's own point-spread function (FWHM = 2.355 sigma).
_FWHM = 2.355


class RandPixelSize(RandomizableTransform):
    """Show a 2D slice (C, H, W) at a pixel size drawn in ``mm`` per axis (source pixels ``source_mm``)."""

    def __init__(self, prob: float = 0.5, mm: tuple[float, float] = (0.7, 2.5), source_mm: float = 1.0,
                 keep_grid: float = 0.3) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0 < mm[0] <= mm[1] or source_mm <= 0:
            raise ValueError(f"need 0 < mm[0] <= mm[1] and source_mm > 0, got {mm}, {source_mm}")
        self.mm, self.source_mm, self.keep_grid = mm, source_mm, keep_grid
        self._width = (1.0, 1.0)
        self._back = False

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        lo, hi = np.log(self.mm[0]), np.log(self.mm[1])
        self._width = tuple(float(np.exp(self.R.uniform(lo, hi))) / self.source_mm for _ in range(2))
        self._back = bool(self.R.uniform() < self.keep_grid)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        sigma = [max(w - 1.0, 0.0) / _FWHM for w in self._width]
        out = GaussianSmooth(sigma=sigma)(img) if max(sigma) > 0 else img
        size = tuple(img.shape[-2:])
        out = Zoom(zoom=[1.0 / w for w in self._width], mode="bilinear", keep_size=False)(out)
        if self._back:
            out = Zoom(zoom=[s / n for s, n in zip(size, out.shape[-2:])], mode="bilinear", keep_size=False)(out)
        return out


class RandRicianSNR(RandomizableTransform):
    """Rician (magnitude) noise at an SNR drawn log-uniformly in ``snr``; signal 1 (the 99.5th percentile)."""

    def __init__(self, prob: float = 0.5, snr: tuple[float, float] = (15.0, 60.0)) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0 < snr[0] <= snr[1]:
            raise ValueError(f"need 0 < snr[0] <= snr[1], got {snr}")
        self.snr = snr
        self.noise = RandRicianNoise(prob=1.0, std=1.0, sample_std=False)

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.noise.std = float(np.exp(-self.R.uniform(np.log(self.snr[0]), np.log(self.snr[1]))))
        self.noise.set_random_state(seed=int(self.R.randint(0, 2**31 - 1)))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return self.noise(img)


class _RandDict(RandomizableTransform, MapTransform):
    """Dictionary wrapper: one draw of the array transform per call, shared by all keys."""

    def __init__(self, keys: KeysCollection, inner: RandomizableTransform) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        self.inner = inner

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "_RandDict":
        super().set_random_state(seed, state)
        self.inner.set_random_state(seed, state)
        return self

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        self.inner.randomize()
        for key in self.key_iterator(d):
            d[key] = self.inner(d[key], randomize=False)
        return d


class RandPixelSized(_RandDict):
    """Dictionary version of :class:`RandPixelSize`."""

    def __init__(self, keys: KeysCollection, prob: float = 0.5, mm: tuple[float, float] = (0.7, 2.5),
                 source_mm: float = 1.0, keep_grid: float = 0.3) -> None:
        super().__init__(keys, RandPixelSize(prob, mm, source_mm, keep_grid))


class RandRicianSNRd(_RandDict):
    """Dictionary version of :class:`RandRicianSNR`."""

    def __init__(self, keys: KeysCollection, prob: float = 0.5, snr: tuple[float, float] = (15.0, 60.0)) -> None:
        super().__init__(keys, RandRicianSNR(prob, snr))


def oblique_copies(volume: np.ndarray, copies: int, max_deg: float, seed: int) -> list[np.ndarray]:
    """``copies`` versions of a channel-first volume (C, X, Y, Z), each turned by random angles in
    [-max_deg, max_deg] about all three axes (same shape, linear interpolation, zeros outside)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(copies):
        angles = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
        turned = Rotate(angle=tuple(float(a) for a in angles), keep_size=True, mode="bilinear",
                        padding_mode="zeros")(torch.as_tensor(volume, dtype=torch.float32))
        out.append(np.asarray(turned.detach().cpu().numpy() if isinstance(turned, torch.Tensor) else turned,
                              dtype=np.float32))
    return out
