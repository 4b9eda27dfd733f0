"""Dictionary versions of medscore's array transforms, MONAI style (``...d`` plus ``D``/``Dict`` aliases)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform

from .array import RandTissueContrast, RobustScaleIntensity

__all__ = [
    "RobustScaleIntensityd", "RobustScaleIntensityD", "RobustScaleIntensityDict",
    "RandTissueContrastd", "RandTissueContrastD", "RandTissueContrastDict",
]


class RobustScaleIntensityd(MapTransform, InvertibleTransform):
    """Scale each key with :class:`RobustScaleIntensity`; the scale goes to ``d[f"{key}_scale"]``.

    Invertible: for tensors the scale also travels on the ``MetaTensor``, and :meth:`inverse` maps
    each key back to scanner units, so ``Compose([...]).inverse(d)`` and ``Invertd`` work.
    """

    backend = RobustScaleIntensity.backend

    def __init__(self, keys: KeysCollection, lower: float = 0.0, upper: float = 99.5, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.scaler = RobustScaleIntensity(lower, upper)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
            d[f"{key}_scale"] = self.scaler.last_scale
        return d

    def inverse(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Each key back in scanner units (the scale is popped from its MetaTensor)."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler.inverse(d[key])
        return d


class RandTissueContrastd(RandomizableTransform, MapTransform):
    """Dictionary wrapper of :class:`RandTissueContrast` (one random contrast per call, shared by keys)."""

    def __init__(self, keys: KeysCollection, prob: float = 0.5, low: float = 0.05, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.contrast = RandTissueContrast(prob=1.0, low=low)

    def set_random_state(self, seed: int | None = None, state=None) -> "RandTissueContrastd":
        super().set_random_state(seed, state)
        self.contrast.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        self.contrast.randomize()
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != 3:  # scans without tissue maps pass through unchanged
                continue
            d[key] = self.contrast(img, randomize=False) if self._do_transform else img[0:1]
        return d


RobustScaleIntensityD = RobustScaleIntensityDict = RobustScaleIntensityd
RandTissueContrastD = RandTissueContrastDict = RandTissueContrastd
