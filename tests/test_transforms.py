"""Loading and transforms against ground truth: RAS reorientation, spacing, slicing, invertible scaling, DICOM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _synth import QUIET_MONAI, ODD_AFFINE, ODD_RAS_SPACING, odd_to_ras, phantom, write_dicom_series, write_nifti
from medscore.config import DataConfig
from medscore.training.dataset import find_scans, load_transforms, load_volumes, train_transforms, training_slices
from medscore.errors import InputError
from medscore.transforms import (RandTissueContrast, RandTissueContrastd, RobustScaleIntensity, RobustScaleIntensityd,
                                 extract_slices, unscale_intensity)

pytestmark = QUIET_MONAI


def _scaled(a: np.ndarray, lower: float = 0.0, upper: float = 99.5) -> np.ndarray:
    lo, hi = np.percentile(a, [lower, upper])
    return (a - lo) / (hi - lo)


# --- NIfTI: orientation, spacing, scaling ------------------------------------------------------------------------

@pytest.fixture()
def odd_nifti(tmp_path):
    data = np.random.default_rng(0).uniform(1.0, 100.0, (5, 6, 7)).astype(np.float32)
    return write_nifti(tmp_path / "odd.nii.gz", data, ODD_AFFINE), data


def test_nifti_reoriented_to_ras_with_spacing(odd_nifti):
    path, data = odd_nifti
    tr = load_transforms(DataConfig(path=str(path)))
    d = {"image": str(path)}
    for t in tr.transforms[:3]:  # load, channel-first, orientation: the image still carries its affine here
        d = t(d)
    img = d["image"]
    assert tuple(img.shape) == (1, 6, 5, 7)
    aff = np.asarray(img.affine, dtype=np.float64)
    # RAS: a diagonal, positive affine with the spacing of the permuted axes
    np.testing.assert_allclose(aff[:3, :3], np.diag(ODD_RAS_SPACING), atol=1e-6)
    # voxel (0, 0, 0) in RAS is stored voxel (ni-1, nj-1, 0): world (10 - 1.5*5, 20 - 2*4, -30)
    np.testing.assert_allclose(aff[:3, 3], [2.5, 12.0, -30.0], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(img[0]), odd_to_ras(data))


def test_nifti_volume_scaled_and_invertible(odd_nifti):
    path, data = odd_nifti
    cfg = DataConfig(path=str(path))
    (vol,) = load_volumes(cfg)
    assert vol.shape == (1, 6, 5, 7) and vol.dtype == np.float32
    ras = odd_to_ras(data)
    np.testing.assert_allclose(vol[0], _scaled(ras), atol=1e-6)
    assert vol.min() == pytest.approx(0.0, abs=1e-7)
    assert np.percentile(vol, 99.5) == pytest.approx(1.0, abs=1e-6)
    # the recorded scale undoes the mapping exactly
    out = load_transforms(cfg)({"image": str(path)})
    lo, hi = out["image_scale"]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(data, [0.0, 99.5])), rel=1e-6)
    np.testing.assert_allclose(unscale_intensity(np.asarray(out["image"][0]), (lo, hi)), ras, rtol=1e-5)


def test_robust_scale_custom_percentiles_and_inverse():
    a = np.random.default_rng(1).normal(50.0, 10.0, (20, 30)).astype(np.float64)
    t = RobustScaleIntensity(2.0, 98.0)
    y = t(a)
    lo, hi = np.percentile(a, [2.0, 98.0])
    assert t.last_scale == pytest.approx((lo, hi))
    assert np.percentile(y, 2.0) == pytest.approx(0.0, abs=1e-9) and np.percentile(y, 98.0) == pytest.approx(1.0)
    assert y.min() < 0 and y.max() > 1  # no clipping
    np.testing.assert_allclose(unscale_intensity(y, t.last_scale), a, rtol=1e-12)
    yt = t(torch.from_numpy(a))
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_allclose(yt.numpy(), y)
    d = RobustScaleIntensityd("image", 2.0, 98.0)({"image": a})
    assert d["image_scale"] == pytest.approx((lo, hi))
    with pytest.raises(ValueError):
        t(np.full((4, 4), 3.0))
    with pytest.raises(ValueError):
        RobustScaleIntensity(50.0, 10.0)


# --- slices ------------------------------------------------------------------------------------------------------

def test_extract_slices_axis_and_empty_dropped():
    vol = np.zeros((1, 4, 5, 6), np.float32)
    vol[0, :, :, 1] = 1.0  # full slice along z
    vol[0, :2, :, 3] = 1.0  # 40 % foreground along z
    vol[0, 0, 0, 5] = 1.0  # 1/20 = 5 % foreground along z
    out = extract_slices(vol, axis=2, threshold=0.5, min_fraction=0.15)
    assert [s.shape for s in out] == [(1, 4, 5)] * 2
    np.testing.assert_array_equal(out[0], vol[..., 1])
    np.testing.assert_array_equal(out[1], vol[..., 3])
    # along x and y: against a direct computation
    for axis in (0, 1):
        moved = np.moveaxis(vol[0], axis, 0)
        keep = [i for i in range(moved.shape[0]) if (moved[i] > 0.5).mean() >= 0.15]
        got = extract_slices(vol, axis=axis, threshold=0.5, min_fraction=0.15)
        assert len(got) == len(keep)
        for g, i in zip(got, keep):
            np.testing.assert_array_equal(g[0], moved[i])
    # the threshold applies to the first channel only; every channel is kept
    two = np.concatenate([vol, 5 + vol], axis=0)
    got = extract_slices(torch.from_numpy(two), axis=2, threshold=0.5, min_fraction=0.15)
    assert len(got) == 2 and got[0].shape == (2, 4, 5)
    with pytest.raises(ValueError):
        extract_slices(vol[0], 2, 0.5, 0.1)
    with pytest.raises(ValueError):
        extract_slices(vol, 3, 0.5, 0.1)


def test_training_slices_follow_configured_axis(tmp_path):
    data = phantom((12, 14, 10))
    path = write_nifti(tmp_path / "p.nii.gz", data)  # identity affine: already RAS
    vol = _scaled(data)
    for axis in (0, 1, 2):
        cfg = DataConfig(path=str(path), axis=axis, foreground_threshold=0.1, min_foreground_fraction=0.15)
        got = training_slices(cfg)
        moved = np.moveaxis(vol, axis, 0)
        keep = [i for i in range(moved.shape[0]) if (moved[i] > 0.1).mean() >= 0.15]
        assert 0 < len(keep) < moved.shape[0]  # the near-empty end slices are dropped
        assert len(got) == len(keep)
        np.testing.assert_allclose(np.stack([g[0] for g in got]), moved[keep], atol=1e-6)


# --- DICOM -------------------------------------------------------------------------------------------------------

@pytest.fixture()
def dicom_series(tmp_path):
    rng = np.random.default_rng(3)
    vol = rng.integers(1, 1000, (5, 6, 4)).astype(np.uint16)  # (slices, rows, cols)
    folder = write_dicom_series(tmp_path / "dicom" / "series1", vol)
    return folder, vol


def test_dicom_series_via_scanio(dicom_series):
    from medscore.io.scans import load_scan

    folder, vol = dicom_series
    scan = load_scan(folder)
    # array axes (x = columns, y = rows, z = slices), slices sorted by position though files are not
    assert scan.data.shape == (4, 6, 5)
    np.testing.assert_array_equal(scan.data, vol.transpose(2, 1, 0).astype(np.float32))
    assert scan.spacing == pytest.approx((0.9, 0.8, 2.5))
    # MONAI's RAS affine of the LPS geometry: x and y flipped, origin (-10, -20, 5) -> (10, 20, 5)
    np.testing.assert_allclose(scan.affine[:3, :3], np.diag([-0.9, -0.8, 2.5]), atol=1e-6)
    np.testing.assert_allclose(scan.affine[:3, 3], [10.0, 20.0, 5.0], atol=1e-6)


def test_dicom_series_via_dataset(dicom_series):
    folder, vol = dicom_series
    root = folder.parent
    assert find_scans(root) == [str(folder)]
    (v,) = load_volumes(DataConfig(path=str(root)))
    assert v.shape == (1, 4, 6, 5)
    xyz = vol.transpose(2, 1, 0).astype(np.float64)
    ras = xyz[::-1, ::-1, :]  # the series' x and y run along L and P
    np.testing.assert_allclose(v[0], _scaled(ras), atol=1e-6)


# --- find_scans --------------------------------------------------------------------------------------------------

def test_find_scans_inputs(tmp_path):
    a = write_nifti(tmp_path / "scans" / "a.nii.gz", phantom((6, 6, 6)))
    b = write_nifti(tmp_path / "scans" / "b.nii", phantom((6, 6, 6), seed=1))
    (tmp_path / "scans" / "notes.md").write_text("not a scan")
    assert find_scans(tmp_path / "scans") == [str(a), str(b)]
    npy = tmp_path / "vol.npy"
    np.save(npy, phantom((5, 6, 7)))
    assert find_scans(npy) == [str(npy)]
    lst = tmp_path / "list.txt"
    lst.write_text(f"scans/a.nii.gz\n\n{npy}\n")
    assert find_scans(lst) == [str(tmp_path / "scans" / "a.nii.gz"), str(npy)]
    vols = load_volumes(DataConfig(path=str(lst)))
    assert [v.shape for v in vols] == [(1, 6, 6, 6), (1, 5, 6, 7)]
    np.testing.assert_allclose(vols[1][0], _scaled(np.load(npy)), atol=1e-6)
    with pytest.raises(InputError, match="not found"):
        find_scans(tmp_path / "missing")
    with pytest.raises(InputError):
        find_scans(tmp_path / "scans" / "notes.md")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        find_scans(tmp_path / "empty")
    bad = tmp_path / "bad.txt"
    bad.write_text("nowhere.nii.gz\n")
    with pytest.raises(InputError, match="not found"):
        find_scans(bad)


def test_corrupt_nifti_is_input_error(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file at all")
    with pytest.raises(InputError, match="bad.nii.gz"):
        load_volumes(DataConfig(path=str(bad)))


# --- RandTissueContrast ------------------------------------------------------------------------------------------

def _tissue_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gm = rng.uniform(0, 1, (16, 16)).astype(np.float32)
    wm = (1 - gm) * rng.uniform(0, 1, (16, 16)).astype(np.float32)
    t1 = 0.3 * gm + 0.9 * wm
    t1[:3] = 0.0  # background rows
    gm[:3] = wm[:3] = 0.0
    return np.stack([t1, gm, wm])


def test_rand_tissue_contrast():
    img = _tissue_image()
    t = RandTissueContrast(prob=1.0)
    t.set_random_state(seed=5)
    out1 = t(img)
    assert out1.shape == (1, 16, 16)
    # it is the stated mixture of the tissue maps, rescaled so the 99.5th percentile is 1
    c = t._c
    brain = (img[0] > 0.05).astype(np.float32)
    mix = c[0] * img[1] + c[1] * img[2] + c[2] * np.clip(brain - img[1] - img[2], 0, 1)
    np.testing.assert_allclose(out1[0], mix / np.percentile(mix, 99.5), rtol=1e-5)
    assert np.percentile(out1, 99.5) == pytest.approx(1.0, rel=1e-5)
    # deterministic under set_random_state; a different seed gives a different contrast
    t2 = RandTissueContrast(prob=1.0)
    t2.set_random_state(seed=5)
    np.testing.assert_array_equal(t2(img), out1)
    t2.set_random_state(seed=6)
    assert not np.allclose(t2(img), out1)
    # tensors work too
    t.set_random_state(seed=5)
    np.testing.assert_allclose(t(torch.from_numpy(img)).numpy(), out1, rtol=1e-5)
    # prob 0: the T1 channel unchanged
    t0 = RandTissueContrast(prob=0.0)
    np.testing.assert_array_equal(t0(img), img[0:1])
    with pytest.raises(ValueError):
        t(img[:2])


def test_rand_tissue_contrast_dict():
    img = _tissue_image()
    a = RandTissueContrastd("image", prob=1.0).set_random_state(seed=3)
    b = RandTissueContrastd("image", prob=1.0).set_random_state(seed=3)
    oa, ob = a({"image": img})["image"], b({"image": img})["image"]
    assert oa.shape == (1, 16, 16)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(RandTissueContrastd("image", prob=0.0)({"image": img})["image"], img[0:1])
    one = img[:1]
    np.testing.assert_array_equal(a({"image": one})["image"], one)  # scans without tissue maps pass through


# --- train_transforms --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spatial", ["crop", "resize"])
@pytest.mark.parametrize("augment", [True, False])
def test_train_transforms_shape(spatial, augment):
    s = 16
    cfg = DataConfig(image_size=s, spatial=spatial, augment=augment, contrast_prob=1.0)
    tr = train_transforms(cfg)
    for img in (np.random.default_rng(0).uniform(0, 1, (1, 23, 37)).astype(np.float32),  # non-square, bigger
                np.random.default_rng(1).uniform(0, 1, (1, 9, 12)).astype(np.float32),  # smaller than s
                _tissue_image()):  # 3 channels (embedded data): one channel out
        tr.set_random_state(seed=0)
        out = tr({"image": img})["image"]
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        assert tuple(out.shape) == (1, s, s)
        assert torch.isfinite(out).all()
        tr.set_random_state(seed=0)
        assert torch.equal(tr({"image": img})["image"], out)  # seeded -> reproducible


def test_resize_mode_keeps_whole_slice():
    # resize: pad to square then area-resize, so a constant 32x16 slice becomes a 16x8 band of ones
    cfg = DataConfig(image_size=16, spatial="resize", augment=False)
    img = np.ones((1, 32, 16), np.float32)
    out = train_transforms(cfg)({"image": img})["image"][0]
    assert out.sum().item() == pytest.approx(16 * 8, rel=1e-5)
    np.testing.assert_allclose(out[:, 4:12].numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, :4].numpy(), 0.0, atol=1e-6)


# --- invertible inference transforms and k-space undersampling --------------------------------------------------

def test_inference_transforms_inverse_restores_stored_order_and_units(odd_nifti):
    from medscore.transforms import inference_transforms

    path, data = odd_nifti
    tr = inference_transforms((0.0, 99.5), orientation="RAS")
    d = tr({"image": str(path)})
    np.testing.assert_allclose(np.asarray(d["image"][0]), _scaled(odd_to_ras(data)), atol=1e-6)  # RAS, [0, 1]
    back = tr.inverse(d)["image"]
    assert tuple(back.shape) == (1, *data.shape)
    np.testing.assert_allclose(np.asarray(back[0]), data, rtol=1e-5, atol=1e-4)  # stored voxel order, scanner units
    np.testing.assert_allclose(np.asarray(back.affine), ODD_AFFINE, atol=1e-6)


def test_inference_transforms_without_meta_are_the_training_load_transforms(odd_nifti):
    from medscore.transforms import inference_transforms

    path, _ = odd_nifti
    cfg = DataConfig(path=str(path))
    a = inference_transforms(cfg.percentiles, cfg.orientation, track_meta=False)({"image": str(path)})
    b = load_transforms(cfg)({"image": str(path)})
    assert isinstance(a["image"], np.ndarray)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image_scale"] == b["image_scale"]


def test_robust_scale_dict_inverse_through_compose_and_array_inverse_needs_its_trace():
    from monai.data import MetaTensor
    from monai.transforms import Compose

    img = MetaTensor(torch.from_numpy(np.random.default_rng(2).uniform(5.0, 50.0, (1, 8, 9)).astype(np.float32)))
    c = Compose([RobustScaleIntensityd("image", 1.0, 99.0)])
    d = c({"image": img.clone()})
    assert len(d["image"].applied_operations) == 1
    back = c.inverse(d)["image"]
    torch.testing.assert_close(back.as_tensor(), img.as_tensor(), rtol=1e-5, atol=1e-4)
    assert len(back.applied_operations) == 0
    with pytest.raises(ValueError, match="MetaTensor"):
        RobustScaleIntensity().inverse(np.ones((3, 3)))


def test_kspace_undersample_fixed_mask_matches_the_operator():
    from medscore.physics import SingleCoilMRI
    from medscore.transforms import KspaceUndersample, KspaceUndersampled

    x = torch.rand(3, 12, 16)
    mask = np.zeros(16, dtype=np.float32)
    mask[::2] = 1
    k, zf = KspaceUndersample(mask)(x)
    op = SingleCoilMRI(torch.from_numpy(mask), real_input=True)
    y = op.A(x[:, None])
    torch.testing.assert_close(k, y[:, 0])
    torch.testing.assert_close(zf, op.zero_filled_magnitude(y)[:, 0])
    assert (k[..., 1::2] == 0).all()
    d = KspaceUndersampled("image", mask)({"image": x[0]})
    assert d["image_kspace"].shape == (12, 16) and d["image_zerofilled"].shape == (12, 16)
    np.testing.assert_array_equal(d["image_mask"], mask)
    with pytest.raises(InputError):
        KspaceUndersample(np.ones(15))(x)


def test_kspace_undersample_with_monai_random_mask_is_seeded():
    from monai.apps.reconstruction.transforms.array import RandomKspaceMask

    from medscore.transforms import KspaceUndersample

    x = torch.rand(12, 32)
    t = KspaceUndersample(RandomKspaceMask(center_fractions=[0.125], accelerations=[4])).set_random_state(0)
    k1, _ = t(x)
    m1 = t.last_mask.copy()
    t.set_random_state(0)
    k2, _ = t(x)
    np.testing.assert_array_equal(t.last_mask, m1)
    torch.testing.assert_close(k1, k2)
    assert m1.shape == (32,) and m1[14:18].all() and 4 <= m1.sum() < 32  # centre lines plus random ones
    assert (k1[:, m1 == 0] == 0).all()
