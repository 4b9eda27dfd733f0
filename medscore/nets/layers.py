"""Building blocks of the NCSN RefineNet: instance norm++ (conditional or not), residual and refine blocks.

Every block takes ``(x, cond)``; ``cond`` is a (B, E) conditioning vector, a :class:`NormParams` holding
every norm's precomputed affine parameters for this forward pass, or ``None`` for the unconditional
NCSNv2 network. ``spatial_dims`` (2 or 3) picks 2D or 3D convolutions, pooling and interpolation, the
MONAI way. Written here rather than taken from MONAI because MONAI has no conditional instance norm++
nor RefineNet blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import Tensor, nn

from .functional import instance_norm_plus, max_pool_same

__all__ = ["InstanceNormPlus", "NormParams", "ResidualBlock", "RefineBlock", "log_sigma_features", "network_input",
           "crop_to"]

_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _conv(spatial_dims: int, *args, **kwargs) -> nn.Module:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return Conv[Conv.CONV, spatial_dims](*args, **kwargs)


def network_input(x: Tensor, sigma: Tensor | float, spatial_dims: int, multiple: int,
                  min_size: int = 1) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Checked score-network input: ``x`` replicate-padded (no artificial edge for the network to "denoise") so
    every spatial size is a multiple of ``multiple`` and at least ``min_size``, sigma as (B,), the original size."""
    if x.ndim != spatial_dims + 2:
        axes = "(B, C, H, W)" if spatial_dims == 2 else "(B, C, D, H, W)"
        raise ValueError(f"expected x of shape {axes}, got {tuple(x.shape)}")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
    size0 = tuple(x.shape[2:])
    padded = [max(min_size, s + -s % multiple) for s in size0]
    if list(size0) != padded:
        pad = [p for s, t in zip(reversed(size0), reversed(padded)) for p in (0, t - s)]
        x = F.pad(x, pad, mode="replicate")
    return x, sigma, size0


def crop_to(out: Tensor, size0: tuple[int, ...]) -> Tensor:
    """``out`` cropped back to the spatial size the network was given (undoes :func:`network_input`'s padding)."""
    return out if tuple(out.shape[2:]) == size0 else out[(Ellipsis, *(slice(0, s) for s in size0))]


def log_sigma_features(sigma: Tensor, freqs: Tensor, log_range: tuple[float, float]) -> Tensor:
    """Continuous noise-level conditioning: sines and cosines of ``freqs * t``, ``t`` = log sigma mapped to [0, 1]
    over ``log_range`` (0 at the smallest trained level, 1 at the largest); (B,) -> (B, 2 len(freqs))."""
    lo, hi = log_range
    ang = ((torch.log(sigma) - lo) / (hi - lo))[:, None] * freqs[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class InstanceNormPlus(nn.Module):
    """Instance norm++ (Song & Ermon 2019, appendix): instance norm that keeps the channel means' spread.

    ``out = gamma * (IN(x) + alpha * (mu - mean(mu)) / std(mu)) + beta``. With ``cond_dim > 0`` the
    three per-channel parameters are an affine function of the conditioning vector (a one-hot level
    index gives exactly the paper's per-level embedding); with ``cond_dim == 0`` they are plain parameters.
    Works on any number of spatial dims.
    """

    def __init__(self, channels: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.channels = channels
        self.cond_dim = cond_dim
        if cond_dim > 0:
            self.embed = nn.Linear(cond_dim, 3 * channels)
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
            with torch.no_grad():
                self.embed.bias.zero_()
                self.embed.bias[:channels] = 1.0  # gamma starts at 1
                self.embed.bias[channels : 2 * channels] = 1.0  # alpha starts at 1
        else:
            self.gamma = nn.Parameter(torch.ones(channels))
            self.alpha = nn.Parameter(torch.ones(channels))
            self.beta = nn.Parameter(torch.zeros(channels))

    def affine(self, cond: Tensor | NormParams | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(gamma, alpha, beta)``, each (B, C) when conditional, (C,) otherwise."""
        if self.cond_dim == 0:
            return self.gamma, self.alpha, self.beta
        if isinstance(cond, NormParams):
            return cond.get(self)
        if cond is None:
            raise ValueError("this InstanceNormPlus is conditional: pass a conditioning vector")
        g, a, b = F.linear(cond, self.embed.weight, self.embed.bias).chunk(3, dim=1)
        return g, a, b

    def forward(self, x: Tensor, cond: Tensor | NormParams | None = None) -> Tensor:
        return instance_norm_plus(x, *self.affine(cond))


class NormParams:
    """The (gamma, alpha, beta) of many conditional norms for one conditioning vector, from one matmul.

    The conditioning vector is the same for every norm of one forward pass, so the ~50 small
    per-layer Linear calls are replaced by one: cheaper on CPU, where each tiny matmul can cost a
    thread-pool wake-up.
    """

    def __init__(self, norms: Sequence[InstanceNormPlus], cond: Tensor) -> None:
        self.cond = cond
        norms = [n for n in norms if n.cond_dim > 0]
        self._params: dict[InstanceNormPlus, tuple[Tensor, Tensor, Tensor]] = {}
        if not norms:
            return
        weight = torch.cat([n.embed.weight for n in norms])
        bias = torch.cat([n.embed.bias for n in norms])
        emb = F.linear(cond, weight, bias).split([3 * n.channels for n in norms], dim=1)
        for n, e in zip(norms, emb):
            g, a, b = e.chunk(3, dim=1)
            self._params[n] = (g, a, b)

    def get(self, norm: InstanceNormPlus) -> tuple[Tensor, Tensor, Tensor]:
        """The parameters of ``norm`` (computed on the fly for a norm this object does not hold)."""
        found = self._params.get(norm)
        return found if found is not None else norm.affine(self.cond)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: norm, ELU, 3x3 conv (dilated), twice; optional 2x downsampling."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, down: bool = False, dilation: int = 1,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        self.norm1 = InstanceNormPlus(in_ch, cond_dim)
        self.conv1 = _conv(spatial_dims, in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.norm2 = InstanceNormPlus(out_ch, cond_dim)
        self.conv2 = _conv(spatial_dims, out_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.down = down
        self.spatial_dims = spatial_dims
        self.skip = _conv(spatial_dims, in_ch, out_ch, 1) if (in_ch != out_ch or down) else None

    def forward(self, x: Tensor, cond: Tensor | NormParams | None) -> Tensor:
        # in-place ELU / add only on fresh outputs of norms, convs and pools (none of which autograd
        # needs to keep): saves an allocation and a pass each
        h = self.conv1(F.elu(self.norm1(x, cond), inplace=True))
        h = self.conv2(F.elu(self.norm2(h, cond), inplace=True))
        skip = x if self.skip is None else self.skip(x)
        if self.down:
            pool = _AVG_POOL[self.spatial_dims]
            h, skip = pool(h, 2), pool(skip, 2)
        return h.add_(skip)


class _ConvUnit(nn.Module):
    """Residual conv unit of RefineNet (RCU): two norm-ELU-conv layers around a skip connection."""

    def __init__(self, ch: int, cond_dim: int, spatial_dims: int = 2) -> None:
        super().__init__()
        self.norm1, self.conv1 = InstanceNormPlus(ch, cond_dim), _conv(spatial_dims, ch, ch, 3, padding=1)
        self.norm2, self.conv2 = InstanceNormPlus(ch, cond_dim), _conv(spatial_dims, ch, ch, 3, padding=1)

    def forward(self, x: Tensor, cond: Tensor | NormParams | None) -> Tensor:
        h = self.conv1(F.elu(self.norm1(x, cond), inplace=True))
        return self.conv2(F.elu(self.norm2(h, cond), inplace=True)).add_(x)


class _ChainedPooling(nn.Module):
    """Chained residual pooling (CRP): repeated norm, 5x5 max-pool, conv; each stage added to the output."""

    def __init__(self, ch: int, cond_dim: int, stages: int = 2, spatial_dims: int = 2) -> None:
        super().__init__()
        self.norms = nn.ModuleList(InstanceNormPlus(ch, cond_dim) for _ in range(stages))
        self.convs = nn.ModuleList(_conv(spatial_dims, ch, ch, 3, padding=1, bias=False) for _ in range(stages))

    def forward(self, x: Tensor, cond: Tensor | NormParams | None) -> Tensor:
        x = F.elu(x)
        out, path = x, x
        for norm, conv in zip(self.norms, self.convs):
            path = conv(max_pool_same(norm(path, cond), 5))
            out = out + path
        return out


class RefineBlock(nn.Module):
    """RefineNet block: an RCU per input, multi-resolution fusion to the finest input, CRP, output RCU."""

    def __init__(self, in_channels: tuple[int, ...], out_ch: int, cond_dim: int, spatial_dims: int = 2) -> None:
        super().__init__()
        d = spatial_dims
        self.adapt = nn.ModuleList(_ConvUnit(c, cond_dim, d) for c in in_channels)
        self.fuse_norms = nn.ModuleList(InstanceNormPlus(c, cond_dim) for c in in_channels)
        self.fuse_convs = nn.ModuleList(_conv(d, c, out_ch, 3, padding=1) for c in in_channels)
        self.crp = _ChainedPooling(out_ch, cond_dim, spatial_dims=d)
        self.out = _ConvUnit(out_ch, cond_dim, d)
        self.spatial_dims = d

    def forward(self, xs: list[Tensor], cond: Tensor | NormParams | None) -> Tensor:
        size = tuple(xs[0].shape[2:])  # the finest input's size (a plain loop: torch.compile-friendly)
        for x in xs[1:]:
            if math.prod(x.shape[2:]) > math.prod(size):
                size = tuple(x.shape[2:])
        fused = None
        for x, adapt, norm, conv in zip(xs, self.adapt, self.fuse_norms, self.fuse_convs):
            h = conv(norm(adapt(x, cond), cond))
            if tuple(h.shape[2:]) != size:
                h = F.interpolate(h, size=size, mode=_INTERP[self.spatial_dims], align_corners=False)
            fused = h if fused is None else fused.add_(h)
        return self.out(self.crp(fused, cond), cond)
