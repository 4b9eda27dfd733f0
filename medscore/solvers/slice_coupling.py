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

:func:`~medscore.nets.accelerate.chunked_score` keeps the network's memory that of ``network_batch`` images while the
whole volume is one solver batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sampling import Guidance

__all__ = ["CPU_BLOCK", "tv_prox_along", "SliceCoupledGuidance"]

def _diff(x: Tensor) -> Tensor:
    """Forward differences along dim 0: (N, ...) -> (N - 1, ...)."""
    return x[1:] - x[:-1]


def _diff_adjoint(p: Tensor) -> Tensor:
    """The adjoint of :func:`_diff`: (N - 1, ...) -> (N, ...)."""
    zero = torch.zeros_like(p[:1])
    return torch.cat([zero, p]) - torch.cat([p, zero])


#: elements per block of the prox on CPU: each block's 60 dual iterations then stay in the caches (176 x 256 x 256:
#: 0.35 s in blocks of 2^18 against 5.3 s at once and 1.6 s in blocks of 2^20, 2 cores, docs/benchmarks.md)
CPU_BLOCK = 1 << 18


def tv_prox_along(v: Tensor, weight: float, dim: int = 0, iters: int = 60) -> Tensor:
    """``argmin_x 0.5 ||x - v||^2 + weight * sum |x_{i+1} - x_i|`` along ``dim``, every other position on its own.

    Projected gradient ascent on the dual (Chambolle's projection, step 1/4 = 1 / ||D D^T||): ``x = v - D^T p`` with
    ``|p| <= weight``. Written here because scikit-image's TV denoisers are isotropic over all axes, and this one
    must act along a single axis of a torch batch on the solver's device. On CPU the positions are solved in blocks
    of :data:`CPU_BLOCK` elements."""
    if weight <= 0 or v.shape[dim] < 2:
        return v
    x = v.movedim(dim, 0)
    flat = x.reshape(x.shape[0], -1).float()
    cols = max(1, CPU_BLOCK // x.shape[0]) if v.device.type == "cpu" else flat.shape[1]
    out = torch.cat([_prox_columns(flat[:, i:i + cols], weight, iters) for i in range(0, flat.shape[1], cols)], 1)
    return out.reshape(x.shape).to(v.dtype).movedim(0, dim)


def _prox_columns(base: Tensor, weight: float, iters: int) -> Tensor:
    """:func:`tv_prox_along` of an (N, M) block along its first axis."""
    p = torch.zeros_like(base[1:])
    for _ in range(iters):
        p = (p + 0.25 * _diff(base - _diff_adjoint(p))).clamp_(-weight, weight)
    return base - _diff_adjoint(p)


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
