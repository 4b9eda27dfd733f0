"""Real-scan augmentations (pixel size, Rician noise floor, oblique planes) and mixing a second head into training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscore.config import DataConfig, config_from_dict
from medscore.errors import ConfigError
from medscore.transforms.augment import RandPixelSize, RandRicianSNR, oblique_copies

from _synth import write_nifti


def _disc(n: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return ((yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (n / 3) ** 2).astype(np.float32)[None]


def test_pixel_size_resamples_to_the_drawn_grid_and_keeps_intensity():
    t = RandPixelSize(prob=1.0, mm=(2.0, 2.0), keep_grid=0.0)
    t.set_random_state(0)
    img = _disc()
    out = np.asarray(t(img))
    assert out.shape == (1, 48, 48)  # 2 mm pixels from 1 mm: half the pixels on each axis
    assert out.mean() == pytest.approx(img.mean(), rel=0.03)  # the same object, same intensities
    assert 0.0 < out.min() + 1e-6 and out.max() <= 1.0 + 1e-5


def test_pixel_size_anisotropic_and_back_on_the_grid_is_a_blur():
    t = RandPixelSize(prob=1.0, mm=(0.7, 2.5), keep_grid=0.0)
    shapes = set()
    for seed in range(6):
        t.set_random_state(seed)
        shapes.add(tuple(np.asarray(t(_disc())).shape))
    assert len(shapes) > 1 and any(h != w for _, h, w in shapes)  # each axis draws its own pixel size
    back = RandPixelSize(prob=1.0, mm=(2.5, 2.5), keep_grid=1.0)
    back.set_random_state(0)
    img = _disc()
    out = np.asarray(back(img))
    assert out.shape == img.shape
    grad = lambda a: np.abs(np.diff(a, axis=-1)).max()  # noqa: E731
    assert grad(out) < 0.7 * grad(img)  # edges softened: a coarse scan shown on the fine grid


def test_pixel_size_is_deterministic_for_a_seed():
    a, b = RandPixelSize(prob=1.0), RandPixelSize(prob=1.0)
    a.set_random_state(5)
    b.set_random_state(5)
    np.testing.assert_array_equal(np.asarray(a(_disc())), np.asarray(b(_disc())))


@pytest.mark.parametrize("snr", [15.0, 60.0])
def test_rician_noise_has_the_drawn_snr(snr):
    t = RandRicianSNR(prob=1.0, snr=(snr, snr))
    t.set_random_state(1)
    flat = np.ones((1, 256, 256), dtype=np.float32)
    out = np.asarray(t(flat))
    assert out.std() == pytest.approx(1.0 / snr, rel=0.05)  # at signal 1 Rician noise is nearly Gaussian
    t.set_random_state(1)
    bg = np.asarray(t(np.zeros_like(flat)))
    assert bg.mean() == pytest.approx(np.sqrt(np.pi / 2) / snr, rel=0.05)  # Rayleigh floor in the background


def test_rician_noise_off_with_prob_zero():
    t = RandRicianSNR(prob=0.0)
    img = _disc()
    np.testing.assert_array_equal(np.asarray(t(img)), img)


def test_oblique_copies_turn_the_volume_and_zero_degrees_is_identity():
    vol = np.zeros((1, 24, 24, 24), dtype=np.float32)
    vol[0, 6:18, 10:14, 10:14] = 1.0  # a bar along x
    same = oblique_copies(vol, 1, 0.0, seed=0)[0]
    np.testing.assert_allclose(same, vol, atol=1e-5)
    a, b = oblique_copies(vol, 2, 30.0, seed=3), oblique_copies(vol, 2, 30.0, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == vol.shape and not np.allclose(a[0], vol, atol=0.1)
    assert a[0].sum() == pytest.approx(vol.sum(), rel=0.1)  # turned, not lost


def test_config_reads_the_new_fields_and_refuses_bad_ranges():
    cfg = config_from_dict(DataConfig, {"pixel_mm": [0.7, 2.5], "snr": [15, 60], "oblique": 2})
    assert cfg.pixel_mm == (0.7, 2.5) and cfg.snr == (15.0, 60.0) and cfg.oblique == 2
    for bad in ({"pixel_mm": [2.5, 0.7]}, {"snr": [0, 10]}, {"oblique": -1}, {"noise_prob": 2.0},
                {"oblique_deg": 120}):
        with pytest.raises(ConfigError):
            config_from_dict(DataConfig, bad)


def test_extra_scans_join_the_embedded_brain_in_every_plane(tmp_path):
    from medscore.training.batches import StepBatches
    from medscore.config import TrainConfig
    from medscore.training.dataset import training_slices

    rng = np.random.default_rng(0)
    head = np.zeros((40, 48, 36), dtype=np.float32)
    head[6:34, 8:40, 6:30] = 0.5 + 0.5 * rng.random((28, 32, 24))
    write_nifti(tmp_path / "head.nii.gz", head, np.eye(4))
    (tmp_path / "heads.txt").write_text("head.nii.gz\n")
    base = training_slices(DataConfig())
    plain = training_slices(DataConfig(extra=str(tmp_path / "heads.txt")))
    turned = training_slices(DataConfig(extra=str(tmp_path / "heads.txt"), oblique=1))
    extra = [s for s in plain if s.shape[0] == 1]
    assert len(plain) == len(base) + len(extra)
    assert {s.shape[1:] for s in extra} == {(48, 36), (40, 36), (40, 48)}  # sagittal, coronal and axial
    assert len(turned) > len(plain)
    cfg = TrainConfig(data=DataConfig(extra=str(tmp_path / "heads.txt"), pixel_mm=(0.7, 2.5), snr=(15, 60)))
    batch = StepBatches(turned, cfg, 0, 1)(0)
    assert batch.shape == (16, 1, 64, 64) and torch.isfinite(batch).all()
