from __future__ import annotations

import numpy as np
import pytest
import torch

from medscore.baselines import (denoise_nlm, denoise_tv, inpaint_biharmonic, nearest_training_slice, tune, tv_cs,
                                wavelet_cs)
from medscore.metrics import psnr

H = W = 64


def _fft(x: torch.Tensor) -> torch.Tensor:
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def _ifft(k: torch.Tensor) -> torch.Tensor:
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


class MaskedFFT:
    """Single-coil masked centred orthonormal FFT, real input (docs/interfaces.md conventions)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask  # (W,): phase-encode lines

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return _fft(x.to(torch.complex64)) * self.mask

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return _ifft(y * self.mask).real

    def project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = _fft(x.to(torch.complex64))
        return _ifft(k * (1 - self.mask) + y * self.mask).real


def phantom(shift: int = 0, scale: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W] / H
    img = np.zeros((H, W))
    img[((xx - 0.5) ** 2 / 0.16 + (yy - 0.5) ** 2 / 0.2) < 1] = 0.6
    img[((xx - 0.4) ** 2 + (yy - 0.45) ** 2) < 0.01] = 1.0
    img[10:25, 35 + shift : 45 + shift] = 0.3
    img[40:50, 20:45 - shift] = 0.85
    return scale * img


def line_mask(seed: int = 0, center: int = 8, total: int = 16) -> torch.Tensor:
    """4x random line mask: ``center`` central lines plus random ones up to ``total`` of W."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(W)
    mask[W // 2 - center // 2 : W // 2 + center // 2] = 1
    free = torch.nonzero(mask == 0).flatten()
    mask[free[torch.randperm(len(free), generator=g)[: total - center]]] = 1
    return mask


@pytest.fixture(scope="module", autouse=True)
def _light_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_test_operator_is_adjoint():
    op = MaskedFFT(line_mask())
    x = torch.randn(2, 1, H, W)
    y = torch.randn(2, 1, H, W, dtype=torch.complex64)
    lhs = torch.vdot(op.A(x).flatten(), y.flatten()).real
    assert float(lhs) == pytest.approx(float((x * op.A_adjoint(y)).sum()), rel=1e-4, abs=1e-3)


def test_tv_cs_beats_zero_filled_and_decreases_objective():
    x = torch.tensor(phantom(), dtype=torch.float32)[None, None]
    op = MaskedFFT(line_mask())
    y = op.A(x)
    zero_filled = psnr(x[0, 0], op.A_adjoint(y)[0, 0])
    history: list[float] = []
    rec = tv_cs(y, op, lam=3e-3, n_iter=200, history=history)
    assert rec.shape == x.shape and not rec.is_complex()
    assert psnr(x[0, 0], rec[0, 0]) > zero_filled + 8.0
    assert history[-1] < history[0]
    assert history[-1] <= min(history) + 1e-3 * abs(history[0])  # settled near the minimum seen


def test_tv_cs_batched_and_anisotropic():
    x = torch.tensor(np.stack([phantom(), phantom(shift=5, scale=0.8)]), dtype=torch.float32)[:, None]
    op = MaskedFFT(line_mask(seed=1))
    y = op.A(x)
    rec = tv_cs(y, op, lam=3e-3, n_iter=150, isotropic=False)
    zf = op.A_adjoint(y)
    for i in range(2):
        assert psnr(x[i, 0], rec[i, 0]) > psnr(x[i, 0], zf[i, 0]) + 5.0


def test_3d_tv_gradient_is_adjoint_and_reduces_to_2d_tv_on_identical_slices():
    """The 3D gradient and its adjoint satisfy <grad x, g> = <x, grad^H g>; on a volume of identical slices 3D TV is
    the sum of the slices' 2D TV (the differences along the batch vanish)."""
    from medscore.baselines.cs import _grad, _grad_adjoint, total_variation

    g = torch.Generator().manual_seed(0)
    x, q = torch.randn(5, 2, 9, 7, generator=g), torch.randn(5, 2, 3, 9, 7, generator=g)
    lhs, rhs = float((_grad(x, volume=True) * q).sum()), float((x * _grad_adjoint(q)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)
    same = torch.tensor(phantom(), dtype=torch.float32)[None, None].repeat(4, 1, 1, 1)
    torch.testing.assert_close(total_variation(same, volume=True), total_variation(same))
    assert float(total_variation(x, volume=True).sum()) > float(total_variation(x).sum())


def test_3d_tv_cs_uses_the_neighbouring_slices():
    """Slices that change slowly, each undersampled by its own lines: 3D TV-CS beats 2D TV-CS, each at its best
    weight of a grid, by over 1 dB on the mean (it borrows what the neighbours measured), and decreases its
    3D objective."""
    x = torch.tensor(np.stack([phantom(shift=s // 2) for s in range(6)]), dtype=torch.float32)[:, None]
    op = MaskedFFT(torch.stack([line_mask(seed=s, total=12) for s in range(6)])[:, None, None])
    y = op.A(x)

    def best(volume: bool) -> float:
        return max(float(np.mean([psnr(x[i, 0], r[i, 0]) for i in range(6)]))
                   for r in (tv_cs(y, op, lam=lam, n_iter=150, volume=volume) for lam in (1e-3, 3e-3, 1e-2)))

    assert best(True) > best(False) + 1.0
    history: list[float] = []
    tv_cs(y, op, lam=3e-3, n_iter=50, volume=True, history=history)
    assert history[-1] < history[0]


def test_wavelet_cs_beats_zero_filled():
    pytest.importorskip("pywt")
    x = torch.tensor(phantom(), dtype=torch.float32)[None, None]
    op = MaskedFFT(line_mask())
    y = op.A(x)
    zero_filled = psnr(x[0, 0], op.A_adjoint(y)[0, 0])
    history: list[float] = []
    rec = wavelet_cs(y, op, lam=1e-3, n_iter=80, wavelet="haar", history=history)
    assert rec.shape == x.shape
    assert psnr(x[0, 0], rec[0, 0]) > zero_filled + 5.0
    assert history[-1] < history[0]
    rec_db4 = wavelet_cs(y, op, lam=1e-3, n_iter=20)  # default wavelet runs and keeps data scale
    assert psnr(x[0, 0], rec_db4[0, 0]) > zero_filled - 1.0


def _noisy(sigma: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    clean = phantom()
    return clean, clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)


def test_denoisers_improve_psnr():
    clean, noisy = _noisy()
    base = psnr(clean, noisy)
    out_tv = denoise_tv(noisy, weight=0.1)
    out_nlm = denoise_nlm(noisy, sigma=0.1)
    assert out_tv.shape == out_nlm.shape == clean.shape
    assert psnr(clean, out_tv) > base + 5.0
    assert psnr(clean, out_nlm) > base + 3.0


def test_bm3d_improves_psnr():
    pytest.importorskip("bm3d")
    from medscore.baselines import denoise_bm3d

    clean, noisy = _noisy()
    out = denoise_bm3d(noisy, sigma=0.1)
    assert out.shape == clean.shape
    assert psnr(clean, out) > psnr(clean, noisy) + 5.0


def test_biharmonic_inpainting_beats_masked_input():
    clean = phantom()
    known = (np.random.default_rng(0).random(clean.shape) > 0.7).astype(np.float64)  # 70 % missing
    masked = clean * known
    out = inpaint_biharmonic(masked, known)
    assert out.shape == clean.shape
    np.testing.assert_allclose(out[known > 0], clean[known > 0], atol=1e-6)
    assert psnr(clean, out) > psnr(clean, masked) + 10.0


def _training_stack() -> torch.Tensor:
    imgs = [phantom(shift=s, scale=c) for s in range(-4, 5, 2) for c in (0.8, 1.0)]
    return torch.tensor(np.stack(imgs), dtype=torch.float32)[:, None]  # (10, 1, H, W)


def test_nearest_slice_mri_picks_source_and_projects():
    stack = _training_stack()
    op = MaskedFFT(line_mask())
    g = torch.Generator().manual_seed(0)
    noise = 1e-3 * torch.randn(2, 1, H, W, dtype=torch.complex64, generator=g) * op.mask
    y = op.A(stack[[7, 2]]) + noise
    calls = []

    def keep(x: torch.Tensor, y_: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return op.project(x, y_)

    out, idx = nearest_training_slice(op.A, y, stack, keep, chunk=3, return_index=True)
    assert idx.tolist() == [7, 2]
    assert calls == [torch.Size([2, 1, H, W])]
    torch.testing.assert_close(out, op.project(stack[[7, 2]], y))
    single = nearest_training_slice(op.A, y[1], stack, op.project)  # unbatched measurement
    assert single.shape == (1, 1, H, W)


def test_nearest_slice_inpainting_and_denoising():
    stack = _training_stack()
    known = torch.tensor(np.random.default_rng(1).random((H, W)) > 0.7, dtype=torch.float32)
    y = stack[4:5] * known
    out, idx = nearest_training_slice(
        lambda x: x * known, y, stack[:, 0], lambda x, y_: known * y_ + (1 - known) * x, return_index=True
    )
    assert idx.item() == 4
    torch.testing.assert_close(out * known, y)
    noisy = stack[5:6] + 0.1 * torch.randn(1, 1, H, W, generator=torch.Generator().manual_seed(2))
    out, idx = nearest_training_slice(lambda x: x, noisy, stack, None, return_index=True)
    assert idx.item() == 5
    torch.testing.assert_close(out, stack[5:6])


def test_tune_picks_best_grid_value():
    rng = np.random.default_rng(3)
    refs = [rng.random((16, 16)) for _ in range(2)]
    scores: dict[tuple, float] = {}
    best = tune(lambda x, a: x + a, refs, refs, {"a": [-0.1, 0.05, 0.0, 0.2]}, scores=scores)
    assert best == {"a": 0.0}
    assert len(scores) == 4

    clean, noisy = _noisy(seed=4)
    grid = {"weight": [0.005, 0.1, 2.0]}
    best = tune("tv", [noisy], [clean], grid)
    brute = max(grid["weight"], key=lambda w: psnr(clean, denoise_tv(noisy, weight=w)))
    assert best == {"weight": brute} and brute == 0.1

    known = (rng.random((16, 16)) > 0.5).astype(np.float64)
    assert tune(inpaint_biharmonic, [(refs[0] * known, known)], [refs[0]], [{}]) == {}
