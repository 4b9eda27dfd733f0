"""Coherent volume solves: TV along the slice axis in the data step (medscore.solvers.slice_coupling).

Ground truth: the closed-form proximal map of 1D TV on two samples and its optimality conditions on longer signals;
measurements kept exactly; a volume of identical slices solved coherently equals the slice solve; and on a Gaussian
prior with a known inter-slice covariance the coherent solve moves toward the closed-form posterior mean that the
per-slice prior cannot reach.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medscore.errors import InputError
from medscore.solvers import SamplerOptions
from medscore.nets.accelerate import chunked_score
from medscore.solvers.slice_coupling import SliceCoupledGuidance, tv_prox_along
from medscore.tasks import TaskSpec, get_task
from medscore.training.noise import geometric_sigmas

SIGMAS = geometric_sigmas(3.0, 0.01, 50)


class WhiteGaussian(nn.Module):
    """Exact score of N(0, I) per pixel perturbed with N(0, sigma^2 I): -x / (1 + sigma^2); counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("sigmas", SIGMAS.clone())
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return -x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)


def test_tv_prox_of_two_samples_is_the_closed_form():
    a, b = torch.tensor([0.9, 0.1, 0.5]), torch.tensor([0.2, 0.2, 0.45])
    v = torch.stack([a, b])  # slices along dim 0, three independent positions
    for w in (0.05, 0.2, 1.0):
        shift = ((a - b) / 2).clamp(-w, w)  # closed form: move both toward each other by min(w, |a - b| / 2)
        np.testing.assert_allclose(tv_prox_along(v, w, iters=400), torch.stack([a - shift, b + shift]), atol=1e-5)


def test_tv_prox_meets_its_optimality_conditions_along_the_chosen_axis():
    g = torch.Generator().manual_seed(0)
    v = torch.rand(3, 12, 5, generator=g)
    w = 0.1
    x = tv_prox_along(v, w, dim=1, iters=3000)
    # x = v - D^T p with |p| <= w and p = w sign(Dx) where Dx != 0: recover p from the cumulative sum of v - x
    p = -torch.cumsum(v - x, dim=1)[:, :-1]
    assert float(p.abs().max()) <= w + 1e-4
    dx = x[:, 1:] - x[:, :-1]
    moving = dx.abs() > 1e-3
    np.testing.assert_allclose(p[moving], w * torch.sign(dx[moving]), atol=2e-3)
    assert abs(float((v - x).sum(1).abs().max())) < 1e-4  # the mean along the axis is kept
    assert torch.equal(tv_prox_along(v, 0.0, dim=1), v)


def test_chunked_score_equals_the_whole_batch_and_bounds_the_calls():
    model = WhiteGaussian()
    x, s = torch.randn(10, 1, 4, 4), torch.rand(10)
    np.testing.assert_array_equal(chunked_score(model, 3)(x, s), model(x, s))
    assert model.batches == [3, 3, 3, 1, 10]


def _inpainting(ref: torch.Tensor, missing: float = 0.5):
    task = get_task("inpaint")
    return task, task.degrade(TaskSpec("t", "inpaint", "t", missing=missing), ref, seed=0)


def test_coherent_inpainting_keeps_the_known_pixels_exactly():
    ref = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    task, prob = _inpainting(ref)
    opts = SamplerOptions(preset="fast", z_tv=0.05, slice_seeds=tuple(range(5)))
    est = task.solve_problem(WhiteGaussian(), prob, opts).mean
    known = prob.mask.bool().expand_as(ref)
    np.testing.assert_allclose(est[known], ref[known], atol=1e-6)


def test_identical_slices_solve_as_one_slice_when_coupled():
    one = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    task, prob1 = _inpainting(one)
    single = task.solve_problem(WhiteGaussian(), prob1, SamplerOptions(preset="fast", slice_seeds=(7,))).mean
    vol = one.repeat(4, 1, 1, 1)
    prob = _inpainting(vol)[1]
    prob.mask, prob.y = prob1.mask.repeat(4, 1, 1, 1), prob1.y.repeat(4, 1, 1, 1)  # the same mask on every slice
    coupled = task.solve_problem(WhiteGaussian(), prob, SamplerOptions(preset="fast", z_tv=0.1, slice_seeds=(7,) * 4))
    for i in range(4):
        np.testing.assert_allclose(coupled.mean[i], single[0], atol=1e-6)


def _correlated_volume(n: int, rho: float, size: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Slices of a stationary Gaussian process along z (covariance rho^|i-j|, unit variance), pixels independent."""
    cov = rho ** np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    rng = np.random.default_rng(seed)
    vol = np.linalg.cholesky(cov) @ rng.standard_normal((n, size * size))
    return torch.from_numpy(vol.reshape(n, 1, size, size).astype(np.float32)), cov


def _posterior_mean(y: np.ndarray, known: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """E[x | x_known = y_known] per pixel column under N(0, cov) along z."""
    out = np.where(known, y, 0.0)
    for j in range(y.shape[1]):
        o, u = known[:, j], ~known[:, j]
        if o.any() and u.any():
            out[u, j] = cov[np.ix_(u, o)] @ np.linalg.solve(cov[np.ix_(o, o)], y[o, j])
    return out


def test_coherent_solve_moves_toward_the_posterior_under_the_true_inter_slice_prior():
    n, size = 8, 12
    ref, cov = _correlated_volume(n, 0.97, size, seed=3)
    task, prob = _inpainting(ref, missing=0.6)
    known = prob.mask.bool().expand_as(ref).reshape(n, -1).numpy()
    truth = _posterior_mean(ref.reshape(n, -1).numpy(), known, cov)
    seeds = tuple(range(n))

    def error(z_tv: float) -> float:
        est = task.solve_problem(WhiteGaussian(), prob, SamplerOptions(preset="fast", z_tv=z_tv, slice_seeds=seeds))
        return float(np.sqrt(((est.mean.reshape(n, -1).numpy() - truth)[~known] ** 2).mean()))

    plain, coupled = error(0.0), error(0.3)
    # the per-slice prior fills every missing pixel with its mean 0; the true posterior borrows the neighbours
    assert coupled < 0.8 * plain, (plain, coupled)


def test_coupling_needs_whole_slices_and_options_are_checked():
    class Inner:
        exact = True

        def clean(self, x, sigma):
            return x

    with pytest.raises(ValueError, match="whole number"):
        SliceCoupledGuidance(Inner(), 0.1, chains=2).couple(torch.zeros(3, 1, 2, 2))
    with pytest.raises(InputError, match="z_tv"):
        SamplerOptions(z_tv=-1.0)
    with pytest.raises(InputError, match="network_batch"):
        SamplerOptions(network_batch=0)


def _tiny_adapted():
    from medscore.nets import NCSN
    from medscore.solvers.adapt import Adaptation, AdaptedPrior

    torch.manual_seed(0)
    net = NCSN(1, 4, geometric_sigmas(1.0, 0.01, 4), conditioning="continuous").double()  # fp64: SURE's finite
    with torch.no_grad():  # difference would amplify fp32 rounding; non-trivial biases: no gradient is zero
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, dtype=p.dtype))
    return AdaptedPrior(net, Adaptation(lr=1e-2, denoise_steps=2))


def test_adaptation_backward_in_network_batches_equals_the_whole_batch():
    """A volume's adaptation step with the network's graph held for 2 rows at a time moves the parameters as the
    step on the whole batch does (and counts its extra forward pass); so does the chunked SURE fit."""
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(5, 1, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
    sigma = torch.full((5,), 0.1, dtype=torch.float64)

    def fidelity(x0: torch.Tensor) -> torch.Tensor:
        return (x0 - y).pow(2).flatten(1).mean(1)

    whole, chunked = _tiny_adapted(), _tiny_adapted()
    whole._step(whole, fidelity, x, sigma)
    chunked._step(chunked, fidelity, x, sigma, rows=2)
    for a, b, a0 in zip(whole.theta, chunked.theta, whole.theta0):
        assert float((a - a0).detach().abs().max()) > 0  # the step moved them
        np.testing.assert_allclose(a.detach(), b.detach(), rtol=1e-8, atol=1e-10)
    assert chunked.forward_passes == whole.forward_passes + 1
    whole, chunked = _tiny_adapted(), _tiny_adapted()
    whole.fit_sure(x, 0.1)
    chunked.fit_sure(x, 0.1, rows=2)
    for a, b in zip(whole.theta, chunked.theta):
        np.testing.assert_allclose(a.detach(), b.detach(), rtol=1e-6, atol=1e-9)


def test_coherent_denoising_of_a_volume_that_does_not_change_along_z_removes_more_noise():
    """Identical clean slices, independent noise: the exact Gaussian posterior mean of each slice (Tweedie with the
    analytic score) keeps the noise that differs between slices; TV along z on those estimates takes most of it
    out, the estimate moves toward the clean volume and the through-plane differences shrink."""
    task = get_task("denoise")
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 1, 16, 16, generator=g).repeat(8, 1, 1, 1)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    model = WhiteGaussian()
    plain = task.solve(model, noisy, 0.1, SamplerOptions(preset="fast"), flip_average=False, transpose=False).mean
    coupled = task.solve(model, noisy, 0.1, SamplerOptions(preset="fast", z_tv=0.05), flip_average=False,
                         transpose=False).mean
    target = clean / (1 + 0.1**2)  # the estimate of a noiseless slice under this prior
    assert float((coupled - target).pow(2).mean()) < 0.5 * float((plain - target).pow(2).mean())
    assert float((coupled[1:] - coupled[:-1]).abs().mean()) < 0.5 * float((plain[1:] - plain[:-1]).abs().mean())
