"""Coherent volume solves: the slices of a scan advance level by level together, coupled in the data step.

A 2D prior solves every slice on its own: what the measurements leave free is invented independently slice by
slice and flickers along the slice axis. Following DiffusionMBIR (Chung et al., CVPR 2023: a 2D diffusion prior
with total variation along z inside the data step), :class:`SliceCoupledGuidance` wraps a task's data consistency
so that every data step on a denoised estimate becomes

    x = D(prox_{w TV_z}(D(z)))

where ``D`` is the task's own data step (the projection onto the measurements for noiseless data, the likelihood's
proximal map otherwise) and ``prox_{w TV_z}`` the proximal map of ``w`` times the anisotropic total variation
along the slice axis (the batch axis: rows ``b * chains + j`` of ``chains`` chains per slice, so each chain is
coupled with the same chain of its neighbours). Ending with ``D`` keeps the measurements exactly where the task
says so. The sampler loop is unchanged: the wrapper is a :class:`~medscore.sampling.base.Guidance` like any other.

:func:`chunked_score` keeps the network's memory that of ``network_batch`` images while the whole volume is one
solver batch.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..sampling import Guidance

__all__ = ["tv_prox_along", "SliceCoupledGuidance", "chunked_score"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def _diff(x: Tensor) -> Tensor:
    """Forward differences along dim 0: (N, ...) -> (N - 1, ...)."""
    return x[1:] - x[:-1]


def _diff_adjoint(p: Tensor) -> Tensor:
    """The adjoint of :func:`_diff`: (N - 1, ...) -> (N, ...)."""
    zero = torch.zeros_like(p[:1])
    return torch.cat([zero, p]) - torch.cat([p, zero])


def tv_prox_along(v: Tensor, weight: float, dim: int = 0, iters: int = 60) -> Tensor:
    """``argmin_x 0.5 ||x - v||^2 + weight * sum |x_{i+1} - x_i|`` along ``dim``, every other position on its own.

    Projected gradient ascent on the dual (Chambolle's projection, step 1/4 = 1 / ||D D^T||): ``x = v - D^T p`` with
    ``|p| <= weight``. Written here because scikit-image's TV denoisers are isotropic over all axes, and this one
    must act along a single axis of a torch batch on the solver's device."""
    if weight <= 0 or v.shape[dim] < 2:
        return v
    x = v.movedim(dim, 0)
    base = x.float()
    p = torch.zeros_like(base[1:])
    for _ in range(iters):
        p = (p + 0.25 * _diff(base - _diff_adjoint(p))).clamp_(-weight, weight)
    return (base - _diff_adjoint(p)).to(v.dtype).movedim(0, dim)


class SliceCoupledGuidance:
    """A task's guidance with total variation along the slice axis in every data step on a denoised estimate
    (``proximal`` and ``clean``; see the module docstring). ``weight``: the TV weight on the model's [0, 1] scale;
    ``chains``: sampler chains per slice (the rows of one slice are consecutive)."""

    def __init__(self, inner: Guidance, weight: float, chains: int = 1, iters: int = 60) -> None:
        self.inner, self.weight, self.chains, self.iters = inner, float(weight), int(chains), iters
        self.exact = inner.exact

    def couple(self, x: Tensor) -> Tensor:
        """``prox_{weight TV_z}`` of a batch of ``slices * chains`` rows, each chain with its own neighbours."""
        rows = x.shape[0]
        if rows % self.chains:
            raise ValueError(f"a batch of {rows} rows is not a whole number of slices of {self.chains} chains")
        v = x.reshape(rows // self.chains, self.chains, *x.shape[1:])
        return tv_prox_along(v, self.weight, 0, self.iters).reshape(x.shape)

    def noisy(self, x: Tensor, sigma: float, step: float) -> Tensor:
        return self.inner.noisy(x, sigma, step)

    def clean(self, x0: Tensor, sigma: float) -> Tensor:
        if not self.exact:
            return x0
        return self.inner.clean(self.couple(self.inner.clean(x0, sigma)), sigma)

    def proximal(self, z: Tensor, sigma: float) -> Tensor:
        return self.inner.proximal(self.couple(self.inner.proximal(z, sigma)), sigma)

    def fidelity(self, x0: Tensor) -> Tensor:
        """The inner guidance's misfit (test-time adaptation fits the measurements, not the coupling)."""
        return self.inner.fidelity(x0)  # type: ignore[attr-defined]


def chunked_score(score: ScoreFn, network_batch: int | None) -> ScoreFn:
    """``score`` evaluated ``network_batch`` rows at a time (the plain ``score`` for None or a larger batch)."""
    if network_batch is None:
        return score

    def chunked(x: Tensor, sigma: Tensor) -> Tensor:
        if x.shape[0] <= network_batch:
            return score(x, sigma)
        parts = [score(x[i:i + network_batch], sigma[i:i + network_batch])
                 for i in range(0, x.shape[0], network_batch)]
        return torch.cat(parts)

    return chunked
