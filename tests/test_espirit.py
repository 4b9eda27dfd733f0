"""medscore's ESPIRiT for rectangular calibration regions: sigpy's maps on a square, better maps from a 1D mask's
rectangle than from its square, and the region finder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medscore.errors import InputError
from medscore.physics.coils import calibration_region, estimate_smaps, map_correlation
from medscore.physics.espirit import _image_gram, espirit_maps, map_subspace_error
from medscore.physics.mri import ifft2c
from medscore.physics.simulate import simulate_multicoil

H, W = 96, 80  # not square, so that rows and columns cannot be swapped unnoticed


def _lines(centre: int, every: int = 8, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """(H, W) mask of ``centre`` central columns and every ``every``-th other column (1D undersampling)."""
    cols = np.zeros(shape[1], np.float32)
    cols[::every] = 1
    cols[shape[1] // 2 - centre // 2: shape[1] // 2 - centre // 2 + centre] = 1
    return np.broadcast_to(cols, shape).copy()


@pytest.fixture(scope="module")
def acq8x():
    """8-coil acquisition of a phantom with 9 central lines (the 1D 8x calibration of the benchmark), noise 0.005."""
    img = resize(shepp_logan_phantom(), (H, W), anti_aliasing=True)
    img = (img / img.max()).astype(np.float32)
    acq = simulate_multicoil(img, num_coils=8, noise_std=0.005, mask=_lines(9), seed=3)
    return acq, img > 0.05


def test_calibration_region_is_the_fully_sampled_rectangle() -> None:
    assert calibration_region(_lines(9)) == (24, 9)  # 9 lines, every row measured: the rows grow to 24
    assert calibration_region(_lines(9).T.copy()) == (9, 24)
    assert calibration_region(_lines(30, shape=(128, 128))) == (30, 30)  # a square wider than 24 stays square
    block = np.zeros((H, W), np.float32)
    block[H // 2 - 6:H // 2 + 6, W // 2 - 6:W // 2 + 6] = 1  # a 2D mask's square centre
    assert calibration_region(block) == (12, 12)
    with pytest.raises(InputError, match="too small"):
        calibration_region(_lines(5))


def test_gram_from_the_autocorrelation_is_the_sum_over_kernels() -> None:
    """Per pixel sum_k v_k v_k^H, v_k the k-th kernel zero-padded and taken to image space, for 5 random kernels."""
    rng = np.random.default_rng(0)
    kernels = (rng.standard_normal((5, 3, 4, 3)) + 1j * rng.standard_normal((5, 3, 4, 3))).astype(np.complex64)
    h, w = 12, 10
    padded = np.zeros((5, 3, h, w), np.complex64)
    padded[..., h // 2 - 2:h // 2 + 2, w // 2 - 1:w // 2 + 2] = kernels
    v = ifft2c(torch.from_numpy(padded)).numpy() * np.sqrt(h * w / 12)  # (K, C, h, w)
    direct = np.einsum("kcyx,kdyx->yxcd", v, v.conj())
    np.testing.assert_allclose(_image_gram(kernels, (h, w)).numpy(), direct, rtol=1e-4, atol=1e-4)


def test_a_square_region_gives_sigpys_maps(acq8x) -> None:
    pytest.importorskip("sigpy")
    acq, support = acq8x
    from sigpy.mri.app import EspiritCalib

    def sigpy_maps(crop: float) -> np.ndarray:
        return EspiritCalib(acq.kspace, calib_width=9, kernel_width=3, crop=crop, show_pbar=False).run()

    ours = estimate_smaps(acq.kspace, calib=9, crop=0.0)  # a square region, 3 x 3 kernels
    assert map_subspace_error(ours, sigpy_maps(0.0), support) < 1e-3
    # and the same pixels cropped at sigpy's default eigenvalue threshold
    kept = [np.abs(m).sum(0) > 0 for m in (estimate_smaps(acq.kspace, 9), sigpy_maps(0.95))]
    assert np.mean(kept[0] == kept[1]) > 0.995


def test_the_rectangle_of_a_1d_mask_recovers_the_maps_better_than_its_square(acq8x) -> None:
    acq, support = acq8x
    rect = estimate_smaps(acq.kspace, crop=0.0)  # default: the 24 x 9 rectangle, with 6 x 3 kernels
    square = espirit_maps(acq.kspace, (9, 9), (3, 3), crop=0.0)
    assert rect.shape == acq.smaps.shape and rect.dtype == np.complex64
    assert np.allclose((np.abs(rect) ** 2).sum(0), 1.0, atol=1e-4)  # unit norm over coils at every pixel
    assert map_correlation(rect, acq.smaps, support) > 0.95
    err_rect, err_square = (map_subspace_error(m, acq.smaps, support) for m in (rect, square))
    # measured 0.71 here, 0.45 on the brain slices of the benchmark
    assert err_rect < 0.8 * err_square, (err_rect, err_square)


def test_map_subspace_error_ignores_the_per_pixel_factor() -> None:
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((4, 6, 5)) + 1j * rng.standard_normal((4, 6, 5))
    factor = rng.uniform(0.5, 2, (6, 5)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (6, 5)))
    everywhere = np.ones((6, 5), bool)
    assert map_subspace_error(maps * factor, maps, everywhere) < 1e-6
    assert map_subspace_error(np.roll(maps, 1, axis=0), maps, everywhere) > 0.3
