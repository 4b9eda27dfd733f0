"""Start a training run from another model's weights (fine-tuning on new data, or a longer schedule).

Only identical architectures: every tensor but the noise levels must have the same shape. Starting a
2-channel (complex) prior from a 1-channel one with its first and last layers repeated over the channels was
tried and stalled: the DSM loss stayed near 2,150 for 225 steps, where the same network from scratch fell to
925 in 50 steps on a fixed batch (the two output channels start equal, a saddle that Adam did not leave).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

__all__ = ["warm_start"]


def _source(init_from: str | Path) -> nn.Module:
    from .models import load_prior

    prior = load_prior(None if str(init_from) == "bundled" else init_from)
    if "level_split" in prior.meta:  # two networks (the default prior is one): which to start from is the user's call
        split = prior.meta["level_split"]
        raise CheckpointError(f"init_from {init_from}: a level split of two networks; start from one of them "
                              f"({split['coarse']} above sigma {split['switch_sigma']}, {split['fine']} below)")
    return prior.model


def warm_start(model: nn.Module, init_from: str | Path) -> None:
    """Copy the weights of ``init_from`` (a model folder/file, ``"bundled"`` or ``"bundled:NAME"``) into
    ``model``, in place. The noise levels stay the new model's own; any other difference is a CheckpointError."""
    src = _source(init_from).state_dict()
    dst = model.state_dict()
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
