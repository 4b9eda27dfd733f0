"""The few-step samplers (DDIM on Tweedie estimates, predictor-corrector) against analytic truth.

Same ground truth as ``test_solvers.py``: an exact Gaussian prior N(mu, s^2 I), whose posterior under a
linear Gaussian measurement is known in closed form, and the seed's two-mode mixture (Song & Ermon 2019,
Figure 3), whose mode weights 0.2 / 0.8 a correct sampler recovers. Tolerances are in units of the
Monte-Carlo standard error.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_solvers import GaussianPrior, S, H, W, _complex_mean, _denoise_problem, _gen, _k_of, _line_mask, _rms

from medscore import solvers, tasks
from medscore.training.noise import geometric_sigmas
from medscore.physics import SingleCoilMRI
from medscore.physics.mri import complex_to_channels, ifft2c
from medscore.sampling import PRESETS, DenoisingDiffusion, PredictorCorrector, Preset, build_sampler, preset_table
from medscore.sampling.pnp import alternate_chain_flips
from medscore.sampling.toy import mixture_score, mode_weights
from medscore.solvers import SamplerOptions

NEW = [("ddim", {"eta": 1.0}), ("pc", {"n_corrector": 1, "snr": 0.16})]


@pytest.fixture(scope="module")
def mu() -> torch.Tensor:
    return 0.3 + 0.4 * torch.rand(H, W, generator=_gen(0))


def _opts(sampler: str, settings: dict, **kw) -> SamplerOptions:
    kw.setdefault("num_levels", 20)
    return SamplerOptions(preset="fast", sampler=sampler, **settings, **kw)


@pytest.mark.parametrize("sampler, settings", NEW)
def test_mri_complex_noiseless_posterior(mu, sampler, settings):
    """Posterior mean F^H(M y + (1 - M) F mu_c) and std s sqrt(1 - sampled fraction), started far above the
    prior's spread (sigma_start 2 vs s = 0.2) so the zero-filled start is forgotten."""
    n = 128
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    x = _complex_mean(mu) + S * torch.randn(1, 2, H, W, generator=_gen(6))
    y = op.A(x)
    post = complex_to_channels(ifft2c(mask * y + (1 - mask) * _k_of(_complex_mean(mu))))
    post_std = S * math.sqrt(1 - float(mask.mean()))
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, _opts(sampler, settings, num_levels=50,
                                  sigma_start=2.0, samples=n), real_image=False)
    assert _rms(res.mean - post) < 3 * post_std / math.sqrt(n), (_rms(res.mean - post), post_std / math.sqrt(n))
    assert abs(float(res.std.mean()) / post_std - 1) < 0.15, (float(res.std.mean()), post_std)
    torch.testing.assert_close(op.A(res.mean), y, atol=1e-5, rtol=0)  # measured k-space is the data


@pytest.mark.parametrize("sampler, settings", NEW)
def test_inpainting_keeps_known_pixels_bit_for_bit(mu, sampler, settings):
    g = _gen(4)
    x = mu + S * torch.randn(2, 1, H, W, generator=g)
    mask = (torch.rand(H, W, generator=g) > 0.5).float()
    y = x * mask
    res = tasks.inpaint(GaussianPrior(mu, S), y, mask, _opts(sampler, settings, num_levels=8, samples=1))
    known = mask.bool().expand_as(x)
    assert torch.equal(res.mean[known], y[known])
    assert res.nfe == build_sampler(sampler, **settings).nfe(8)


@pytest.mark.parametrize("sampler, settings", [NEW[0], ("pc", {"n_corrector": 0})])
def test_denoising_posterior_mean_and_std(mu, sampler, settings):
    """Started at the noisy image (a sample of the level-sigma marginal), a chain that only follows the reverse
    process samples the posterior N(post, post_std^2). (Langevin correctors forget the start and need the
    approximate likelihood term instead: less exact; denoising's default is the one-step Tweedie MMSE.)"""
    n = 256
    y, post, post_std = _denoise_problem(mu, 0.1)
    res = tasks.denoise(GaussianPrior(mu, S), y, 0.1, _opts(sampler, settings, samples=n), method="sampler")
    assert _rms(res.mean - post) < 2.5 * post_std / math.sqrt(n), (_rms(res.mean - post), post_std / math.sqrt(n))
    assert abs(float(res.std.mean()) / post_std - 1) < 0.2, (float(res.std.mean()), post_std)


def _noisy_kspace_and_wiener(mu: torch.Tensor, noise_std: float):
    """Complex k-space of a prior sample under a line mask with noise ``noise_std``, and its Wiener estimate:
    measured entries get (s^2 y + sn^2 F mu) / (s^2 + sn^2), the others F mu."""
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    g = _gen(8)
    x = _complex_mean(mu) + S * torch.randn(1, 2, H, W, generator=g)
    y = op.A(x) + noise_std * op.A(torch.randn(x.shape, generator=g))
    k_mu = _k_of(_complex_mean(mu))
    w = S**2 / (S**2 + noise_std**2)
    wiener = complex_to_channels(ifft2c(mask * (w * y + (1 - w) * k_mu) + (1 - mask) * k_mu))
    return mask, op, y, wiener


@pytest.mark.parametrize("sampler, settings, bound", [(*NEW[0], 0.35), (*NEW[1], 0.2)])
def test_noisy_kspace_approaches_the_wiener_estimate(mu, sampler, settings, bound):
    """Noisy k-space: measured entries should get (s^2 y + sn^2 F mu) / (s^2 + sn^2). DDIM's noise-weighted
    solve on the Tweedie estimate approximates it less closely than the likelihood-gradient chains."""
    n, noise_std = 128, 0.1
    mask, op, y, wiener = _noisy_kspace_and_wiener(mu, noise_std)
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, _opts(sampler, settings, sigma_start=2.0, samples=n),
                                  real_image=False, noise_std=noise_std)
    assert _rms(res.mean - wiener) < bound * _rms(op.A_dagger(y) - wiener)
    meas = (mask.expand(H, W) > 0)[None, None]
    assert _rms((_k_of(res.mean) - y)[meas]) > 0.3 * noise_std  # noisy data are not projected onto


@pytest.mark.parametrize("sampler", [DenoisingDiffusion(eta=1.0), PredictorCorrector(n_corrector=1, snr=0.16)])
def test_two_mode_mixture_weights(sampler):
    """The seed's mixture 1/5 N((-5,-5), I) + 4/5 N((5,5), I): weights recovered within +-0.03."""
    n = 4000
    sigmas = geometric_sigmas(20.0, 0.01, 50).tolist()
    x0 = torch.rand(n, 2, generator=_gen(3)) * 16 - 8 + sigmas[0] * torch.randn(n, 2, generator=_gen(4))
    out = sampler(mixture_score(), x0, sigmas, generator=_gen(5))
    w = mode_weights(out.x)
    assert abs(w[0].item() - 0.2) < 0.03 and abs(w[1].item() - 0.8) < 0.03, w
    assert out.nfe == sampler.nfe(len(sigmas))


def test_slice_seeds_make_results_independent_of_batching(mu):
    mask = _line_mask()
    x = mu + S * torch.randn(3, 1, H, W, generator=_gen(9))
    y = SingleCoilMRI(mask, real_input=True).A(x)
    prior = GaussianPrior(mu, S)
    for sampler, settings in NEW + [("ald", {"n_steps_each": 2})]:
        together = tasks.reconstruct_mri(prior, y, mask, _opts(sampler, settings, num_levels=5, samples=2,
                                                                 slice_seeds=(10, 11, 12))).mean
        alone = [tasks.reconstruct_mri(prior, y[i:i + 1], mask, _opts(sampler, settings, num_levels=5, samples=2,
                                                                        slice_seeds=(10 + i,))).mean for i in range(3)]
        assert torch.equal(together, torch.cat(alone)), sampler
    with pytest.raises(ValueError, match="slice_seeds"):
        tasks.reconstruct_mri(prior, y, mask, SamplerOptions(slice_seeds=(1, 2)))


def test_registry_and_presets_as_data(mu):
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("euler")
    with pytest.raises(ValueError, match="no setting eta"):
        build_sampler("ald", eta=0.5)
    for p in PRESETS.values():
        assert Preset.from_dict(p.name, p.to_dict()) == p  # the JSON form round-trips
    # a model's own table (model.json "presets") overrides the built-in one and adds names
    prior = GaussianPrior(mu, S)
    prior.presets = {"fast": {"sampler": "ald", "num_levels": 4, "settings": {"n_steps_each": 1}},
                     "mine": {"sampler": "pc", "num_levels": 3, "settings": {"n_corrector": 0}}}
    table = solvers.presets_of(prior)
    assert table["fast"].sampler == "ald" and table["mine"].nfe() == 3 and table["default"] == preset_table()["default"]
    mask = _line_mask()
    y = SingleCoilMRI(mask, real_input=True).A(mu[None, None])
    assert tasks.reconstruct_mri(prior, y, mask, SamplerOptions(preset="fast")).nfe == 4 + 1
    assert tasks.reconstruct_mri(prior, y, mask, SamplerOptions(preset="mine")).nfe == 3
    # overrides: another sampler starts from that sampler's defaults
    assert SamplerOptions(preset="ald", sampler="ddim").resolve().settings == {}
    assert SamplerOptions(preset="fast", sampler="ddim", eta=0.0).resolve().settings == {"eta": 0.0}


def test_likelihood_step_never_moves_past_the_measurements(mu):
    """However large the Langevin step, the gradient data step is at most the projection (w <= 1): the few-step
    presets take steps that gave w = 3-5 on noisy k-space and diverged before the cap."""
    from medscore.physics import DataConsistency

    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    x = torch.randn(2, 2, H, W, generator=_gen(11))
    y = op.A(_complex_mean(mu).expand(2, 2, H, W))
    dc = DataConsistency(op, y, noise_std=0.01, mode="gradient")
    torch.testing.assert_close(dc.noisy(x, 0.01, 100.0), op.project(x, y), atol=1e-5, rtol=0)
    torch.testing.assert_close(dc.noisy(x, 0.01, torch.tensor([100.0, 100.0])), op.project(x, y), atol=1e-5, rtol=0)
    small = dc.noisy(x, 0.01, 1e-6)  # a small step moves a little towards the data, not onto it
    assert 0 < _rms(small - x) < 0.1 * _rms(op.project(x, y) - x)


def _pnp(**kw) -> SamplerOptions:
    kw.setdefault("num_levels", 40)
    kw.setdefault("flips", False)  # these Gaussian priors' means are not flip-symmetric
    return SamplerOptions(preset="fast", sampler="pnp", renoise=0.0, samples=1, sigma_start=2.0, **kw)


def test_pnp_noiseless_mri_reaches_the_posterior_mean(mu):
    """Plug-and-play is a fixed-point method, not a sampler: for a Gaussian prior its denoiser is the prior's
    proximal map, so alternating it with the exact projection converges to the posterior mean (= MAP) without
    Monte-Carlo error, and the measured k-space is kept."""
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    x = _complex_mean(mu) + S * torch.randn(1, 2, H, W, generator=_gen(6))
    y = op.A(x)
    post = complex_to_channels(ifft2c(mask * y + (1 - mask) * _k_of(_complex_mean(mu))))
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, _pnp(), real_image=False)
    assert _rms(res.mean - post) < 1e-3 * _rms(op.A_dagger(y) - post), _rms(res.mean - post)
    torch.testing.assert_close(op.A(res.mean), y, atol=1e-5, rtol=0)
    assert res.nfe == 40 and res.std is None


def test_pnp_noisy_kspace_reaches_the_wiener_estimate(mu):
    """With noisy k-space the data step is the proximal map of the likelihood at the denoiser's level; annealed
    down, the iteration converges to the MAP, for a Gaussian prior the Wiener estimate."""
    noise_std = 0.1
    mask, op, y, wiener = _noisy_kspace_and_wiener(mu, noise_std)
    res = tasks.reconstruct_mri(GaussianPrior(mu, S), y, mask, _pnp(), real_image=False, noise_std=noise_std)
    assert _rms(res.mean - wiener) < 0.05 * _rms(op.A_dagger(y) - wiener), _rms(res.mean - wiener)


def test_pnp_inpainting_keeps_known_pixels_and_renoise_is_seeded(mu):
    g = _gen(4)
    x = mu + S * torch.randn(2, 1, H, W, generator=g)
    mask = (torch.rand(H, W, generator=g) > 0.5).float()
    y = x * mask
    prior = GaussianPrior(mu, S)
    res = tasks.inpaint(prior, y, mask, _pnp(num_levels=8))
    known = mask.bool().expand_as(x)
    assert torch.equal(res.mean[known], y[known]) and res.nfe == 8
    post = y + (1 - mask) * mu  # unknown pixels of an isotropic Gaussian: the prior mean
    assert _rms(res.mean - post) < 0.01 * _rms(y - post)
    noisy = [tasks.inpaint(prior, y, mask, dataclasses.replace(_pnp(num_levels=8), renoise=0.5, seed=s)).mean
             for s in (1, 1, 2)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    with pytest.raises(ValueError, match="renoise"):
        build_sampler("pnp", renoise=1.5)


def test_pnp_momentum_keeps_the_fixed_point_and_reaches_it_in_fewer_levels(mu):
    """Heavy-ball momentum on the plug-and-play iteration. At a constant level sigma the Gaussian prior's denoiser
    shrinks every unknown pixel's distance to the prior mean by a = s^2 / (s^2 + sigma^2) (here 0.9), and the
    projection keeps the known pixels, so the fixed point is the posterior mean (known pixels, mu elsewhere). With
    momentum b the error obeys e' = a ((1 + b) e - b e_prev): the fixed point is the same, and for b = 0.5 the
    slowest rate is 0.75 (a root of r^2 - a (1 + b) r + a b) instead of 0.9, so 12 levels leave about
    (0.75 / 0.9)^12 ~ 0.11 of the plain iteration's error."""
    from medscore.physics import DataConsistency, Inpainting

    g = _gen(12)
    x = mu + S * torch.randn(1, 1, H, W, generator=g)
    mask = (torch.rand(H, W, generator=g) > 0.5).float()
    op = Inpainting(mask)
    y = op.A(x)
    post = y + (1 - mask) * mu
    x0 = op.A_adjoint(y) + (1 - mask) * torch.randn(1, 1, H, W, generator=g)  # far from the fixed point
    prior, sigma = GaussianPrior(mu, S), S / 3.0

    def error(momentum: float, levels: int) -> float:
        sampler = build_sampler("pnp", momentum=momentum)
        out = sampler(prior, x0, [sigma] * levels, guidance=DataConsistency(op, y)).x
        assert torch.equal(out[mask.bool().expand_as(out)], y[mask.bool().expand_as(y)])  # known pixels kept
        return _rms(out - post)

    plain, heavy = error(0.0, 12), error(0.5, 12)
    assert heavy < 0.25 * plain, (heavy, plain)
    assert error(0.5, 200) < 1e-5 and error(0.0, 200) < 1e-5  # the same fixed point
    assert error(0.0, 1) == error(0.5, 1)  # the first level has no previous move to follow
    with pytest.raises(ValueError, match="momentum"):
        build_sampler("pnp", momentum=1.0)


def test_pnp_flip_ensemble_is_exact_for_a_flip_invariant_prior(mu):
    """The flip ensemble evaluates level i's score on the image flipped by the i-th of (none, W, H, both) and
    flips it back: for a prior whose mean is flip-symmetric this is the same score, so the reconstruction is
    unchanged (the presets' MRI ensemble also transposes, so the mean here is symmetric under transposes too); for
    an asymmetric one, the second level's denoiser pulls towards the left-right flipped mean."""
    symmetric = (mu + mu.flip(-1) + mu.flip(-2) + mu.flip(-2, -1)) / 4
    symmetric = (symmetric + symmetric.transpose(-1, -2)) / 2
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    y = op.A(_complex_mean(symmetric) + S * torch.randn(1, 2, H, W, generator=_gen(9)))
    runs = [tasks.reconstruct_mri(GaussianPrior(symmetric, S), y, mask, _pnp(flips=f), real_image=False)
            for f in (False, True)]
    torch.testing.assert_close(runs[0].mean, runs[1].mean, atol=1e-5, rtol=0)
    assert runs[1].nfe == runs[0].nfe == 40

    sampler, prior = build_sampler("pnp", flips=True), GaussianPrior(mu, S)
    x0 = torch.rand(1, 1, H, W, generator=_gen(10))
    x1 = sampler(prior, x0, [0.5]).x  # level 0: no flip
    s1 = 0.25
    x2 = sampler(prior, x0, [0.5, s1]).x
    expected = x1 - s1**2 / (S**2 + s1**2) * (x1 - mu.flip(-1))
    torch.testing.assert_close(x2, expected, atol=1e-6, rtol=0)
    with pytest.raises(Exception, match="flips"):
        SamplerOptions(flips=2)


def test_pnp_transposes_extend_the_ensemble_to_eight_orientations(mu):
    """With ``transposes``, levels 4-7 use the four flips of the image with its axes swapped: exact for a prior
    whose mean is symmetric under all eight (no change), and for an asymmetric one level 4 pulls towards the
    transposed mean (H == W here)."""
    symmetric = (mu + mu.flip(-1) + mu.flip(-2) + mu.flip(-2, -1)) / 4
    symmetric = (symmetric + symmetric.transpose(-1, -2)) / 2
    plain, eight = (build_sampler("pnp", flips=True, transposes=t) for t in (False, True))
    assert [eight.orientation(i) for i in (0, 1, 4, 7, 8, 12)] == [
        ((), False), ((-1,), False), ((), True), ((-2, -1), True), ((), False), ((), True)]
    assert not any(plain.orientation(i)[1] for i in range(16))
    x0, levels = torch.rand(1, 1, H, W, generator=_gen(12)), [0.5, 0.45, 0.4, 0.35]
    sixteen = torch.linspace(0.5, 0.05, 16).tolist()
    torch.testing.assert_close(eight(GaussianPrior(symmetric, S), x0, sixteen).x,
                               plain(GaussianPrior(symmetric, S), x0, sixteen).x, atol=1e-6, rtol=0)

    prior = GaussianPrior(mu, S)
    x4 = eight(prior, x0, levels).x
    s5 = 0.3
    expected = x4 - s5**2 / (S**2 + s5**2) * (x4 - mu.transpose(-1, -2))  # level 4: transposed, not flipped
    torch.testing.assert_close(eight(prior, x0, [*levels, s5]).x, expected, atol=1e-6, rtol=0)


def test_the_chains_of_one_image_get_complementary_flips(mu):
    """With the flip ensemble, odd chains (rows b n + j, j odd) see their image rotated by 180 degrees: for a
    flip-symmetric prior two chains give what they give without flips; for an asymmetric one the odd rows' score
    is that of the rotated mean, by chain index only (not by the image's place in the batch)."""
    symmetric = (mu + mu.flip(-1) + mu.flip(-2) + mu.flip(-2, -1)) / 4
    symmetric = (symmetric + symmetric.transpose(-1, -2)) / 2  # the presets' MRI ensemble also transposes
    mask = _line_mask()
    op = SingleCoilMRI(mask, real_input=False)
    y = op.A(_complex_mean(symmetric) + S * torch.randn(2, 2, H, W, generator=_gen(12)))
    runs = [tasks.reconstruct_mri(GaussianPrior(symmetric, S), y, mask, dataclasses.replace(_pnp(flips=f), samples=2),
                                  real_image=False)
            for f in (False, True)]
    torch.testing.assert_close(runs[0].mean, runs[1].mean, atol=1e-5, rtol=0)

    score = alternate_chain_flips(GaussianPrior(mu, S), 2)
    x, sigma = torch.rand(4, 1, H, W, generator=_gen(13)), torch.full((4,), 0.5)
    out = score(x, sigma)
    for row, mean in enumerate([mu, mu.flip(-2, -1)] * 2):
        torch.testing.assert_close(out[row], -(x[row] - mean) / (S**2 + 0.25), atol=1e-6, rtol=0)
    assert alternate_chain_flips(GaussianPrior(mu, S), 1)(x, sigma).equal(GaussianPrior(mu, S)(x, sigma))


def test_a_prior_trained_without_flips_gets_no_flip_ensemble(mu, tmp_path):
    """The ensemble needs a flip-equivariant score: a model whose training config had ``flip_prob`` 0 is
    solved without it even when the preset asks for it."""
    import json

    from _synth import tiny_model
    from medscore.priors.checkpoint import load_model

    folder = tiny_model(tmp_path / "m")
    assert load_model(folder).model.flip_invariant
    meta = json.loads((folder / "model.json").read_text())
    meta["train_config"]["data"]["flip_prob"] = 0.0
    (folder / "model.json").write_text(json.dumps(meta))
    assert not load_model(folder).model.flip_invariant

    mask = _line_mask()
    y = SingleCoilMRI(mask, real_input=False).A(_complex_mean(mu))
    prior = GaussianPrior(mu, S)
    flipped = tasks.reconstruct_mri(prior, y, mask, _pnp(flips=True), real_image=False).mean
    prior.flip_invariant = False
    plain = tasks.reconstruct_mri(prior, y, mask, _pnp(flips=False), real_image=False).mean
    torch.testing.assert_close(tasks.reconstruct_mri(prior, y, mask, _pnp(flips=True), real_image=False).mean, plain)
    assert not torch.allclose(flipped, plain, atol=1e-4)
