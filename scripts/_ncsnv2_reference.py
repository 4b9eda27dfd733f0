"""Re-implementation of the reference NCSNv2 network (ermongroup/ncsnv2, ``models/ncsnv2.py`` class
``NCSNv2`` with the layers of ``models/layers.py`` and ``models/normalization.py``), for benchmarking only.

Written from reading the reference (not copied); it keeps the reference's operations so its speed is
comparable: unconditional InstanceNorm++ as ``nn.InstanceNorm2d`` plus separate elementwise passes
(channel-mean spread with the *unbiased* variance, as there), ELU modules, ``ConvMeanPool`` as four
strided slices, dilated 'down' stages that do not downsample, RefineNet blocks without norms
(RCU / MSF / CRP with ATen 5x5 max-pool), bilinear fusion with ``align_corners=True``, output / sigma.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ReferenceNCSNv2"]


def _conv3(cin: int, cout: int, bias: bool = True, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=bias)


class InstanceNormPlusRef(nn.Module):
    """Unconditional InstanceNorm++ computed the way the reference does (several full passes)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c
        self.instance_norm = nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
        self.alpha = nn.Parameter(torch.empty(c).normal_(1, 0.02))
        self.gamma = nn.Parameter(torch.empty(c).normal_(1, 0.02))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x: Tensor) -> Tensor:
        means = x.mean(dim=(2, 3))
        spread = (means - means.mean(-1, keepdim=True)) / torch.sqrt(means.var(-1, keepdim=True) + 1e-5)
        h = self.instance_norm(x) + spread[..., None, None] * self.alpha[..., None, None]
        return self.gamma.view(-1, self.c, 1, 1) * h + self.beta.view(-1, self.c, 1, 1)


class ConvMeanPool(nn.Module):
    """Convolution, then 2x2 mean pooling as the sum of four strided slices."""

    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return (y[:, :, ::2, ::2] + y[:, :, 1::2, ::2] + y[:, :, ::2, 1::2] + y[:, :, 1::2, 1::2]) / 4.0


class ResidualBlockRef(nn.Module):
    """norm-act-conv twice plus a shortcut; 'down' without dilation pools, with dilation it does not."""

    def __init__(self, cin: int, cout: int, down: bool = False, dilation: int = 1) -> None:
        super().__init__()
        self.act = nn.ELU()
        self.norm1 = InstanceNormPlusRef(cin)
        mid = cin if down else cout
        self.conv1 = _conv3(cin, mid, dilation=dilation)
        self.norm2 = InstanceNormPlusRef(mid)
        if down and dilation == 1:
            self.conv2, self.shortcut = ConvMeanPool(mid, cout), ConvMeanPool(cin, cout, k=1)
        else:
            self.conv2 = _conv3(mid, cout, dilation=dilation)
            self.shortcut = _conv3(cin, cout, dilation=dilation) if (down or cin != cout) else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))
        return (x if self.shortcut is None else self.shortcut(x)) + out


class RCU(nn.Module):
    """Residual conv units: ``blocks`` x (``stages`` x (act, 3x3 conv without bias)) + residual."""

    def __init__(self, c: int, blocks: int, stages: int = 2) -> None:
        super().__init__()
        self.act = nn.ELU()
        self.convs = nn.ModuleList(nn.ModuleList(_conv3(c, c, bias=False) for _ in range(stages))
                                   for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.convs:
            residual = x
            for conv in stage:
                x = conv(self.act(x))
            x += residual
        return x


class CRP(nn.Module):
    """Chained residual pooling: act, then twice (5x5 max-pool, conv), each added to the running sum."""

    def __init__(self, c: int, stages: int = 2) -> None:
        super().__init__()
        self.act, self.pool = nn.ELU(), nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_conv3(c, c, bias=False) for _ in range(stages))

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(x)
        path = x
        for conv in self.convs:
            path = conv(self.pool(path))
            x = path + x
        return x


class RefineBlockRef(nn.Module):
    """RCU per input, multi-resolution fusion (conv + bilinear, no norm), CRP, output RCU."""

    def __init__(self, cins: list[int], c: int, start: bool = False, end: bool = False) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(RCU(ci, 2) for ci in cins)
        self.msf = None if start else nn.ModuleList(_conv3(ci, c) for ci in cins)
        self.crp, self.out, self.c = CRP(c), RCU(c, 3 if end else 1), c

    def forward(self, xs: list[Tensor], shape: torch.Size) -> Tensor:
        hs = [adapt(x) for adapt, x in zip(self.adapt, xs)]
        if self.msf is None:
            h = hs[0]
        else:
            h = torch.zeros(xs[0].shape[0], self.c, *shape, device=xs[0].device)
            for conv, hi in zip(self.msf, hs):
                h += F.interpolate(conv(hi), size=shape, mode="bilinear", align_corners=True)
        return self.out(self.crp(h))


class ReferenceNCSNv2(nn.Module):
    """The reference ``NCSNv2`` (the non-"Deeper" one) for ``channels``-channel images; forward(x, y)."""

    def __init__(self, sigmas: Tensor, ngf: int = 32, channels: int = 1) -> None:
        super().__init__()
        c1, c2 = ngf, 2 * ngf
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float32))
        self.begin_conv = nn.Conv2d(channels, c1, 3, padding=1)
        self.res1 = nn.Sequential(ResidualBlockRef(c1, c1), ResidualBlockRef(c1, c1))
        self.res2 = nn.Sequential(ResidualBlockRef(c1, c2, down=True), ResidualBlockRef(c2, c2))
        self.res3 = nn.Sequential(ResidualBlockRef(c2, c2, down=True, dilation=2), ResidualBlockRef(c2, c2, dilation=2))
        self.res4 = nn.Sequential(ResidualBlockRef(c2, c2, down=True, dilation=4), ResidualBlockRef(c2, c2, dilation=4))
        self.refine1 = RefineBlockRef([c2], c2, start=True)
        self.refine2 = RefineBlockRef([c2, c2], c2)
        self.refine3 = RefineBlockRef([c2, c2], c1)
        self.refine4 = RefineBlockRef([c1, c1], c1, end=True)
        self.normalizer, self.act = InstanceNormPlusRef(c1), nn.ELU()
        self.end_conv = nn.Conv2d(c1, channels, 3, padding=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.begin_conv(2 * x - 1.0)
        l1 = self.res1(h)
        l2 = self.res2(l1)
        l3 = self.res3(l2)
        l4 = self.res4(l3)
        r = self.refine1([l4], l4.shape[2:])
        r = self.refine2([l3, r], l3.shape[2:])
        r = self.refine3([l2, r], l2.shape[2:])
        r = self.refine4([l1, r], l1.shape[2:])
        out = self.end_conv(self.act(self.normalizer(r)))
        return out / self.sigmas[y].view(x.shape[0], *([1] * (x.ndim - 1)))
