"""Denoising score matching learns the true score of Gaussian data; noise-level rules against brute force.

Data x ~ N(mu, s^2 I). Perturbed at level sigma it is N(mu, (s^2 + sigma^2) I), whose score is
-(x - mu) / (s^2 + sigma^2): the minimiser of the DSM loss at that level.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from medscore.training.losses import dsm_loss
from medscore.nets import NCSN
from medscore.training.noise import (auto_sigmas, geometric_sigmas, max_pairwise_distance, ncsnv2_num_levels,
                                     levels_up_to, sample_levels)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _true_score(x, mu, s, sigma):
    return -(x - mu) / (s**2 + sigma**2)


def _rel_errors(score_fn, mu, s, sigmas, n=256, seed=99):
    g = _gen(seed)
    errs = []
    with torch.no_grad():
        for sl in sigmas:
            x = mu + math.sqrt(s**2 + float(sl) ** 2) * torch.randn((n, *mu.shape[1:]), generator=g)
            true = _true_score(x, mu, s, float(sl))
            est = score_fn(x, sl.expand(n))
            errs.append(float((est - true).norm() / true.norm()))
    return errs


def test_dsm_loss_value_at_true_score():
    # E over x, z of 1/2 ||sigma s*(x + sigma z) + z||^2 = D/2 * s^2 / (s^2 + sigma^2) per level; a zero score gives D/2
    s, d = 0.3, 64
    mu = torch.linspace(0, 1, d).view(1, 1, 8, 8)
    g = _gen(0)
    for sigma in (1.0, 0.3, 0.05):
        x = mu + s * torch.randn(20000, 1, 8, 8, generator=g)
        sig = torch.full((len(x),), sigma)
        loss = dsm_loss(lambda xt, sg: _true_score(xt, mu, s, sg.view(-1, 1, 1, 1)), x, sig, generator=g)
        assert float(loss) == pytest.approx(0.5 * d * s**2 / (s**2 + sigma**2), rel=0.01)
        zero = dsm_loss(lambda xt, sg: torch.zeros_like(xt), x, sig, generator=g)
        assert float(zero) == pytest.approx(0.5 * d, rel=0.01)
    # per-sample sigmas are used per sample (not broadcast the wrong way)
    sig = torch.tensor([1.0, 0.05]).repeat(10000)
    x = mu + s * torch.randn(len(sig), 1, 8, 8, generator=g)
    loss = dsm_loss(lambda xt, sg: _true_score(xt, mu, s, sg.view(-1, 1, 1, 1)), x, sig, generator=g)
    expect = 0.25 * d * (s**2 / (s**2 + 1.0) + s**2 / (s**2 + 0.05**2))
    assert float(loss) == pytest.approx(expect, rel=0.01)


class PerLevelAffine(nn.Module):
    """s(x, sigma_i) = (a_i x + b_i) / sigma_i: a family that holds the exact Gaussian score at every level."""

    def __init__(self, sigmas: torch.Tensor, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("sigmas", sigmas)
        self.a = nn.Parameter(torch.zeros(len(sigmas)))
        self.b = nn.Parameter(torch.zeros(len(sigmas), *shape))

    def forward(self, x, sigma):
        i = (torch.log(sigma)[:, None] - torch.log(self.sigmas)[None]).abs().argmin(1)
        out = self.a[i].view(-1, *([1] * (x.ndim - 1))) * x + self.b[i]
        return out / sigma.view(-1, *([1] * (x.ndim - 1)))


def _train(model, mu, s, sigmas, steps, batch, lr, seed):
    g = _gen(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for _ in range(steps):
        x = mu + s * torch.randn((batch, *mu.shape[1:]), generator=g)
        sigma = sample_levels(sigmas, batch, generator=g)
        loss = dsm_loss(model, x, sigma, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_dsm_minimiser_is_the_true_score():
    """An exactly-expressive model trained with dsm_loss recovers -(x - mu)/(s^2 + sigma^2): rel. L2 error < 0.06."""
    s = 0.3
    mu = (0.5 + 0.2 * torch.randn(1, 1, 16, 16, generator=_gen(1)))
    sigmas = geometric_sigmas(1.0, 0.1, 5)  # DSM's variance grows as sigma shrinks: keep sigma_min ~ s / 3
    model = PerLevelAffine(sigmas, (1, 16, 16))
    _train(model, mu, s, sigmas, steps=1500, batch=128, lr=0.05, seed=2)
    errs = _rel_errors(model, mu, s, sigmas)
    assert max(errs) < 0.06, errs
    # the slope per level is the analytic one
    a_true = -sigmas / (s**2 + sigmas**2)
    torch.testing.assert_close(model.a.detach(), a_true, rtol=0.01, atol=0.0)


def test_ncsn_learns_gaussian_score():
    """The real NCSN (ngf 8, continuous conditioning, output / sigma) on 8x8 Gaussian images, 300 steps:
    relative L2 error of the learned score < 0.3 at every level (untrained: about 1)."""
    torch.manual_seed(0)
    s = 0.3
    mu = 0.5 + 0.2 * torch.randn(1, 1, 8, 8, generator=_gen(0))
    sigmas = geometric_sigmas(1.0, 0.1, 4)
    model = NCSN(1, 8, sigmas, conditioning="continuous", scale_by_sigma=True)
    before = _rel_errors(model, mu, s, sigmas)
    assert min(before) > 0.8
    _train(model, mu, s, sigmas, steps=300, batch=64, lr=1e-2, seed=0)
    errs = _rel_errors(model, mu, s, sigmas)
    assert max(errs) < 0.3, errs


# --- noise levels ------------------------------------------------------------------------------------------------

def test_geometric_sigmas():
    sig = geometric_sigmas(50.0, 0.01, 232)
    assert len(sig) == 232 and sig.dtype == torch.float32
    assert float(sig[0]) == pytest.approx(50.0) and float(sig[-1]) == pytest.approx(0.01)
    ratios = (sig[:-1].double() / sig[1:].double())
    assert torch.allclose(ratios, ratios.mean().expand_as(ratios), rtol=1e-5)
    assert float(ratios.mean()) == pytest.approx((50.0 / 0.01) ** (1 / 231), rel=1e-6)
    for bad in ((0.01, 1.0, 5), (1.0, 0.0, 5), (1.0, 0.1, 1)):
        with pytest.raises(ValueError):
            geometric_sigmas(*bad)


def test_max_pairwise_distance_brute_force():
    x = torch.randn(37, 1, 5, 4, generator=_gen(0)) * torch.rand(37, 1, 1, 1, generator=_gen(1)) * 3
    xd = x.double()
    brute = max(float((xd[i] - xd[j]).norm()) for i, j in itertools.combinations(range(len(x)), 2))
    assert max_pairwise_distance(x) == pytest.approx(brute, rel=1e-9)
    assert max_pairwise_distance(x, chunk=5) == pytest.approx(brute, rel=1e-9)  # across chunk borders


def _phi(v: float) -> float:
    return 0.5 * (1 + math.erf(v / math.sqrt(2)))


def _overlap(gamma: float, d: int) -> float:
    a = math.sqrt(2 * d) * (gamma - 1)
    return _phi(a + 3 * gamma) - _phi(a - 3 * gamma)


@pytest.mark.parametrize("smax,smin,d", [(50.0, 0.01, 3072), (90.0, 0.01, 12288), (1.0, 0.01, 256), (20.0, 0.01, 4096)])
def test_ncsnv2_num_levels_meets_technique_2(smax, smin, d):
    levels = ncsnv2_num_levels(smax, smin, d)
    gamma = (smax / smin) ** (1 / (levels - 1))
    fewer = (smax / smin) ** (1 / (levels - 2))
    # the smallest L whose ratio keeps the typicality overlap at or above 1/2
    assert _overlap(gamma, d) >= 0.5 - 1e-6
    assert _overlap(fewer, d) < 0.5
    assert ncsnv2_num_levels(smax, smin, 4 * d) > levels  # higher dimension -> finer levels


def test_ncsnv2_num_levels_near_paper():
    # Song & Ermon (2020) list L = 232 (CIFAR-10, sigma_1 = 50) and 500 (CelebA 64, sigma_1 = 90); the "~ 0.5" of
    # technique 2 solved exactly gives a few % fewer levels
    assert 0.9 * 232 <= ncsnv2_num_levels(50.0, 0.01, 3072) <= 232
    assert 0.9 * 500 <= ncsnv2_num_levels(90.0, 0.01, 64 * 64 * 3) <= 500


def test_auto_sigmas():
    x = torch.rand(20, 1, 8, 8, generator=_gen(0))
    sig = auto_sigmas(x, sigma_min=0.01)
    assert float(sig[0]) == pytest.approx(max_pairwise_distance(x), rel=1e-6)
    assert float(sig[-1]) == pytest.approx(0.01, rel=1e-6)
    assert len(sig) == ncsnv2_num_levels(max_pairwise_distance(x), 0.01, 64)
    assert len(auto_sigmas(x, 0.01, max_levels=7)) == 7


def test_sample_levels_uniform():
    sig = geometric_sigmas(1.0, 0.01, 5)
    draw = sample_levels(sig, 50000, generator=_gen(0))
    assert set(draw.tolist()) <= set(sig.tolist())
    counts = torch.stack([(draw == s).sum() for s in sig]).double() / len(draw)
    assert torch.allclose(counts, torch.full_like(counts, 0.2), atol=0.01)


def test_levels_up_to_keeps_the_low_end_of_the_table():
    sig = geometric_sigmas(1.0, 0.01, 5)  # 1, 0.316, 0.1, 0.0316, 0.01
    torch.testing.assert_close(levels_up_to(sig, None), sig)
    torch.testing.assert_close(levels_up_to(sig, 0.1), sig[2:])  # a level equal to the bound is kept
    torch.testing.assert_close(levels_up_to(sig, 0.5), sig[1:])
    with pytest.raises(ValueError, match="no noise level"):
        levels_up_to(sig, 0.005)
