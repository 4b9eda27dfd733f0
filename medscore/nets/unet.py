"""A U-Net score network on MONAI's ``BasicUNet``: about 3x cheaper per evaluation than the RefineNet.

The body is MONAI's maintained ``BasicUNet`` (two 3x3 convolutions per level, four 2x down-samplings,
transposed-convolution up-sampling, skip concatenations) with widths ``ngf, ngf, 2 ngf, 4 ngf, 8 ngf``.
Its instance norms are replaced by NCSN's conditional instance norm++ on log sigma (the ``continuous``
conditioning of :class:`~medscore.nets.NCSN`), and the output is divided by sigma (NCSNv2's technique 3).
The network must be told sigma: the plug-and-play solvers evaluate it on images whose real error is far
below the level they ask it to remove, and an unconditional (noise-blind) network would remove the error
it sees, not a denoising step of the size asked. MONAI's noise-conditioned ``DiffusionModelUNet`` needs
``einops`` and self-attention; this keeps MONAI's plain U-Net. On a 128 x 128 slice it costs about a third
of the RefineNet of the same parameter count per evaluation (``scripts/bench_forward.py``): it spends its
work at low resolution.
"""

from __future__ import annotations

import math

import torch
from monai.networks.nets import BasicUNet
from torch import Tensor, nn

from .layers import InstanceNormPlus, NormParams, crop_to, log_sigma_features, network_input

__all__ = ["UNetScore"]


class _ConditionedNorm(nn.Module):
    """Conditional instance norm++ in a ``BasicUNet`` slot that calls ``norm(x)``: :class:`UNetScore` sets
    ``params`` (this forward pass's :class:`NormParams`) before it runs the body, and clears it after."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = InstanceNormPlus(channels, cond_dim)
        self.params: NormParams | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.params is None:
            raise RuntimeError("a UNetScore's norms are conditional: call the UNetScore, not its body")
        return self.norm(x, self.params)


def _condition_norms(body: nn.Module, cond_dim: int) -> tuple[_ConditionedNorm, ...]:
    """Replace every instance norm of ``body`` by a :class:`_ConditionedNorm`; returns them in order."""
    slots = []
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.modules.instancenorm._InstanceNorm):
            parent_name, _, child = name.rpartition(".")
            slot = _ConditionedNorm(module.num_features, cond_dim)
            setattr(body.get_submodule(parent_name) if parent_name else body, child, slot)
            slots.append(slot)
    return tuple(slots)


class UNetScore(nn.Module):
    """``s(x, sigma) = UNet(x; sigma) / sigma`` for (B, C, H, W) or (B, C, D, H, W) images of any size.

    Args:
        in_channels: image channels (1 magnitude, 2 real/imaginary).
        ngf: base width; the levels have ``ngf, ngf, 2 ngf, 4 ngf, 8 ngf`` channels.
        sigmas: the training noise levels, largest first (a buffer saved with the weights).
        spatial_dims: 2 or 3.
        embed_dim: size of the log-sigma embedding.
    """

    size_multiple = 16  # four 2x down-samplings
    min_size = 32  # so the coarsest level keeps >= 2 x 2 pixels for its instance norm

    def __init__(self, in_channels: int, ngf: int, sigmas: Tensor, spatial_dims: int = 2, embed_dim: int = 64) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if in_channels < 1 or ngf < 4:
            raise ValueError(f"in_channels must be >= 1 and ngf >= 4, got {in_channels}, {ngf}")
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        if sigmas.ndim != 1 or len(sigmas) < 1 or bool((sigmas <= 0).any()):
            raise ValueError("sigmas must be a non-empty 1D tensor of positive noise levels")
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("freqs", torch.arange(1, embed_dim // 2 + 1, dtype=torch.float32) * math.pi)
        lo, hi = math.log(float(sigmas.min())), math.log(float(sigmas.max()))
        self.log_range = (lo, max(hi, lo + 1e-3))
        self.in_channels, self.spatial_dims = in_channels, spatial_dims
        features = (ngf, ngf, 2 * ngf, 4 * ngf, 8 * ngf, ngf)
        self.unet = BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
                              features=features, norm=("instance", {"affine": False}),
                              act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}))
        # plain tuples (not ModuleLists): the state_dict keys stay those of the body
        self._slots = _condition_norms(self.unet, embed_dim)
        self._norms = tuple(slot.norm for slot in self._slots)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        x, sigma, size0 = network_input(x, sigma, self.spatial_dims, self.size_multiple, self.min_size)
        params = NormParams(self._norms, log_sigma_features(sigma, self.freqs, self.log_range))
        for slot in self._slots:
            slot.params = params
        try:
            out = crop_to(self.unet(x), size0)
        finally:
            for slot in self._slots:
                slot.params = None
        return out / sigma.view(-1, *([1] * (out.ndim - 1)))
