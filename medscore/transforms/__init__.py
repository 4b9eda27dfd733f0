"""MONAI-style array/dictionary transforms that medscore adds to MONAI's own."""

from .array import RandTissueContrast, RobustScaleIntensity, extract_slices, unscale_intensity
from .dictionary import (RandTissueContrastd, RandTissueContrastD, RandTissueContrastDict, RobustScaleIntensityd,
                         RobustScaleIntensityD, RobustScaleIntensityDict)
from .inference import inference_transforms
from .kspace import KspaceUndersample, KspaceUndersampled, KspaceUndersampleD, KspaceUndersampleDict

__all__ = [
    "RobustScaleIntensity", "unscale_intensity", "RandTissueContrast", "extract_slices",
    "RobustScaleIntensityd", "RobustScaleIntensityD", "RobustScaleIntensityDict",
    "RandTissueContrastd", "RandTissueContrastD", "RandTissueContrastDict",
    "KspaceUndersample", "KspaceUndersampled", "KspaceUndersampleD", "KspaceUndersampleDict", "inference_transforms",
]
