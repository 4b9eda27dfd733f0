"""Snapshot of medscore's score-network forward before the fused kernels (benchmark baseline only).

A verbatim copy of ``medscore/nets/layers.py`` and ``RefineNetScore`` as they were before the
instance-norm++ / max-pool rewrite: separate ``F.instance_norm`` + elementwise passes, per-layer
``nn.Linear`` embeddings, ATen 5x5 ``max_pool2d``. Same parameter names, so a current model's
``state_dict`` loads into it as is. Used by ``bench_forward.py`` to time "old vs new" in one run.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RefineNetScore", "old_from"]

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


Conditioning = Literal["index", "continuous", "none"]


class RefineNetScore(nn.Module):
    """Shared body of NCSN and NCSNv2: four residual stages (the last two dilated), four refine blocks.

    Args:
        in_channels: image channels (1 for magnitude images).
        ngf: base width; stages use ``ngf, 2 ngf, 2 ngf, 2 ngf`` channels.
        sigmas: the training noise levels, largest first (stored as a buffer, saved with the weights).
        conditioning: ``"index"``, ``"continuous"`` or ``"none"``.
        scale_by_sigma: divide the output by sigma (NCSNv2).
        embed_dim: size of the continuous noise-level embedding.
        downsample3: stage 3 halves the resolution again (as NCSNv2's deeper nets do for 64 px and up,
            and about 3x cheaper); ``False`` keeps the paper's 32 px layout (stages 2-4 at 1/2 size).
    """

    def __init__(
        self,
        in_channels: int,
        ngf: int,
        sigmas: Tensor,
        conditioning: Conditioning,
        scale_by_sigma: bool,
        embed_dim: int = 64,
        downsample3: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or ngf < 4:
            raise ValueError(f"in_channels must be >= 1 and ngf >= 4, got {in_channels}, {ngf}")
        if conditioning not in ("index", "continuous", "none"):
            raise ValueError(f"conditioning must be 'index', 'continuous' or 'none', got {conditioning!r}")
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        if sigmas.ndim != 1 or len(sigmas) < 1 or bool((sigmas <= 0).any()):
            raise ValueError("sigmas must be a non-empty 1D tensor of positive noise levels")
        self.register_buffer("sigmas", sigmas)
        self.conditioning = conditioning
        self.size_multiple = 4 if downsample3 else 2
        self.scale_by_sigma = scale_by_sigma
        self.embed_dim = embed_dim
        cond_dim = {"index": len(sigmas), "continuous": embed_dim, "none": 0}[conditioning]
        if conditioning == "continuous":
            self.register_buffer("freqs", torch.arange(1, embed_dim // 2 + 1, dtype=torch.float32) * math.pi)
            lo, hi = math.log(float(sigmas.min())), math.log(float(sigmas.max()))
            self.log_range = (lo, max(hi, lo + 1e-3))
        c1, c2 = ngf, 2 * ngf
        self.begin = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.res1 = nn.ModuleList([ResidualBlock(c1, c1, cond_dim), ResidualBlock(c1, c1, cond_dim)])
        self.res2 = nn.ModuleList([ResidualBlock(c1, c2, cond_dim, down=True), ResidualBlock(c2, c2, cond_dim)])
        self.res3 = nn.ModuleList([ResidualBlock(c2, c2, cond_dim, down=downsample3, dilation=1 if downsample3 else 2),
             ResidualBlock(c2, c2, cond_dim, dilation=2)])
        self.res4 = nn.ModuleList([ResidualBlock(c2, c2, cond_dim, dilation=4),
                                   ResidualBlock(c2, c2, cond_dim, dilation=4)])
        self.refine4 = RefineBlock((c2,), c2, cond_dim)
        self.refine3 = RefineBlock((c2, c2), c2, cond_dim)
        self.refine2 = RefineBlock((c2, c2), c1, cond_dim)
        self.refine1 = RefineBlock((c1, c1), c1, cond_dim)
        self.end_norm = InstanceNormPlus(c1, cond_dim)
        self.end = nn.Conv2d(c1, in_channels, 3, padding=1)

    def level_index(self, sigma: Tensor) -> Tensor:
        """Index of the trained level nearest (in log space) to each sigma."""
        d = (torch.log(sigma)[:, None] - torch.log(self.sigmas)[None, :]).abs()
        return d.argmin(dim=1)

    def _condition(self, sigma: Tensor) -> Tensor | None:
        if self.conditioning == "none":
            return None
        if self.conditioning == "index":
            return F.one_hot(self.level_index(sigma), len(self.sigmas)).to(sigma.dtype)
        lo, hi = self.log_range
        t = (torch.log(sigma) - lo) / (hi - lo)  # 0 at sigma_L, 1 at sigma_1
        ang = t[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected x of shape (B, C, H, W), got {tuple(x.shape)}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        h0, w0 = x.shape[-2:]
        m = self.size_multiple
        if h0 % m or w0 % m:
            x = F.pad(x, (0, -w0 % m, 0, -h0 % m), mode="replicate")
        cond = self._condition(sigma)
        h = self.begin(x)
        feats = []
        for stage in (self.res1, self.res2, self.res3, self.res4):
            for block in stage:
                h = block(h, cond)
            feats.append(h)
        r = self.refine4([feats[3]], cond)
        r = self.refine3([feats[2], r], cond)
        r = self.refine2([feats[1], r], cond)
        r = self.refine1([feats[0], r], cond)
        out = self.end(F.elu(self.end_norm(r, cond)))[..., :h0, :w0]
        if self.scale_by_sigma:
            out = out / sigma.view(-1, *([1] * (out.ndim - 1)))
        return out


def old_from(model: nn.Module) -> RefineNetScore:
    """The baseline network with ``model``'s configuration and weights (a 2D RefineNetScore)."""
    cond_kind = model.conditioning
    old = RefineNetScore(model.begin.in_channels, model.begin.out_channels, model.sigmas.clone(), cond_kind,
                         model.scale_by_sigma, embed_dim=model.embed_dim, downsample3=model.size_multiple == 4)
    old.load_state_dict(model.state_dict(), strict=True)
    return old.to(model.sigmas.device).eval()
