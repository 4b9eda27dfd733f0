"""Solvers against analytic truth: an exact Gaussian prior N(mu, s^2 I) with a closed-form score.

For a Gaussian prior and a linear Gaussian measurement the posterior is Gaussian with a closed-form
mean and covariance, so every solver can be checked against it: Tweedie denoising exactly, the
Langevin solvers statistically (the mean of many posterior samples against the posterior mean, their
per-pixel std against the posterior std). The chains are seeded, so every test is deterministic; the
tolerances are stated in units of the Monte-Carlo standard error ``posterior_std / sqrt(samples)``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medscore import solvers, tasks
from medscore.errors import InputError
from medscore.training.noise import geometric_sigmas
from medscore.physics import SingleCoilMRI
from medscore.physics.mri import channels_to_complex, complex_to_channels, fft2c, ifft2c
from medscore.sampling import PRESETS
from medscore.solvers import SamplerOptions

SIGMAS = geometric_sigmas(3.0, 0.01, 50)



class GaussianPrior(nn.Module):
    """Exact score of N(mu, s^2 I) perturbed with N(0, sigma^2 I): -(x - mu) / (s^2 + sigma^2).

    ``mu`` is an (H, W) image (or a scalar); one channel, like the real score networks. Solvers read
    the noise levels from the ``sigmas`` buffer.
    """

    def __init__(self, mu: torch.Tensor | float, s: float, sigmas: torch.Tensor = SIGMAS) -> None:
        super().__init__()
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sigmas", sigmas.clone())
        self.s = float(s)
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],), "the score gets one noise level per batch element"
        assert x.shape[1] == 1, "the prior is applied per channel"
        self.calls += 1
        sig = sigma.reshape(-1, 1, 1, 1)
        return -(x - self.mu) / (self.s**2 + sig**2)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rms(t: torch.Tensor) -> float:
    return float(t.abs().double().pow(2).mean().sqrt())


H = W = 16
S = 0.2


@pytest.fixture(scope="module")
def mu() -> torch.Tensor:
    return 0.3 + 0.4 * torch.rand(H, W, generator=_gen(0))


def _line_mask(seed: int = 1, rate: float = 0.35) -> torch.Tensor:
    m = (torch.rand(W, generator=_gen(seed)) < rate).float()
    m[W // 2 - 1 : W // 2 + 2] = 1.0
    return m


def _symmetric_line_mask(seed: int = 2) -> torch.Tensor:
    """Conjugate-symmetric about DC in centred indices: centred index j and (W - j) % W are the +-frequency pair."""
    m = (torch.rand(W, generator=_gen(seed)) < 0.4).float()
    m = torch.maximum(m, m[(W - torch.arange(W)) % W])
    m[W // 2] = 1.0
    assert torch.equal(m, m[(W - torch.arange(W)) % W])
    return m


# ---------------------------------------------------------------------------------------------------------------
# denoising


def _denoise_problem(mu: torch.Tensor, sy: float, b: int = 1, seed: int = 3):
    g = _gen(seed)
    x = mu + S * torch.randn(b, 1, H, W, generator=g)
    y = x + sy * torch.randn(x.shape, generator=g)
    post = (S**2 * y + sy**2 * mu) / (S**2 + sy**2)
    post_std = math.sqrt(S**2 * sy**2 / (S**2 + sy**2))
    return y, post, post_std


def test_tweedie_denoise_is_the_exact_posterior_mean(mu):
    for sy in (0.02, 0.1, 0.3):
        y, post, _ = _denoise_problem(mu, sy, b=3)
        res = tasks.denoise(GaussianPrior(mu, S), y, sy, method="tweedie", flip_average=False)
        assert res.mean.shape == y.shape and res.std is None and res.nfe == 1
        torch.testing.assert_close(res.mean, post, atol=1e-5, rtol=0)


def test_symmetry_averaged_tweedie_is_exact_for_a_symmetric_prior_only(mu):
    """The 4 flips are exact for a flip-invariant prior; the 8 dihedral transforms need transposes too."""
    flip_sym = 0.25 * (mu + mu.flip(-1) + mu.flip(-2) + mu.flip(-2, -1))
    d4_sym = 0.5 * (flip_sym + flip_sym.transpose(-1, -2))  # also transpose-invariant (H == W)
    y, post, _ = _denoise_problem(d4_sym, 0.1, b=3)
    res = tasks.denoise(GaussianPrior(d4_sym, S), y, 0.1, method="tweedie")
    assert res.nfe == 8
    torch.testing.assert_close(res.mean, post, atol=1e-5, rtol=0)
    y, post, _ = _denoise_problem(flip_sym, 0.1, b=3)
    res = tasks.denoise(GaussianPrior(flip_sym, S), y, 0.1, method="tweedie", transpose=False)
    assert res.nfe == 4
    torch.testing.assert_close(res.mean, post, atol=1e-5, rtol=0)
    # a prior without the symmetry: averaging over it changes the answer
    assert not torch.allclose(tasks.denoise(GaussianPrior(flip_sym, S), y, 0.1).mean, post, atol=1e-3)
    y, post, _ = _denoise_problem(mu, 0.1, b=3)
    assert not torch.allclose(tasks.denoise(GaussianPrior(mu, S), y, 0.1, transpose=False).mean, post, atol=1e-3)


def test_transposed_tweedie_on_a_non_square_image(mu):
    """Transposing a non-square batch and back gives the score in the input's layout (shape kept)."""
    y = torch.rand(2, 1, H, W + 6, generator=_gen(5))
    wide_mu = 0.5  # a constant mean: every transform is a symmetry, and it fits either layout
    res = tasks.denoise(GaussianPrior(wide_mu, S), y, 0.1, method="tweedie")
    post = (S**2 * y + 0.1**2 * wide_mu) / (S**2 + 0.1**2)
    assert res.mean.shape == y.shape and res.nfe == 8
    torch.testing.assert_close(res.mean, post, atol=1e-5, rtol=0)


@pytest.mark.parametrize("preset", ["ald-fast", "ald"])
def test_langevin_denoise_matches_posterior_mean_and_std(mu, preset):
    sy, n = 0.1, 256
    y, post, post_std = _denoise_problem(mu, sy)
    res = tasks.denoise(GaussianPrior(mu, S), y, sy, SamplerOptions(preset=preset, samples=n), method="langevin")
    assert res.mean.shape == y.shape and res.std is not None and res.std.shape == y.shape
    se = post_std / math.sqrt(n)
    # mean: within 3 Monte-Carlo standard errors (rms over pixels), far closer than the input itself
    assert _rms(res.mean - post) < 3 * se, (_rms(res.mean - post), se)
    assert _rms(res.mean - post) < 0.25 * _rms(y - post)
    # spread: the posterior std, not the prior's (s = 0.2) nor zero
    assert abs(float(res.std.mean()) / post_std - 1) < 0.2, (float(res.std.mean()), post_std)


def test_langevin_denoise_keeps_batch_elements_apart(mu):
    """Two very different images in one batch, several samples each: each mean is its own posterior's."""
    sy, n = 0.1, 64
    y, post, post_std = _denoise_problem(mu, sy, b=2)
    y[1] += 0.5
    post[1] += 0.5 * S**2 / (S**2 + sy**2)
    res = tasks.denoise(GaussianPrior(mu, S), y, sy, SamplerOptions(preset="ald-fast", samples=n), method="langevin")
    assert res.mean.shape == (2, 1, H, W) and res.std.shape == (2, 1, H, W) and res.samples == n
    for b in range(2):
        assert _rms(res.mean[b] - post[b]) < 3 * post_std / math.sqrt(n)


def test_denoise_rejects_nonpositive_noise(mu):
    y, _, _ = _denoise_problem(mu, 0.1)
    with pytest.raises(ValueError, match="noise_std"):
        tasks.denoise(GaussianPrior(mu, S), y, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# inpainting


@pytest.mark.parametrize("consistency", ["noisy", "hard"])
def test_inpaint_posterior_mean_and_known_pixels(mu, consistency):
    """Independent pixels: unknown ones have posterior N(mu, s^2), known ones equal y exactly."""
    n = 128
    g = _gen(4)
    x = mu + S * torch.randn(1, 1, H, W, generator=g)
    mask = (torch.rand(H, W, generator=g) > 0.5).float()
    res = tasks.inpaint(GaussianPrior(mu, S), x * mask, mask, SamplerOptions(preset="ald-fast", samples=n),
                          consistency=consistency)
    known, hole = mask.bool(), ~mask.bool()
    # every sample keeps them (the mean of identical floats may differ in the last bit)
    torch.testing.assert_close(res.mean[0, 0][known], x[0, 0][known], atol=1e-6, rtol=0)
    assert float(res.std[0, 0][known].abs().max()) < 1e-6
    err = (res.mean[0, 0] - mu)[hole]
    assert _rms(err) < 3 * S / math.sqrt(n), _rms(err)
    assert abs(float(res.std[0, 0][hole].mean()) / S - 1) < 0.2


class ConvGaussianPrior(GaussianPrior):
    """:class:`GaussianPrior` with its score computed through a 1 x 1 convolution, which autocast runs in bf16."""

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        sig = sigma.reshape(-1, 1, 1, 1)
        return -F.conv2d(x - self.mu, torch.ones(1, 1, 1, 1)) / (self.s**2 + sig**2)


def test_bf16_precision_perturbs_only_the_score(mu):
    """``precision="bf16"`` runs the network's convolutions in bf16 (the estimate moves, by about bf16's rounding)
    while data consistency stays in fp32 (known pixels kept); fp32 and ``auto`` on CPU give the same result."""
    g = _gen(6)
    x = mu + S * torch.randn(2, 1, H, W, generator=g)
    mask = (torch.rand(H, W, generator=g) > 0.5).float()
    run = {p: tasks.inpaint(ConvGaussianPrior(mu, S), x * mask, mask, SamplerOptions(preset="fast", precision=p))
           for p in ("fp32", "auto")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # CPUs without native bf16: "emulated, slower"
        run["bf16"] = tasks.inpaint(ConvGaussianPrior(mu, S), x * mask, mask,
                                      SamplerOptions(preset="fast", precision="bf16"))
    assert torch.equal(run["fp32"].mean, run["auto"].mean)
    known = mask.bool().expand_as(x)
    torch.testing.assert_close(run["bf16"].mean[known], x[known], atol=1e-6, rtol=0)
    moved = float((run["bf16"].mean - run["fp32"].mean).abs().max())
    assert run["bf16"].mean.dtype == torch.float32 and 0 < moved < 0.02 * S, moved
    with pytest.raises(InputError, match="precision"):
        SamplerOptions(precision="fp16")


def test_inpaint_per_sample_masks(mu):
    """A (B, 1, H, W) mask, one per image, with several samples per image."""
    g = _gen(5)
    x = mu + S * torch.randn(2, 1, H, W, generator=g)
    mask = (torch.rand(2, 1, H, W, generator=g) > 0.5).float()
    res = tasks.inpaint(GaussianPrior(mu, S), x * mask, mask, SamplerOptions(preset="ald-fast", samples=3))
    assert res.mean.shape == (2, 1, H, W) and res.std.shape == (2, 1, H, W)
    torch.testing.assert_close(res.mean[mask.bool()], x[mask.bool()], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# MRI


def _complex_mean(mu: torch.Tensor) -> torch.Tensor:
    """The one-channel prior applied to the real and the imaginary channel: mean mu + i mu, as (1, 2, H, W)."""
    return complex_to_channels(torch.complex(mu, mu)[None, None])


def _k_of(x: torch.Tensor) -> torch.Tensor:
    return fft2c(channels_to_complex(x))


@pytest.mark.parametrize("consistency", [None, "hard"])
def test_mri_complex_noiseless_posterior(mu, consistency):
    """Posterior mean F^H(M y + (1 - M) F mu_c); per-pixel posterior std s sqrt(1 - sampled fraction)."""
    n = 128
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    x = _complex_mean(mu) + S * torch.randn(1, 2, H, W, generator=_gen(6))
    y = op.A(x)
    k_mu = _k_of(_complex_mean(mu))
    post = complex_to_channels(ifft2c(mask * y + (1 - mask) * k_mu))
    post_std = S * math.sqrt(1 - float(mask.mean()))
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, SamplerOptions(preset="ald-fast", samples=n),
                                  real_image=False, consistency=consistency)
    assert res.mean.shape == (1, 2, H, W) and res.std.shape == (1, 2, H, W)
    assert _rms(res.mean - post) < 3 * post_std / math.sqrt(n), (_rms(res.mean - post), post_std / math.sqrt(n))
    zero_filled = op.A_dagger(y)
    assert _rms(res.mean - post) < 0.3 * _rms(zero_filled - post)
    # the final hard projection: the estimate's measured k-space is the data
    torch.testing.assert_close(op.A(res.mean), y, atol=1e-5, rtol=0)
    assert abs(float(res.std.mean()) / post_std - 1) < 0.2, (float(res.std.mean()), post_std)


def test_mri_real_image_symmetric_mask_posterior(mu):
    """Real image, conjugate-symmetric mask: the real projection is exact and the posterior mean is real."""
    n = 128
    mask = _symmetric_line_mask()
    op = SingleCoilMRI(mask, real_input=True)
    x = mu + S * torch.randn(1, 1, H, W, generator=_gen(7))
    y = op.A(x)
    k_mu = fft2c(mu[None, None].to(torch.complex64))
    post_c = ifft2c(mask * y + (1 - mask) * k_mu)
    assert float(post_c.imag.abs().max()) < 1e-5  # symmetric mask: the posterior mean is real
    post = post_c.real
    post_std = S * math.sqrt(1 - float(mask.mean()))
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, SamplerOptions(preset="ald-fast", samples=n),
                                  real_image=True)
    assert res.mean.shape == (1, 1, H, W) and res.std.shape == (1, 1, H, W)
    assert _rms(res.mean - post) < 3 * post_std / math.sqrt(n)
    assert _rms(res.mean - post) < 0.3 * _rms(op.A_dagger(y) - post)
    torch.testing.assert_close(op.A(res.mean), y, atol=1e-5, rtol=0)
    assert abs(float(res.std.mean()) / post_std - 1) < 0.2


@pytest.mark.parametrize("noise_std", [0.1, 0.2])
def test_mri_noisy_kspace_is_wiener(mu, noise_std):
    """Noisy k-space (std ``noise_std`` per real component): measured entries get the Wiener estimate
    (s^2 y + sn^2 F mu) / (s^2 + sn^2), unmeasured ones F mu. A likelihood step weighted too strongly
    (the data trusted as if noiseless) pulls the measured entries to y instead."""
    n = 128
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    g = _gen(8)
    x = _complex_mean(mu) + S * torch.randn(1, 2, H, W, generator=g)
    y = op.A(x) + noise_std * op.A(torch.randn(x.shape, generator=g))  # complex white noise on the measured entries
    k_mu = _k_of(_complex_mean(mu))
    w = S**2 / (S**2 + noise_std**2)
    wiener = complex_to_channels(ifft2c(mask * (w * y + (1 - w) * k_mu) + (1 - mask) * k_mu))
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, SamplerOptions(preset="ald-fast", samples=n),
                                  real_image=False, noise_std=noise_std)
    zero_filled = op.A_dagger(y)
    assert _rms(res.mean - wiener) < 0.25 * _rms(zero_filled - wiener)
    # the weight given to the data on the measured entries, fitted by least squares
    meas = (mask.expand(H, W) > 0)[None, None]
    d_est, d_y = (_k_of(res.mean) - k_mu)[meas], (y - k_mu)[meas]
    w_hat = float((d_y.conj() * d_est).real.sum() / (d_y.abs() ** 2).sum())
    assert abs(w_hat - w) < 0.08, (w_hat, w)
    # no hard projection with noisy data: the estimate does not reproduce the noisy measurements
    assert _rms((_k_of(res.mean) - y)[meas]) > 0.3 * noise_std


@pytest.mark.parametrize("noise_std", [0.1, 0.2])
def test_multicoil_noisy_posterior_with_per_image_coil_maps(noise_std):
    """Multi-coil, noisy data, two images with their own coil maps, many samples each: against the exact
    Gaussian posterior N(P^-1 (mu / s^2 + A^T y / sn^2), P^-1), P = I / s^2 + A^T A / sn^2, computed with
    the forward model as a dense real matrix (8 x 8 complex images: 128 unknowns)."""
    from medscore.physics.mri import MultiCoilMRI, normalize_smaps

    h = w = 8
    n, d, coils = 256, 2 * h * w, 3
    g = _gen(9)
    mu8 = 0.3 + 0.4 * torch.rand(h, w, generator=g)
    smaps = normalize_smaps(torch.randn(2, coils, h, w, dtype=torch.complex64, generator=g))
    mask = torch.zeros(w)
    mask[::2] = 1.0
    mask[w // 2] = 1.0
    mu_c = complex_to_channels(torch.complex(mu8, mu8)[None, None])
    x = mu_c + S * torch.randn(2, 2, h, w, generator=g)
    op = MultiCoilMRI(mask, smaps)
    noise = torch.complex(torch.randn(2, coils, h, w, generator=g), torch.randn(2, coils, h, w, generator=g))
    y = op.A(x) + noise_std * mask * noise  # std noise_std per real component of every measured sample
    res = tasks.reconstruct_mri(GaussianPrior(mu8, S), y, mask, SamplerOptions(preset="ald-fast", samples=n),
                                  smaps=smaps, noise_std=noise_std)
    assert res.mean.shape == (2, 2, h, w) and res.std.shape == (2, 2, h, w)
    basis = torch.eye(d).reshape(d, 2, h, w)
    for b in range(2):
        a = torch.view_as_real(MultiCoilMRI(mask, smaps[b : b + 1]).A(basis)).reshape(d, -1).T.double()
        cov = torch.linalg.inv(torch.eye(d, dtype=torch.float64) / S**2 + a.T @ a / noise_std**2)
        y_b = torch.view_as_real(y[b]).reshape(-1).double()
        post = cov @ (mu_c.reshape(-1).double() / S**2 + a.T @ y_b / noise_std**2)
        post_std = float(cov.diag().sqrt().mean())
        err = _rms(res.mean[b].reshape(-1).double() - post)
        assert err < 2.5 * post_std / math.sqrt(n), (err, post_std / math.sqrt(n))
        assert abs(float(res.std[b].mean()) / post_std - 1) < 0.15, (float(res.std[b].mean()), post_std)


def test_mri_samples_one_gives_no_std(mu):
    mask = _line_mask()
    y = SingleCoilMRI(mask, real_input=True).A(mu[None, None].expand(2, 1, H, W))
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, SamplerOptions(preset="ald-fast"))
    assert res.mean.shape == (2, 1, H, W) and res.std is None and res.samples == 1
    assert res.nfe > 0 and res.seconds >= 0


# ---------------------------------------------------------------------------------------------------------------
# options, determinism, unconditional sampling


def test_same_seed_same_result_other_seed_differs(mu):
    mask = _line_mask()
    y = SingleCoilMRI(mask, real_input=True).A(mu[None, None])
    prior = GaussianPrior(mu, S)

    def run(seed):
        return tasks.reconstruct_mri(prior, y, mask, SamplerOptions(preset="ald-fast", samples=2, seed=seed)).mean

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))

    def den(seed):
        opts = SamplerOptions(preset="ald-fast", seed=seed)
        return tasks.denoise(prior, mu[None, None], 0.1, opts, method="langevin").mean

    assert torch.equal(den(3), den(3)) and not torch.equal(den(3), den(4))

    hole = (torch.arange(H * W).reshape(H, W) % 3 > 0).float()

    def inp(seed):
        return tasks.inpaint(prior, mu[None, None] * hole, hole, SamplerOptions(preset="ald-fast", seed=seed)).mean

    assert torch.equal(inp(5), inp(5)) and not torch.equal(inp(5), inp(6))
    a = solvers.sample(prior, 2, (H, W), SamplerOptions(preset="ald-fast", seed=7)).mean
    assert torch.equal(a, solvers.sample(prior, 2, (H, W), SamplerOptions(preset="ald-fast", seed=7)).mean)
    assert not torch.equal(a, solvers.sample(prior, 2, (H, W), SamplerOptions(preset="ald-fast", seed=8)).mean)


def test_sample_draws_from_the_prior():
    mu0, s0, n = 0.4, 0.15, 256
    res = solvers.sample(GaussianPrior(mu0, s0), n, (8, 8), SamplerOptions(preset="ald"))
    sample_levels = PRESETS["ald"].for_task("sample").num_levels  # 200
    assert res.nfe == min(sample_levels, len(SIGMAS)) * 3 + 1  # every level of this 50-level prior
    assert res.mean.shape == (n, 1, 8, 8) and res.std is None
    draws = res.mean
    assert abs(float(draws.mean()) - mu0) < 0.02
    assert abs(float(draws.std(dim=0).mean()) / s0 - 1) < 0.2


def test_options_override_preset_and_reject_unknown(mu):
    opts = SamplerOptions(preset="ald-fast", num_levels=4, n_steps_each=2)
    assert opts.resolve().num_levels == 4 and opts.resolve().settings["n_steps_each"] == 2
    prior = GaussianPrior(mu, S)
    res = solvers.sample(prior, 1, (H, W), opts)
    assert res.nfe == 4 * 2 + 1
    with pytest.raises(ValueError, match="unknown preset"):
        SamplerOptions(preset="turbo").resolve()


def test_callback_sees_every_level(mu):
    seen: list[tuple[int, int]] = []
    mask = _line_mask()
    y = SingleCoilMRI(mask, real_input=True).A(mu[None, None])
    tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, SamplerOptions(preset="ald-fast", num_levels=5),
                            callback=lambda i, total: seen.append((i, total)))
    assert seen == [(i, 5) for i in range(5)]


def test_model_without_sigmas_is_a_clear_error(mu):
    class NoSigmas(nn.Module):
        def forward(self, x, sigma):
            return -x

    with pytest.raises(ValueError, match="sigmas"):
        solvers.sample(NoSigmas(), 1, (8, 8))
