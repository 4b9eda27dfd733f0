"""Building blocks of the NCSN RefineNet: instance norm++ (conditional or not), residual and refine blocks.

Every block takes ``(x, cond)``; ``cond`` is a (B, E) conditioning vector, or ``None`` for the
unconditional NCSNv2 network. Written here rather than taken from MONAI because MONAI has no
conditional instance norm++ nor RefineNet blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InstanceNormPlus", "ResidualBlock", "RefineBlock"]


class InstanceNormPlus(nn.Module):
    """Instance norm++ (Song & Ermon 2019, appendix): instance norm that keeps the channel means' spread.

    ``out = gamma * (IN(x) + alpha * (mu - mean(mu)) / std(mu)) + beta``. With ``cond_dim > 0`` the
    three per-channel parameters are an affine function of the conditioning vector (a one-hot level
    index gives exactly the paper's per-level embedding); with ``cond_dim == 0`` they are plain parameters.
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

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        spatial = tuple(range(2, x.ndim))
        means = x.mean(dim=spatial)  # (B, C)
        m = means.mean(dim=1, keepdim=True)
        v = means.var(dim=1, keepdim=True, unbiased=False)
        means = (means - m) / torch.sqrt(v + 1e-5)
        h = F.instance_norm(x, eps=1e-5)
        if self.cond_dim > 0:
            if cond is None:
                raise ValueError("this InstanceNormPlus is conditional: pass a conditioning vector")
            gamma, alpha, beta = self.embed(cond).chunk(3, dim=1)
        else:
            b = x.shape[0]
            gamma, alpha, beta = (p.expand(b, -1) for p in (self.gamma, self.alpha, self.beta))
        shape = (*gamma.shape, *([1] * len(spatial)))
        h = h + (alpha * means).view(shape)
        return gamma.view(shape) * h + beta.view(shape)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: norm, ELU, 3x3 conv (dilated), twice; optional 2x downsampling."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, down: bool = False, dilation: int = 1) -> None:
        super().__init__()
        self.norm1 = InstanceNormPlus(in_ch, cond_dim)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.norm2 = InstanceNormPlus(out_ch, cond_dim)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=dilation, dilation=dilation)
        self.down = down
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or down) else None

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        h = self.conv1(F.elu(self.norm1(x, cond)))
        h = self.conv2(F.elu(self.norm2(h, cond)))
        skip = x if self.skip is None else self.skip(x)
        if self.down:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip


class _ConvUnit(nn.Module):
    """Residual conv unit of RefineNet (RCU): two norm-ELU-conv layers around a skip connection."""

    def __init__(self, ch: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = InstanceNormPlus(ch, cond_dim), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = InstanceNormPlus(ch, cond_dim), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        h = self.conv1(F.elu(self.norm1(x, cond)))
        return x + self.conv2(F.elu(self.norm2(h, cond)))


class _ChainedPooling(nn.Module):
    """Chained residual pooling (CRP): repeated norm, 5x5 max-pool, conv; each stage added to the output."""

    def __init__(self, ch: int, cond_dim: int, stages: int = 2) -> None:
        super().__init__()
        self.norms = nn.ModuleList(InstanceNormPlus(ch, cond_dim) for _ in range(stages))
        self.convs = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1, bias=False) for _ in range(stages))

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        x = F.elu(x)
        out, path = x, x
        for norm, conv in zip(self.norms, self.convs):
            path = conv(F.max_pool2d(norm(path, cond), 5, stride=1, padding=2))
            out = out + path
        return out


class RefineBlock(nn.Module):
    """RefineNet block: an RCU per input, multi-resolution fusion to the finest input, CRP, output RCU."""

    def __init__(self, in_channels: tuple[int, ...], out_ch: int, cond_dim: int) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(_ConvUnit(c, cond_dim) for c in in_channels)
        self.fuse_norms = nn.ModuleList(InstanceNormPlus(c, cond_dim) for c in in_channels)
        self.fuse_convs = nn.ModuleList(nn.Conv2d(c, out_ch, 3, padding=1) for c in in_channels)
        self.crp = _ChainedPooling(out_ch, cond_dim)
        self.out = _ConvUnit(out_ch, cond_dim)

    def forward(self, xs: list[Tensor], cond: Tensor | None) -> Tensor:
        size = max((x.shape[-2:] for x in xs), key=lambda s: s[0] * s[1])
        fused = None
        for x, adapt, norm, conv in zip(xs, self.adapt, self.fuse_norms, self.fuse_convs):
            h = conv(norm(adapt(x, cond), cond))
            if h.shape[-2:] != size:
                h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
            fused = h if fused is None else fused + h
        return self.out(self.crp(fused, cond), cond)
