"""Level-split priors on disk: a ``model.json`` that names two score models and the level where they hand over.

A level-split folder holds no weights of its own, only::

    {"format": "medscore-level-split", "format_version": 1, "name": "...",
     "coarse": "bundled:unet", "fine": "bundled", "switch_sigma": 0.1, "presets": {...}}

Members are bundled priors (``"bundled"``, ``"bundled:NAME"``) or model folders given relative to this
folder; each is loaded (and SHA-256 checked) as it would be on its own. The loaded prior is a
:class:`~medscore.nets.level_split.LevelSplitScore` with the fine member's description (noise levels,
intensity rule, image size) and, when the file has none, the fine member's tuned presets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .checkpoint import META, LoadedModel, attach_adaptation, attach_presets
from .checks import read_description
from ..errors import CheckpointError

__all__ = ["LEVEL_SPLIT_FORMAT", "is_level_split", "load_level_split", "member_refs", "check_fields", "combine",
           "member_ref", "description_path"]

LEVEL_SPLIT_FORMAT = "medscore-level-split"
_BUNDLED = "bundled"


def description_path(path: str | Path) -> Path:
    path = Path(path)
    return path / META if path.is_dir() else path


def is_level_split(path: str | Path) -> bool:
    """Whether ``path`` (a folder or its model.json) describes a level-split prior."""
    meta = description_path(path)
    if meta.suffix != ".json" or not meta.is_file():
        return False
    try:
        return read_description(meta).get("format") == LEVEL_SPLIT_FORMAT
    except CheckpointError:  # not a level split; the model loader names what is wrong with the file
        return False


def check_fields(meta: dict[str, Any], where: Path) -> None:
    for key in ("coarse", "fine"):
        member = meta.get(key)
        if not isinstance(member, str) or not member:
            raise CheckpointError(f"{where}: {key!r} must name a model ('bundled', 'bundled:NAME' or a folder)")
    s = meta.get("switch_sigma")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s >= 0):
        raise CheckpointError(f"{where}: 'switch_sigma' must be a finite number >= 0, got {s!r}")


def member_ref(member: str, folder: Path) -> str | Path | None:
    """What :func:`~medscore.priors.store.load_prior` takes for a member: None for the default bundled prior."""
    if member == _BUNDLED:
        return None
    if member.startswith(_BUNDLED + ":"):
        return member
    path = (folder / member).resolve()
    if is_level_split(path):
        raise CheckpointError(f"{folder / META}: member {member!r} is itself a level split; name its networks")
    return path


def member_refs(path: str | Path) -> dict[str, str | Path | None]:
    """What :func:`~medscore.priors.store.load_prior` takes for each member (``coarse``, ``fine``) of the split at
    ``path``: None for the default bundled prior, ``"bundled:NAME"``, or a resolved folder."""
    meta_path = description_path(path)
    meta = read_description(meta_path)
    check_fields(meta, meta_path)
    return {k: member_ref(meta[k], meta_path.parent) for k in ("coarse", "fine")}


def combine(coarse: LoadedModel, fine: LoadedModel, switch_sigma: float, where: Path) -> Any:
    """The :class:`~medscore.nets.level_split.LevelSplitScore` of two loaded members, or CheckpointError naming
    what differs (intensity rule, noise levels, channels)."""
    from ..nets.level_split import LevelSplitScore

    if coarse.meta.get("intensity") != fine.meta.get("intensity"):
        raise CheckpointError(f"{where}: the two models scale intensities differently")
    try:
        return LevelSplitScore(coarse.model, fine.model, switch_sigma)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def load_level_split(path: str | Path, device: str | torch.device,
                     load_member: Callable[[Any, Any], LoadedModel]) -> LoadedModel:
    """The level-split prior described at ``path``; ``load_member(ref, device)`` loads each member."""
    meta_path = description_path(path)
    meta = read_description(meta_path)
    check_fields(meta, meta_path)
    coarse, fine = (load_member(member_ref(meta[k], meta_path.parent), device) for k in ("coarse", "fine"))
    model = combine(coarse, fine, float(meta["switch_sigma"]), meta_path)
    if meta.get("presets") is not None:
        attach_presets(model, meta["presets"], meta_path)
    attach_adaptation(model, meta.get("adaptation", getattr(fine.model, "adaptation", None)), meta_path)
    info = {**fine.meta, "name": meta.get("name", meta_path.parent.name), "card": meta.get("card", {}),
            "level_split": {k: meta[k] for k in ("coarse", "fine", "switch_sigma")},
            "presets": getattr(model, "presets", None)}
    return LoadedModel(model.eval(), info, meta_path)  # type: ignore[arg-type]
