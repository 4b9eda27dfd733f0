"""MONAI-style array/dictionary transforms that medscore adds to MONAI's own."""

from .array import RandTissueContrast, RobustScaleIntensity, extract_slices, unscale_intensity
from .dictionary import (
    RandTissueContrastd,
    RandTissueContrastD,
    RandTissueContrastDict,
    RobustScaleIntensityd,
    RobustScaleIntensityD,
    RobustScaleIntensityDict,
)

__all__ = [
    "RobustScaleIntensity", "unscale_intensity", "RandTissueContrast", "extract_slices",
    "RobustScaleIntensityd", "RobustScaleIntensityD", "RobustScaleIntensityDict",
    "RandTissueContrastd", "RandTissueContrastD", "RandTissueContrastDict",
]
