"""Training and inference read scans through one reader: medscore's, as a MONAI ImageReader."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medscore.config import DataConfig
from medscore.errors import InputError
from medscore.io.readers import LoadScand, ScanReader
from medscore.io.scans import load_scan
from medscore.training.dataset import load_volumes
from medscore.transforms import inference_transforms

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

AFFINE = np.array([[0, -1.2, 0, 10], [0.9, 0, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1.0]])


def _nifti(path, data, slope=None):
    img = nib.Nifti1Image(data, AFFINE)
    if slope is not None:
        img.header.set_slope_inter(slope, 2.0)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("dtype, slope", [(np.float32, None), (np.int16, 0.37)])
def test_the_medscore_reader_gives_monais_volume_and_affine(tmp_path, dtype, slope):
    data = (np.random.default_rng(0).random((20, 24, 7)) * 300).astype(dtype)
    path = _nifti(tmp_path / "x.nii.gz", data, slope)
    monai_way = inference_transforms()({"image": path})["image"]
    ours = inference_transforms(loader=LoadScand("image"))({"image": path})["image"]
    assert torch.equal(monai_way.as_tensor(), ours.as_tensor())
    assert torch.equal(monai_way.affine, ours.affine)


def test_the_reader_is_load_scan(tmp_path):
    data = np.arange(8 * 9 * 3, dtype=np.float32).reshape(8, 9, 3)
    path = _nifti(tmp_path / "x.nii.gz", data)
    arr, meta = ScanReader().get_data(ScanReader().read(path))
    np.testing.assert_array_equal(arr, load_scan(path).data)
    np.testing.assert_allclose(meta["affine"], AFFINE, rtol=1e-6)
    assert ScanReader().verify_suffix(path) and not ScanReader().verify_suffix(tmp_path / "x.png")


def test_training_refuses_what_inference_refuses(tmp_path):
    data = np.ones((16, 16, 4), np.float32)
    data[3, 3, 1] = np.nan
    _nifti(tmp_path / "bad.nii.gz", data)
    with pytest.raises(InputError, match="NaN"):
        load_scan(tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match="bad.nii.gz.*NaN"):
        load_volumes(DataConfig(path=str(tmp_path / "bad.nii.gz")))
