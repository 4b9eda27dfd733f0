"""NCSN score networks: the RefineNet with dilated convolutions of Song & Ermon (2019) and its NCSNv2 variant.

Both map ``(x, sigma) -> s(x, sigma)`` with ``x`` of shape (B, C, H, W) (or (B, C, D, H, W) with
``spatial_dims=3``) and ``sigma`` of shape (B,). They are fully convolutional: any size works (sizes are
padded internally to a multiple of ``size_multiple`` and cropped back).

* :class:`NCSN`: conditional instance norm++ on the noise level, either on the level *index*
  (the paper; only the trained levels are meaningful) or ``continuous`` on log(sigma) through
  Fourier features (any sigma in the trained range).
* :class:`NCSNv2`: the same body with unconditional instance norm++; the output is divided by sigma
  (technique 3 of Song & Ermon 2020).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (InstanceNormPlus, NormParams, RefineBlock, ResidualBlock, _conv, crop_to, log_sigma_features,
                     network_input)

__all__ = ["RefineNetScore", "NCSN", "NCSNv2"]

Conditioning = Literal["index", "continuous", "none"]


def _check_layout(in_channels: int, ngf: int, conditioning: str, spatial_dims: int, pair_channels: bool) -> None:
    """The constructor's arguments describe a network that can be built; ValueError naming the first that does not."""
    if pair_channels and in_channels != 2:
        raise ValueError(f"pair_channels needs in_channels 2 (real, imaginary), got {in_channels}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if in_channels < 1 or ngf < 4:
        raise ValueError(f"in_channels must be >= 1 and ngf >= 4, got {in_channels}, {ngf}")
    if conditioning not in ("index", "continuous", "none"):
        raise ValueError(f"conditioning must be 'index', 'continuous' or 'none', got {conditioning!r}")


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
        spatial_dims: 2 (images, the default) or 3 (volumes: 3D convolutions, pooling, trilinear fusion).
        pair_channels: a complex prior (``in_channels`` 2) that scores each channel from the channel itself and
            its partner: ``s_re = f([re, im])``, ``s_im = f([im, re])`` with one network ``f`` of one output
            channel, run on both orderings in one batch. With ``f``'s partner weights at zero it is exactly a
            magnitude prior applied to each channel (the "RI" use of a 1-channel prior), so a complex prior can
            start from a magnitude one (:func:`medscore.training.init_from.warm_start`) without the saddle of two equal
            output channels. It is also equivariant to swapping the channels (a conjugation and a rotation by
            pi / 2, under which a distribution of random-phase images is invariant).
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
        spatial_dims: int = 2,
        pair_channels: bool = False,
    ) -> None:
        super().__init__()
        _check_layout(in_channels, ngf, conditioning, spatial_dims, pair_channels)
        self.in_channels = in_channels  # 1: magnitude prior; 2: complex prior (real, imaginary channels)
        self.pair_channels = pair_channels
        sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        if sigmas.ndim != 1 or len(sigmas) < 1 or bool((sigmas <= 0).any()):
            raise ValueError("sigmas must be a non-empty 1D tensor of positive noise levels")
        self.register_buffer("sigmas", sigmas)
        self.conditioning = conditioning
        self.size_multiple = 4 if downsample3 else 2
        self.scale_by_sigma = scale_by_sigma
        self.embed_dim = embed_dim
        self.spatial_dims = d = spatial_dims
        # 2D networks were measured in bf16 (0.05 dB at most, docs/benchmarks.md): `auto` precision may use it on CPU
        self.bf16_inference = d == 2
        cond_dim = {"index": len(sigmas), "continuous": embed_dim, "none": 0}[conditioning]
        if conditioning == "continuous":
            self.register_buffer("freqs", torch.arange(1, embed_dim // 2 + 1, dtype=torch.float32) * math.pi)
            lo, hi = math.log(float(sigmas.min())), math.log(float(sigmas.max()))
            self.log_range = (lo, max(hi, lo + 1e-3))
        c1, c2, e = ngf, 2 * ngf, cond_dim
        self.begin = _conv(d, in_channels, c1, 3, padding=1)
        self.res1 = nn.ModuleList([ResidualBlock(c1, c1, e, spatial_dims=d), ResidualBlock(c1, c1, e, spatial_dims=d)])
        self.res2 = nn.ModuleList([ResidualBlock(c1, c2, e, down=True, spatial_dims=d),
                                   ResidualBlock(c2, c2, e, spatial_dims=d)])
        self.res3 = nn.ModuleList([ResidualBlock(c2, c2, e, down=downsample3, dilation=1 if downsample3 else 2,
                                                 spatial_dims=d),
                                   ResidualBlock(c2, c2, e, dilation=2, spatial_dims=d)])
        self.res4 = nn.ModuleList([ResidualBlock(c2, c2, e, dilation=4, spatial_dims=d),
                                   ResidualBlock(c2, c2, e, dilation=4, spatial_dims=d)])
        self.refine4 = RefineBlock((c2,), c2, e, spatial_dims=d)
        self.refine3 = RefineBlock((c2, c2), c2, e, spatial_dims=d)
        self.refine2 = RefineBlock((c2, c2), c1, e, spatial_dims=d)
        self.refine1 = RefineBlock((c1, c1), c1, e, spatial_dims=d)
        self.end_norm = InstanceNormPlus(c1, e)
        self.end = _conv(d, c1, 1 if pair_channels else in_channels, 3, padding=1)
        # plain tuple (not a ModuleList): the state_dict keys stay those of the modules above
        self._norms = tuple(m for m in self.modules() if isinstance(m, InstanceNormPlus))

    def level_index(self, sigma: Tensor) -> Tensor:
        """Index of the trained level nearest (in log space) to each sigma."""
        d = (torch.log(sigma)[:, None] - torch.log(self.sigmas)[None, :]).abs()
        return d.argmin(dim=1)

    def _condition(self, sigma: Tensor) -> NormParams | None:
        """Every norm's affine parameters for these noise levels (one matmul), or None if unconditional."""
        cond = self._cond_vector(sigma)
        return None if cond is None else NormParams(self._norms, cond)

    def _cond_vector(self, sigma: Tensor) -> Tensor | None:
        if self.conditioning == "none":
            return None
        if self.conditioning == "index":
            return F.one_hot(self.level_index(sigma), len(self.sigmas)).to(sigma.dtype)
        return log_sigma_features(sigma, self.freqs, self.log_range)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        if self.pair_channels:
            return self._paired_forward(x, sigma)
        return self._forward(x, sigma)

    def _paired_forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """(B, 2, ...) -> (B, 2, ...): row ``2b`` of the batch is image b as (re, im), row ``2b + 1`` as (im, re)."""
        if x.shape[1] != 2:
            raise ValueError(f"a channel-pair prior takes (B, 2, ...) images, got {tuple(x.shape)}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        both = torch.stack([x, x.flip(1)], dim=1).flatten(0, 1)
        return self._forward(both, sigma.repeat_interleave(2)).reshape(x.shape)

    def _forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        x, sigma, size0 = network_input(x, sigma, self.spatial_dims, self.size_multiple)
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
        out = self.end(F.elu(self.end_norm(r, cond), inplace=True))
        out = crop_to(out, size0)
        if self.scale_by_sigma:
            out = out / sigma.view(-1, *([1] * (out.ndim - 1)))
        return out


class NCSN(RefineNetScore):
    """NCSN (Song & Ermon 2019): RefineNet with conditional instance norm++ on the noise level."""

    def __init__(
        self,
        in_channels: int = 1,
        ngf: int = 64,
        sigmas: Tensor | None = None,
        conditioning: Literal["index", "continuous"] = "index",
        scale_by_sigma: bool = False,
        downsample3: bool = True,
        spatial_dims: int = 2,
        pair_channels: bool = False,
    ) -> None:
        if sigmas is None:
            raise ValueError("NCSN needs the noise levels `sigmas` it is conditioned on")
        if conditioning not in ("index", "continuous"):
            raise ValueError(f"NCSN conditioning must be 'index' or 'continuous', got {conditioning!r}")
        super().__init__(in_channels, ngf, sigmas, conditioning, scale_by_sigma, downsample3=downsample3,
                         spatial_dims=spatial_dims, pair_channels=pair_channels)


class NCSNv2(RefineNetScore):
    """NCSNv2 (Song & Ermon 2020): unconditional RefineNet whose output is divided by sigma."""

    def __init__(self, in_channels: int = 1, ngf: int = 64, sigmas: Tensor | None = None, downsample3: bool = True,
                 spatial_dims: int = 2, pair_channels: bool = False) -> None:
        if sigmas is None:
            raise ValueError("NCSNv2 needs the noise levels `sigmas` it is trained on")
        super().__init__(in_channels, ngf, sigmas, "none", scale_by_sigma=True, downsample3=downsample3,
                         spatial_dims=spatial_dims, pair_channels=pair_channels)
