"""Forward operators and data-consistency steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscore.physics import (DataConsistency, Denoising, GradientStep, HardProjection, Inpainting, LinearOperator,
                              MaskError, MultiCoilMRI, NoisyProjection, SingleCoilMRI, estimate_noise_std, fft2c,
                              ifft2c, make_mask, normalize_smaps)

H, W, K, B = 32, 24, 4, 2


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_smaps() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    maps = [
        torch.exp(-((yy - a) ** 2 + (xx - b) ** 2)) * torch.exp(1j * (a * xx + b * yy))
        for a, b in [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    ]
    return normalize_smaps(torch.stack(maps)[None].to(torch.complex64))


def random_smaps() -> torch.Tensor:
    return normalize_smaps(torch.randn(1, K, H, W, dtype=torch.complex64, generator=gen(5)))


def conj_symmetric(m: np.ndarray) -> np.ndarray:
    """Close a centred (even-sized) mask under k -> -k: index i <-> (N - i) % N."""
    mirror = np.roll(np.flip(m), 1, axis=tuple(range(m.ndim)))
    return np.maximum(m, mirror)


LINES = make_mask("random", (H, W), 4, 0.08, seed=1)
POISSON = make_mask("poisson", (H, W), 3, 0.1, seed=2)
PIXELS = (np.random.default_rng(3).random((H, W)) < 0.4).astype(np.float32)


def x_like(op: LinearOperator, seed: int = 0) -> torch.Tensor:
    c = 1 if isinstance(op, (SingleCoilMRI,)) and op.real_input else 2
    if isinstance(op, (Inpainting, Denoising)):
        c = 3
    return torch.randn(B, c, H, W, generator=gen(seed))


def y_like(op: LinearOperator, seed: int = 1) -> torch.Tensor:
    if isinstance(op, (Inpainting, Denoising)):
        return torch.randn(B, 3, H, W, generator=gen(seed))
    k = K if isinstance(op, MultiCoilMRI) else 1
    return torch.randn(B, k, H, W, dtype=torch.complex64, generator=gen(seed))


OPERATORS = {
    "inpainting": lambda: Inpainting(PIXELS),
    "denoising": lambda: Denoising(0.1),
    "mri-real-lines": lambda: SingleCoilMRI(LINES, real_input=True),
    "mri-real-poisson": lambda: SingleCoilMRI(POISSON, real_input=True),
    "mri-complex-lines": lambda: SingleCoilMRI(LINES, real_input=False),
    "mri-complex-poisson": lambda: SingleCoilMRI(torch.from_numpy(POISSON), real_input=False),
    "multicoil-lines": lambda: MultiCoilMRI(LINES, random_smaps()),
    "multicoil-poisson-smooth": lambda: MultiCoilMRI(POISSON, smooth_smaps()),
}
PROJECTABLE = [k for k in OPERATORS if k != "denoising"]


@pytest.mark.parametrize("name", list(OPERATORS))
def test_adjointness(name: str) -> None:
    op = OPERATORS[name]()
    assert op.adjointness_error(x_like(op), y_like(op)) < 1e-5


def test_fft_matches_numpy_and_is_unitary() -> None:
    z = torch.randn(B, 1, H, W, dtype=torch.complex64, generator=gen())
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(z.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    assert np.abs(fft2c(z).numpy() - ref).max() < 1e-5
    assert (ifft2c(fft2c(z)) - z).abs().max() < 1e-5
    assert torch.allclose(fft2c(z).norm(), z.norm(), rtol=1e-5)


@pytest.mark.parametrize("name", ["inpainting", "mri-complex-lines", "mri-complex-poisson"])
def test_projection_exact_and_idempotent(name: str) -> None:
    op = OPERATORS[name]()
    y = op.A(x_like(op, seed=7))
    p = op.project(x_like(op), y)
    assert torch.equal(op.A(p), y) or (op.A(p) - y).abs().max() < 1e-5
    assert (op.project(p, y) - p).abs().max() < 1e-5
    # A_dagger is the minimum-norm solution: consistent and orthogonal to the null space
    assert (op.A(op.A_dagger(y)) - y).abs().max() < 1e-5


@pytest.mark.parametrize("mask", [LINES, POISSON], ids=["lines", "poisson"])
def test_real_mode_projection_exact_for_symmetric_mask(mask: np.ndarray) -> None:
    op = SingleCoilMRI(conj_symmetric(mask), real_input=True)
    y = op.A(torch.randn(B, 1, H, W, generator=gen(9)))
    p = op.project(torch.randn(B, 1, H, W, generator=gen(10)), y)
    assert p.shape == (B, 1, H, W) and not p.is_complex()
    assert (op.A(p) - y).abs().max() < 1e-5
    assert (op.project(p, y) - p).abs().max() < 1e-5
    assert (op.A(op.zero_filled(y)) - y).abs().max() < 1e-5


def test_real_mode_projection_is_real_part_of_complex() -> None:
    real, cplx = SingleCoilMRI(LINES, real_input=True), SingleCoilMRI(LINES, real_input=False)
    x = torch.randn(B, 1, H, W, generator=gen())
    y = y_like(cplx)
    x2 = torch.cat([x, torch.zeros_like(x)], dim=1)
    assert torch.allclose(real.project(x, y), cplx.project(x2, y)[:, :1], atol=1e-6)


def test_closed_form_dagger_matches_cg() -> None:
    op = SingleCoilMRI(POISSON, real_input=False)
    y = op.A(x_like(op))
    assert torch.allclose(LinearOperator.A_dagger(op, y), op.A_dagger(y), atol=1e-5)


def test_multicoil_fully_sampled_is_identity() -> None:
    op = MultiCoilMRI(np.ones(W, dtype=np.float32), random_smaps(), cg_iters=3)
    x = x_like(op)
    assert torch.allclose(op.A_adjoint(op.A(x)), x, atol=1e-5)
    assert torch.allclose(op.zero_filled(op.A(x)), x, atol=1e-5)
    assert torch.allclose(op.A_dagger(op.A(x)), x, atol=1e-5)


def test_multicoil_projection_converges() -> None:
    y = MultiCoilMRI(LINES, smooth_smaps()).A(torch.randn(B, 2, H, W, generator=gen(4)))
    x0 = torch.randn(B, 2, H, W, generator=gen(6))
    res = []
    for iters in (2, 10, 60):
        op = MultiCoilMRI(LINES, smooth_smaps(), cg_iters=iters, cg_tol=1e-9)
        res.append(float((op.A(op.project(x0, y)) - y).norm() / y.norm()))
    assert res[0] > res[1] > res[2] and res[2] < 0.05
    half = make_mask("equispaced", (H, W), 2, 0.1, seed=0)
    easy = MultiCoilMRI(half, random_smaps(), cg_iters=30)  # R = 2 with 4 coils: well conditioned
    y = easy.A(x0)
    p = easy.project(torch.zeros_like(x0), y)
    assert float((easy.A(p) - y).norm() / y.norm()) < 1e-3


def _dense_prox(op: LinearOperator, z: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """The proximal point by a dense solve of (A^H A + lam I) x = A^H y + lam z in float64, one image (ground truth)."""
    n = z[:1].numel()
    basis = torch.eye(n, dtype=torch.float32).reshape(n, *z.shape[1:])
    gram = torch.stack([op.A_adjoint(op.A(e[None]))[0].reshape(-1) for e in basis], 1).double()
    rhs = (op.A_adjoint(y[:1]) + lam * z[:1]).reshape(-1).double()
    return torch.linalg.solve(gram + lam * torch.eye(n, dtype=torch.float64), rhs).float().reshape(z[:1].shape)


@pytest.mark.parametrize("name", ["multicoil-lines", "multicoil-poisson-smooth", "mri-complex-lines", "inpainting"])
@pytest.mark.parametrize("lam", [0.05, 1.0])
def test_prox_is_the_minimiser_of_data_term_plus_distance(name: str, lam: float) -> None:
    op = OPERATORS[name]()
    z, y = x_like(op, 3)[:1], y_like(op, 4)[:1]
    y = op.A(op.A_adjoint(y))  # measurements in the operator's range (zero where unmeasured)
    exact = _dense_prox(op, z, y, lam)
    got = op.prox(z, y, lam, iters=60 if not op.gram_is_projection else 0)
    assert float((got - exact).norm() / exact.norm()) < 1e-4


def test_multicoil_proximal_data_step_beats_one_gradient_step() -> None:
    """The HQS data step of plug-and-play on noisy multi-coil data: CG reaches the proximal point that one likelihood
    step (exact only when A^H A is a projection) falls short of; on a mask the two are the same step."""
    op = MultiCoilMRI(POISSON, smooth_smaps())
    z, y = torch.randn(B, 2, H, W, generator=gen(7)), op.A(torch.randn(B, 2, H, W, generator=gen(8)))
    sigma, noise = 0.05, 0.02
    dc = DataConsistency(op, y, noise_std=noise, mode="gradient")
    exact = torch.cat([_dense_prox(op, z[i:i + 1], y[i:i + 1], noise**2 / sigma**2) for i in range(B)])

    def err(x: torch.Tensor) -> float:
        return float((x - exact).norm() / exact.norm())

    assert err(dc.proximal(z, sigma)) < 1e-3 < 0.1 < err(dc.noisy(z, sigma, 2 * sigma**2))
    masked = SingleCoilMRI(LINES, real_input=False)
    ym = masked.A(z)
    dcm = DataConsistency(masked, ym, noise_std=noise, mode="gradient")
    assert torch.equal(dcm.proximal(z + 1, sigma), dcm.noisy(z + 1, sigma, 2 * sigma**2))
    assert torch.equal(DataConsistency(op, y, mode="hard").proximal(z, sigma), op.project(z, y))


def test_mask_shape_checked() -> None:
    op = SingleCoilMRI(np.ones(W + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="expected"):
        op.A(torch.randn(1, 1, H, W))
    with pytest.raises(MaskError, match=r"expected \(W,\)"):
        MultiCoilMRI(np.ones(5, dtype=np.float32), random_smaps())
    with pytest.raises(ValueError, match="0 or 1"):
        Inpainting(np.full((H, W), 0.5))
    with pytest.raises(ValueError, match="real_input=True"):
        SingleCoilMRI(LINES).A(torch.randn(1, 2, H, W))


@pytest.mark.parametrize("name", PROJECTABLE)
def test_noisy_projection_at_zero_is_hard(name: str) -> None:
    op = OPERATORS[name]()
    y, x = op.A(x_like(op, seed=3)), x_like(op)
    hard = HardProjection(op, y)(x, torch.tensor(0.5))
    for sigma in (0.0, torch.tensor(0.0), torch.zeros(B)):
        assert torch.allclose(NoisyProjection(op, y, gen())(x, sigma), hard, atol=1e-6)


def test_noisy_projection_noise_level() -> None:
    sigma = 0.3
    op = Inpainting(PIXELS)
    y = op.A(torch.randn(64, 1, H, W, generator=gen(1)))
    x = torch.zeros(64, 1, H, W)
    out = NoisyProjection(op, y, gen(2))(x, sigma)
    known = torch.from_numpy(PIXELS).bool().expand_as(out)
    assert abs(float((out - y)[known].std()) - sigma) < 0.02
    assert torch.equal(out[~known], x[~known])

    op = SingleCoilMRI(LINES, real_input=False)
    y = op.A(torch.randn(64, 2, H, W, generator=gen(1)))
    out = NoisyProjection(op, y, gen(2))(torch.zeros(64, 2, H, W), torch.tensor(sigma))
    r = (op.A(out) - y)[torch.from_numpy(LINES).bool().expand(64, 1, H, W)]
    assert abs(float(r.real.std()) - sigma) < 0.02 and abs(float(r.imag.std()) - sigma) < 0.02


def test_noisy_projection_generator_and_per_sample_sigma() -> None:
    op = SingleCoilMRI(LINES)
    y, x = op.A(torch.randn(B, 1, H, W, generator=gen(1))), torch.randn(B, 1, H, W, generator=gen(2))
    a = NoisyProjection(op, y, gen(3))(x, 0.2)
    assert torch.equal(a, NoisyProjection(op, y, gen(3))(x, 0.2))
    assert not torch.allclose(a, NoisyProjection(op, y, gen(4))(x, 0.2))
    per = NoisyProjection(op, y, gen(3))(x, torch.tensor([0.2, 0.0]))
    assert torch.allclose(per[0], a[0], atol=1e-6)
    assert torch.allclose(per[1], HardProjection(op, y)(x, 0.0)[1], atol=1e-6)


@pytest.mark.parametrize("name", list(OPERATORS))
def test_gradient_step_decreases_residual(name: str) -> None:
    op = OPERATORS[name]()
    y = op.A(x_like(op, seed=3)) + 0.05 * y_like(op)
    if isinstance(op, (Inpainting, Denoising)):
        y = y.real
    x = x_like(op)
    for weight in (0.5, lambda s: 0.5 * torch.as_tensor(s) / 0.2):
        step = GradientStep(op, y, weight)
        before = (op.A(x) - y).norm()
        after = (op.A(step(x, torch.tensor(0.2))) - y).norm()
        assert after < before


def test_denoising_refuses_hard_projection() -> None:
    op = Denoising(0.1)
    x = torch.randn(B, 1, H, W, generator=gen())
    with pytest.raises(NotImplementedError):
        op.project(x, x)
    for cls in (HardProjection, NoisyProjection):
        with pytest.raises(ValueError, match="GradientStep"):
            cls(op, x)
    assert torch.equal(op.A(x), x) and op.noise_std == 0.1


def test_estimate_noise_std() -> None:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    clean = (0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy)).expand(3, 1, 64, 64)
    noisy = clean + 0.05 * torch.randn(3, 1, 64, 64, generator=gen())
    est = estimate_noise_std(noisy)
    assert isinstance(est, float) and abs(est - 0.05) < 0.01
    assert abs(estimate_noise_std(noisy[0, 0].numpy()) - 0.05) < 0.015


def test_kspace_noise_estimate_is_exact_on_noise_and_an_upper_bound_with_signal() -> None:
    from medscore.io.embedded import held_out
    from medscore.physics.coils import estimate_kspace_noise
    from medscore.physics.simulate import simulate_multicoil

    brain = held_out("val")[0]
    mask = make_mask("random", brain.shape, 4, 0.08, seed=0)
    for std in (0.003, 0.02):
        noise_only = simulate_multicoil(np.zeros_like(brain), num_coils=8, noise_std=std, seed=1).kspace
        assert estimate_kspace_noise(noise_only * mask, mask) == pytest.approx(std, rel=0.03)
        scan = simulate_multicoil(brain, num_coils=8, noise_std=std, seed=1).kspace
        assert std < estimate_kspace_noise(scan * mask, mask) < 2 * std + 0.005
    with pytest.raises(Exception, match="no measured"):
        estimate_kspace_noise(np.ones((4, 16, 16), np.complex64), np.pad(np.ones((4, 4)), 6))
