"""The array API (``medscore.api``) with a tiny untrained checkpoint: shapes, std, k-space input, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medscore.api as ms
from medscore.priors.checkpoint import load_model, save_model
from medscore.config import ModelConfig, TrainConfig
from medscore.errors import InputError
from medscore.nets import build_model
from medscore.training.noise import geometric_sigmas
from medscore.physics import SingleCoilMRI

H, W = 16, 20
FAST = {"preset": "fast", "device": "cpu"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_model")
    cfg = TrainConfig(model=ModelConfig(ngf=8))
    torch.manual_seed(0)
    net = build_model(cfg.model, geometric_sigmas(1.0, 0.01, 6))
    save_model(root, net, net, cfg, step=0)
    return root


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:H, :W]
    blob = ((yy - H / 2) ** 2 / 30 + (xx - W / 2) ** 2 / 50 < 1).astype(np.float32)
    return (0.8 * blob + 0.05 * rng.random((H, W))).astype(np.float32)


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return ms.make_mask("random", (H, W), accel=2, center=0.2, seed=0)


def test_reconstruct_mri_image_shapes(model_dir, image, mask):
    res = ms.reconstruct_mri(image, mask, model=model_dir, **FAST)
    assert isinstance(res, ms.Estimate)
    assert res.mean.shape == (H, W) and res.mean.dtype == np.float32 and res.std is None
    assert np.isfinite(res.mean).all() and res.nfe > 0 and res.seconds >= 0
    stack = np.stack([image, image[::-1]])
    res = ms.reconstruct_mri(stack, mask, model=model_dir, samples=2, **FAST)
    assert res.mean.shape == (2, H, W) and res.std.shape == (2, H, W)
    assert (res.std >= 0).all() and res.std.max() > 0


def test_reconstruct_mri_accepts_tensors_and_2d_masks(model_dir, image):
    m2 = np.broadcast_to(ms.make_mask("equispaced", (H, W), accel=2, center=0.2), (H, W)).copy()
    res = ms.reconstruct_mri(torch.from_numpy(image), torch.from_numpy(m2), model=model_dir, **FAST)
    assert res.mean.shape == (H, W)


def test_reconstruct_mri_complex_kspace(model_dir, image, mask):
    """A complex array is measured k-space: the estimate is a magnitude image of the k-space's size."""
    k = SingleCoilMRI(torch.from_numpy(mask), real_input=True).A(torch.from_numpy(image)[None, None])[0, 0].numpy()
    assert np.iscomplexobj(k)
    res = ms.reconstruct_mri(k, mask, model=model_dir, **FAST)
    assert res.mean.shape == (H, W) and (res.mean >= 0).all() and res.std is None
    res = ms.reconstruct_mri(np.stack([k, k]), mask, model=model_dir, samples=2, **FAST)
    assert res.mean.shape == (2, H, W) and res.std.shape == (2, H, W)
    res = ms.reconstruct_mri(torch.from_numpy(k), mask, model=model_dir, **FAST)
    assert res.mean.shape == (H, W)


def test_reconstruct_mri_same_seed_same_result(model_dir, image, mask):
    a = ms.reconstruct_mri(image, mask, model=model_dir, seed=1, **FAST).mean
    b = ms.reconstruct_mri(image, mask, model=model_dir, seed=1, **FAST).mean
    c = ms.reconstruct_mri(image, mask, model=model_dir, seed=2, **FAST).mean
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_overrides_reach_the_sampler(model_dir, image, mask):
    ald = {**FAST, "preset": "ald-fast"}
    res = ms.reconstruct_mri(image, mask, model=model_dir, num_levels=2, n_steps_each=1, **ald)
    assert res.nfe == 2 * 1 + 1
    res = ms.reconstruct_mri(image, mask, model=model_dir, num_levels=3, sampler="ddim", eta=0.0, **FAST)
    assert res.nfe == 3


def test_reconstruct_mri_rejects_a_mask_of_the_wrong_shape(model_dir, image):
    with pytest.raises(InputError, match=rf"\({W},\)"):
        ms.reconstruct_mri(image, np.ones(W + 1, dtype=np.float32), model=model_dir, **FAST)
    with pytest.raises(InputError, match="0 or 1"):
        ms.reconstruct_mri(image, np.full(W, 2.0), model=model_dir, **FAST)


def test_rejects_arrays_of_the_wrong_rank(model_dir, mask):
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        ms.reconstruct_mri(np.zeros((1, 1, H, W), dtype=np.float32), mask, model=model_dir, **FAST)


def test_inpaint(model_dir, image):
    known = np.ones((H, W), dtype=np.float32)
    known[4:10, 5:12] = 0
    res = ms.inpaint(image, known, model=model_dir, **FAST)
    assert res.mean.shape == (H, W) and res.std is None
    np.testing.assert_allclose(res.mean[known > 0], image[known > 0], atol=1e-5)
    res = ms.inpaint(np.stack([image, image]), known, model=model_dir, samples=3, **FAST)
    assert res.mean.shape == (2, H, W) and res.std.shape == (2, H, W)
    assert float(np.abs(res.std[0][known > 0]).max()) < 1e-5  # known pixels agree in every sample


def test_denoise(model_dir, image):
    noisy = image + 0.05 * np.random.default_rng(1).standard_normal(image.shape).astype(np.float32)
    res = ms.denoise(noisy, 0.05, model=model_dir, **FAST)
    # Tweedie averaged over the 8 flips and transposes
    assert res.mean.shape == (H, W) and res.std is None and res.nfe == 8
    res = ms.denoise(noisy, model=model_dir, **FAST)  # noise level estimated
    assert res.mean.shape == (H, W)
    res = ms.denoise(np.stack([noisy, noisy]), 0.05, model=model_dir, method="langevin", samples=2, **FAST)
    assert res.mean.shape == (2, H, W) and res.std.shape == (2, H, W)


def test_sample(model_dir):
    res = ms.sample(3, 16, model=model_dir, **FAST)
    assert res.mean.shape == (3, 16, 16) and res.std is None and np.isfinite(res.mean).all()
    res = ms.sample(1, (16, 24), model=model_dir, **FAST)
    assert res.mean.shape == (1, 16, 24)  # n = 1 keeps its batch axis


def test_loaded_model_is_used_as_is(model_dir, image, mask):
    loaded = load_model(model_dir)
    a = ms.reconstruct_mri(image, mask, model=loaded, **FAST).mean
    b = ms.reconstruct_mri(image, mask, model=model_dir, **FAST).mean
    np.testing.assert_array_equal(a, b)


def test_sample_to_files(model_dir, tmp_path):
    (png, npy), nfe = ms.sample_to_files(2, tmp_path / "g.png", size=16, model=model_dir, device="cpu",
                                         opts=ms.SamplerOptions(preset="fast"))
    assert png.is_file() and np.load(npy).shape == (2, 16, 16) and nfe > 0
    with pytest.raises(InputError, match=".png"):
        ms.sample_to_files(2, tmp_path / "g.jpg", size=16, model=model_dir, device="cpu")
