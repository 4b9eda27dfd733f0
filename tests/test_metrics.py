from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medscore.metrics import METRICS, nmse, psnr, ssim, summarize


def test_constant_offset_psnr_and_nmse():
    ref = np.full((16, 16), 0.5)
    x = ref + 0.1  # MSE = 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(ref, x, data_range=1.0) == pytest.approx(20.0, abs=1e-9)
    assert psnr(ref, x, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2.0), abs=1e-9)
    assert nmse(ref, x) == pytest.approx(0.01 / 0.25)


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.5, 0.6
    c1 = (0.01 * 1.0) ** 2  # zero variances: only the luminance term of SSIM is left
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16), a), np.full((16, 16), b), data_range=1.0) == pytest.approx(expected, rel=1e-9)


def test_identical_images():
    rng = np.random.default_rng(0)
    ref = rng.random((32, 32))
    assert psnr(ref, ref.copy(), 1.0) == math.inf
    assert ssim(ref, ref.copy(), 1.0) == pytest.approx(1.0)
    assert nmse(ref, ref.copy()) == 0.0


def test_torch_stacks_give_per_image_values():
    rng = np.random.default_rng(1)
    ref = torch.tensor(rng.random((3, 1, 24, 24)), dtype=torch.float32)
    x = ref + 0.05 * torch.arange(1, 4, dtype=torch.float32).view(3, 1, 1, 1)
    vals = psnr(ref, x, data_range=1.0)
    assert isinstance(vals, np.ndarray) and vals.shape == (3,)
    np.testing.assert_allclose(vals, [-10 * math.log10((0.05 * k) ** 2) for k in (1, 2, 3)], atol=1e-4)
    assert np.all(np.diff(ssim(ref, x, 1.0)) < 0)
    assert nmse(ref[0, 0], x[0, 0]) == pytest.approx(float(((x[0] - ref[0]) ** 2).sum() / (ref[0] ** 2).sum()),
                                                     rel=1e-5)


def test_crop_scores_the_centre_only():
    ref = np.zeros((20, 20))
    x = ref.copy()
    x[0, :] = 1.0  # error only on the border
    assert psnr(ref, x, 1.0) < math.inf
    assert psnr(ref, x, 1.0, crop=(10, 10)) == math.inf
    with pytest.raises(ValueError):
        psnr(ref, x, 1.0, crop=(30, 30))


def test_metrics_dict_and_summarize():
    ref, x = np.full((16, 16), 0.5), np.full((16, 16), 0.6)
    for name, fn in METRICS.items():
        assert np.isfinite(fn(ref, x, data_range=1.0)), name
    mean, std = summarize([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and std == pytest.approx(1.0)  # sample std (ddof = 1)
    assert summarize(np.array([4.0])) == (4.0, 0.0)
    with pytest.raises(ValueError):
        psnr(ref, x[:8])
