"""Score networks s(x, sigma)."""

from __future__ import annotations

from torch import Tensor, nn

from ..config import ModelConfig
from .refinenet import NCSN, NCSNv2, RefineNetScore
from .level_split import LevelSplitScore
from .unet import UNetScore

__all__ = ["NCSN", "NCSNv2", "RefineNetScore", "UNetScore", "LevelSplitScore", "ScoreNetwork", "build_model",
           "count_parameters"]

ScoreNetwork = RefineNetScore | UNetScore  # what build_model returns: s(x, sigma) with .sigmas, .in_channels


def build_model(cfg: ModelConfig, sigmas: Tensor) -> ScoreNetwork:
    """The network a :class:`ModelConfig` describes, for the given noise levels."""
    # older configs have no spatial_dims: they describe 2D networks
    spatial_dims = int(getattr(cfg, "spatial_dims", 2) or 2)
    pair = bool(getattr(cfg, "pair_channels", False))
    if cfg.arch == "unet":
        return UNetScore(cfg.in_channels, cfg.ngf, sigmas, spatial_dims=spatial_dims)
    if cfg.arch == "ncsnv2":
        return NCSNv2(cfg.in_channels, cfg.ngf, sigmas, downsample3=cfg.downsample3, spatial_dims=spatial_dims,
                      pair_channels=pair)
    return NCSN(cfg.in_channels, cfg.ngf, sigmas, conditioning=cfg.conditioning, scale_by_sigma=cfg.scale_by_sigma,
                downsample3=cfg.downsample3, spatial_dims=spatial_dims, pair_channels=pair)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
