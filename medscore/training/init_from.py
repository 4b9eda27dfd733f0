"""Start a training run from another model's weights (fine-tuning on new data, or a longer schedule).

Identical architectures (every tensor but the noise levels of the same shape), and one widening: a
channel-pair complex prior (``model.pair_channels``, :class:`medscore.nets.RefineNetScore`) from a 1-channel
magnitude network of the same layout. Its first convolution gains an input channel (the partner) whose
weights start at zero, so the new prior starts as the magnitude prior applied to the real and the imaginary
part. Starting a plain 2-channel prior from a 1-channel one with its first and last layers repeated over the
channels was tried and stalled: the DSM loss stayed near 2,150 for 225 steps, where the same network from
scratch fell to 925 in 50 steps on a fixed batch (the two output channels start equal, a saddle that Adam
did not leave); the channel pair has one output channel, so there is no such saddle.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import CheckpointError

__all__ = ["init_weights_from", "check_init_from"]


def _source(init_from: str | Path) -> nn.Module:
    from ..priors.store import load_prior

    try:
        prior = load_prior(None if str(init_from) == "bundled" else init_from)
    except CheckpointError as exc:
        raise CheckpointError(f"init_from: {exc}") from None
    if "level_split" in prior.meta:  # two networks (the default prior is one): which to start from is the user's call
        split = prior.meta["level_split"]
        raise CheckpointError(f"init_from {init_from}: a level split of two networks; start from one of them "
                              f"({split['coarse']} above sigma {split['switch_sigma']}, {split['fine']} below)")
    return prior.model


def init_weights_from(model: nn.Module, init_from: str | Path) -> None:
    """Copy the weights of ``init_from`` (a model folder/file, ``"bundled"`` or ``"bundled:NAME"``) into
    ``model``, in place. The noise levels stay the new model's own; any other difference is a CheckpointError."""
    src = _fitted_state(model, _source(init_from), init_from)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name != "sigmas":
                tensor.copy_(src[name].to(tensor.dtype))


def check_init_from(cfg: TrainConfig) -> None:
    """Before a run starts: ``cfg.init_from`` loads and passes every check of a model (SHA-256, finite weights, its
    model.json) as the training loop will load it, and its tensors fit the configured network (unless their shapes
    depend on a number of levels that the data decide: ``num_levels: auto`` with index conditioning). Nothing to
    check without ``init_from``; CheckpointError otherwise."""
    if not cfg.init_from:
        return
    source = _source(cfg.init_from)
    levels = cfg.noise.num_levels
    if levels == "auto" and cfg.model.conditioning == "index":
        return  # one embedding row per level: the count comes from the data
    from ..nets import build_model
    from .noise import geometric_sigmas

    count = 10 if levels == "auto" else int(levels)
    _fitted_state(build_model(cfg.model, geometric_sigmas(1.0, 0.01, count)), source, cfg.init_from)


def _fitted_state(model: nn.Module, source: nn.Module, init_from: str | Path) -> dict[str, torch.Tensor]:
    """``source``'s tensors for ``model`` (the partner channel added for a channel-pair prior), or CheckpointError
    naming the first tensor that is missing or of another shape."""
    src = source.state_dict()
    dst = model.state_dict()
    if getattr(model, "pair_channels", False) and getattr(source, "in_channels", 0) == 1:
        src = _with_partner_channel(src, dst)
    missing = sorted(set(dst) - set(src) - {"sigmas"})
    if missing:
        raise CheckpointError(f"init_from {init_from}: a different architecture (lacks {missing[0]})")
    for name, tensor in dst.items():
        if name != "sigmas" and src[name].shape != tensor.shape:
            raise CheckpointError(f"init_from {init_from}: {name} has shape {tuple(src[name].shape)}, the new "
                                  f"model needs {tuple(tensor.shape)} (another width or channel count)")
    return src


def _with_partner_channel(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A 1-channel network's weights for a channel-pair one: the first convolution's new partner input at zero."""
    name = "begin.weight"
    if name not in src or name not in dst or src[name].shape[1] != 1 or dst[name].shape[1] != 2:
        raise CheckpointError("init_from: a magnitude network and a channel-pair prior of different layouts")
    widened = dict(src)
    widened[name] = torch.cat([src[name], torch.zeros_like(src[name])], dim=1)
    return widened

