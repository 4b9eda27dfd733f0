"""Langevin samplers against analytic truth: Gaussian moments, mixture mode weights, step-size rule."""

from __future__ import annotations

import math

import pytest
import torch

from medscore.training.noise import geometric_sigmas
from medscore.sampling import (PRESETS, AnnealedLangevin, Preset, annealed_langevin, langevin, ncsnv2_step_size,
                               ncsnv2_variance_ratio, resolve_step_size, schedule_ratio, select_level_indices,
                               select_levels)
from medscore.sampling.toy import gaussian_score, mixture_score, mode_weights, sample_mixture




def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _predicted_gaussian_moments(mu, s, var0, mean0, sigmas, n_steps, eps):
    """Exact mean and variance of the annealed chain (and Tweedie step) for N(mu, s^2): linear recursion."""
    err, var = mean0 - mu, var0
    for sig in sigmas:
        alpha = eps * (sig / sigmas[-1]) ** 2
        c = 1 - alpha / (2 * (s**2 + sig**2))
        for _ in range(n_steps):
            err, var = c * err, c * c * var + alpha
    k = s**2 / (s**2 + sigmas[-1] ** 2)
    return mu + k * err, k * k * var


# (a) exact Gaussian score --------------------------------------------------------------------------------------

def test_annealed_langevin_gaussian_moments():
    mu, s = 3.0, 0.5
    sigmas = geometric_sigmas(10.0, 0.1, 10)
    x0 = 10.0 * torch.randn(2000, 1, 2, 2, generator=_gen(0))
    out = annealed_langevin(gaussian_score(mu, s), x0, sigmas, n_steps_each=100, eps=0.02, generator=_gen(1))
    assert out.x.shape == x0.shape and torch.isfinite(out.x).all()
    mean, var = out.x.mean().item(), out.x.var().item()
    n = out.x.numel()
    # against the true distribution N(3, 0.25): stated tolerances
    assert abs(mean - mu) < 0.03
    assert abs(var / s**2 - 1) < 0.06
    # against the exact law of this discretised chain (catches e.g. a sqrt(2 alpha) noise convention)
    pm, pv = _predicted_gaussian_moments(mu, s, 100.0, 0.0, sigmas.double().tolist(), 100, 0.02)
    assert abs(mean - pm) < 5 * math.sqrt(pv / n)
    assert abs(var / pv - 1) < 5 * math.sqrt(2 / n)


def test_plain_langevin_gaussian_stationary_variance():
    # stationary variance of x <- x + a/2 score + sqrt(a) z for N(0, v): v / (1 - a / (4 v))
    v, a = 1.0, 0.5
    x0 = torch.zeros(20000, 1)
    out = langevin(gaussian_score(0.0, 1.0), x0, sigma=0.0, n_steps=200, step_size=a, generator=_gen(2))
    expected = v / (1 - a / (4 * v))
    assert abs(out.x.var().item() / expected - 1) < 0.05
    assert out.nfe == 200


# (b) the paper's two-mode mixture (Figure 3) -------------------------------------------------------------------

def test_annealed_recovers_mode_weights_plain_does_not():
    n = 4000
    x0 = torch.rand(n, 2, generator=_gen(3)) * 16 - 8  # uniform on [-8, 8]^2
    annealed = annealed_langevin(
        mixture_score(), x0, geometric_sigmas(20.0, 1.0, 20), n_steps_each=100, eps=0.2, generator=_gen(4)
    )
    plain = langevin(mixture_score(), x0, sigma=0.0, n_steps=1000, step_size=0.1, generator=_gen(5))
    w_annealed, w_plain = mode_weights(annealed.x), mode_weights(plain.x)
    assert abs(w_annealed[0].item() - 0.2) < 0.03 and abs(w_annealed[1].item() - 0.8) < 0.03
    assert abs(w_plain[0].item() - 0.2) > 0.1  # stuck in the basin it started in: about 1/2 each
    exact = mode_weights(sample_mixture(n, generator=_gen(6)))
    assert abs(exact[0].item() - 0.2) < 0.03


def test_mixture_score_matches_autograd_and_is_stable():
    means, weights, s = ((-5.0, -5.0), (5.0, 5.0)), (0.2, 0.8), 1.0
    x = torch.randn(64, 2, dtype=torch.float64, generator=_gen(7)) * 6
    sigma = torch.rand(64, dtype=torch.float64, generator=_gen(8)) * 5
    v = (s**2 + sigma**2)[:, None]
    xr = x.clone().requires_grad_(True)
    mu = torch.tensor(means, dtype=torch.float64)
    logp = torch.logsumexp(
        torch.log(torch.tensor(weights, dtype=torch.float64)) - ((xr[:, None] - mu) ** 2).sum(-1) / (2 * v)
        - torch.log(2 * math.pi * v), dim=1,
    )
    (grad,) = torch.autograd.grad(logp.sum(), xr)
    assert torch.allclose(mixture_score(means, weights, s)(x, sigma), grad, atol=1e-10)
    far = torch.full((2, 2), 1e4)
    assert torch.isfinite(mixture_score()(far, torch.zeros(2))).all()


# (c) consistency hook, callback, NFE ---------------------------------------------------------------------------

def test_consistency_called_every_step_and_nfe():
    sigmas = [4.0, 2.0, 1.0]
    T = 5
    seen_sigma, levels_cb, calls = [], [], {"score": 0}

    def score(x, sigma):
        calls["score"] += 1
        assert sigma.shape == (x.shape[0],)
        return -x

    def clamp_first(x, sigma):
        seen_sigma.append(float(sigma))
        y = x.clone()
        y[:, 0] = 7.0
        return y

    x0 = torch.zeros(3, 2)
    out = annealed_langevin(score, x0, sigmas, n_steps_each=T, eps=0.1, consistency=clamp_first,
                            generator=_gen(9), callback=lambda i, n, x: levels_cb.append((i, n)))
    assert seen_sigma == [s for s in sigmas for _ in range(T)] + [0.0]
    assert levels_cb == [(0, 3), (1, 3), (2, 3)]
    assert out.nfe == calls["score"] == len(sigmas) * T + 1
    assert torch.all(out.x[:, 0] == 7.0)
    assert torch.all(x0 == 0)  # input untouched
    out.x.add_(1.0)  # an ordinary tensor, not an inference tensor

    calls["score"] = 0
    out = annealed_langevin(score, x0, sigmas, n_steps_each=T, eps=0.1, denoise_last=False, generator=_gen(9))
    assert out.nfe == calls["score"] == len(sigmas) * T


def test_step_size_scaling_with_sigma_ref():
    # with score 0 the chain is a random walk: total variance = sum_i T alpha_i, alpha_i = eps sigma_i^2 / ref^2
    x0 = torch.zeros(20000, 1)
    zero = lambda x, s: torch.zeros_like(x)  # noqa: E731
    out = annealed_langevin(zero, x0, [2.0, 1.0], n_steps_each=10, eps=0.01, sigma_ref=0.5,
                            denoise_last=False, generator=_gen(10))
    expected = 10 * 0.01 * (16 + 4)
    assert abs(out.x.var().item() / expected - 1) < 0.05


# (d) determinism ------------------------------------------------------------------------------------------------

def test_same_seed_same_output_and_global_rng_untouched():
    x0 = torch.rand(50, 2, generator=_gen(11)) * 16 - 8
    kw = dict(n_steps_each=10, eps=0.1)
    sigmas = geometric_sigmas(10.0, 1.0, 5)
    state = torch.get_rng_state()
    a = annealed_langevin(mixture_score(), x0, sigmas, generator=_gen(12), **kw).x
    b = annealed_langevin(mixture_score(), x0, sigmas, generator=_gen(12), **kw).x
    c = annealed_langevin(mixture_score(), x0, sigmas, generator=_gen(13), **kw).x
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    p = langevin(mixture_score(), x0, sigma=0.0, n_steps=20, step_size=0.1, generator=_gen(12)).x
    q = langevin(mixture_score(), x0, sigma=0.0, n_steps=20, step_size=0.1, generator=_gen(12)).x
    assert torch.equal(p, q)


# (e) levels, presets, the NCSNv2 step-size rule ---------------------------------------------------------------

MODEL = geometric_sigmas(30.8, 0.01, 240)


def test_select_levels_geometric_subset():
    lv = select_levels(MODEL, 20)
    assert len(lv) == 20 and lv[0] == MODEL[0] and lv[-1] == MODEL[-1]
    assert all(bool((MODEL == v).any()) for v in lv)
    ratios = lv[:-1] / lv[1:]
    assert bool((ratios > 1).all()) and (ratios.max() / ratios.min()).item() < 1.05
    warm = select_levels(MODEL, 10, sigma_start=1.0)
    first_below = MODEL[MODEL <= 1.0][0]
    assert warm[0] == first_below and warm[-1] == MODEL[-1] and len(warm) == 10
    assert len(select_levels(MODEL, None)) == 240 and len(select_levels(MODEL, 10_000)) == 240
    assert torch.equal(select_levels(MODEL, 5, sigma_start=float(MODEL[3]))[0], MODEL[3])
    assert select_level_indices(MODEL, 1).tolist() == [239]
    with pytest.raises(ValueError):
        select_levels(MODEL, 5, sigma_start=0.001)


def test_presets_nfe():
    ald = [PRESETS[k] for k in ("ald-fast", "ald", "ald-best")]
    assert ald[0].nfe(MODEL) <= 100 and ald[0].nfe() <= 100 and ald[0].samples == 1
    costs = [p.nfe(MODEL) * p.samples for p in ald]
    assert costs == sorted(costs) and costs == [100, 200, 800]  # the first release's fast / default / best
    # a warm start keeps the level count, spread geometrically over [sigma_L, sigma_start]
    warm = select_levels(MODEL, ald[0].num_levels, sigma_start=1.0)
    assert warm[0] == MODEL[MODEL <= 1.0][0] and warm[-1] == MODEL[-1] and len(warm) == 33
    assert ald[0].nfe(MODEL, sigma_start=1.0) == 33 * 3 + 1
    # the few-step presets of issue 8: fast <= 20 NFE and default <= 50 NFE per slice, samples counted
    assert PRESETS["fast"].nfe(MODEL) * PRESETS["fast"].samples <= 20
    assert PRESETS["default"].nfe(MODEL) * PRESETS["default"].samples <= 50
    p = Preset("t", "ald", 4, {"n_steps_each": 2, "eps": 1e-4, "denoise_last": False})
    assert p.nfe() == 8
    levels = select_levels(MODEL, p.num_levels)
    out = p.build()(gaussian_score(0.0, 1.0), torch.zeros(4, 1), levels, generator=_gen(0))
    assert out.nfe == 8 and isinstance(p.build(), AnnealedLangevin)


def test_ncsnv2_rule_reproduces_cifar10_and_satisfies_criterion():
    # NCSNv2 CIFAR-10: sigma_1 = 50, L = 232, sigma_L = 0.01, T = 5 -> their eps 6.2e-6 (x + eps s + sqrt(2 eps) z)
    sigmas = geometric_sigmas(50.0, 0.01, 232)
    eps = ncsnv2_step_size(sigmas, 5)
    assert eps is not None and abs(eps / 2 / 6.2e-6 - 1) < 0.02
    f = ncsnv2_variance_ratio(eps, sigmas, 5)
    assert 1 < f < 1.1  # f > 1 always: the rule makes it as close to 1 as possible
    assert f <= ncsnv2_variance_ratio(0.9 * eps, sigmas, 5) and f <= ncsnv2_variance_ratio(1.1 * eps, sigmas, 5)


def test_variance_ratio_matches_simulation():
    # one level of the chain on a point mass, started from the previous level's spread gamma * sigma_i
    sigmas = geometric_sigmas(1.0, 0.01, 60)
    T, gamma = 3, schedule_ratio(sigmas)
    eps = ncsnv2_step_size(sigmas, T, tol=1.0)
    sig_i = float(sigmas[10])
    x0 = gamma * sig_i * torch.randn(200_000, 1, generator=_gen(14))
    out = annealed_langevin(gaussian_score(0.0, 0.0), x0, [sig_i], n_steps_each=T, eps=eps,
                            sigma_ref=float(sigmas[-1]), denoise_last=False, generator=_gen(15))
    assert abs(out.x.var().item() / sig_i**2 / ncsnv2_variance_ratio(eps, sigmas, T) - 1) < 0.015


def test_coarse_schedule_has_no_root_and_fallbacks():
    coarse = select_levels(MODEL, 33)
    assert ncsnv2_step_size(coarse, 3) is None
    base = resolve_step_size(coarse, 3)
    assert base > 0
    f_base = ncsnv2_variance_ratio(base, coarse, 3)
    assert all(f_base <= ncsnv2_variance_ratio(base * m, coarse, 3) for m in (0.5, 0.9, 1.1, 2.0))
    assert resolve_step_size(coarse, 3, multiplier=2.5) == pytest.approx(2.5 * base)
    assert resolve_step_size(coarse, 3, eps=1e-3, multiplier=2.5) == 1e-3
    fine = geometric_sigmas(50.0, 0.01, 232)
    assert resolve_step_size(fine, 5, multiplier=2.0) == pytest.approx(2 * ncsnv2_step_size(fine, 5))
    # sigma_ref rescales eps so that alpha_L stays the same
    sub = fine[100:]
    assert resolve_step_size(sub, 5, sigma_ref=0.02) == pytest.approx(4 * resolve_step_size(sub, 5))
    assert resolve_step_size([0.01], 5) == pytest.approx(0.2 * 0.01**2)
