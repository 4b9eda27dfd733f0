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

from ..errors import CheckpointError

__all__ = ["init_weights_from"]


def _source(init_from: str | Path) -> nn.Module:
    from ..priors.store import load_prior

    prior = load_prior(None if str(init_from) == "bundled" else init_from)
    if "level_split" in prior.meta:  # two networks (the default prior is one): which to start from is the user's call
        split = prior.meta["level_split"]
        raise CheckpointError(f"init_from {init_from}: a level split of two networks; start from one of them "
                              f"({split['coarse']} above sigma {split['switch_sigma']}, {split['fine']} below)")
    return prior.model


def init_weights_from(model: nn.Module, init_from: str | Path) -> None:
    """Copy the weights of ``init_from`` (a model folder/file, ``"bundled"`` or ``"bundled:NAME"``) into
    ``model``, in place. The noise levels stay the new model's own; any other difference is a CheckpointError."""
    source = _source(init_from)
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
    with torch.no_grad():
        for name, tensor in dst.items():
            if name != "sigmas":
                tensor.copy_(src[name].to(tensor.dtype))


def _with_partner_channel(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A 1-channel network's weights for a channel-pair one: the first convolution's new partner input at zero."""
    name = "begin.weight"
    if name not in src or name not in dst or src[name].shape[1] != 1 or dst[name].shape[1] != 2:
        raise CheckpointError("init_from: a magnitude network and a channel-pair prior of different layouts")
    widened = dict(src)
    widened[name] = torch.cat([src[name], torch.zeros_like(src[name])], dim=1)
    return widened

