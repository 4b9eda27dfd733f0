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

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .checkpoint import META, LoadedModel, attach_presets
from .errors import CheckpointError, OutputError
from .fileio import atomic_path

__all__ = ["LEVEL_SPLIT_FORMAT", "is_level_split", "load_level_split", "member_refs", "save_level_split"]

LEVEL_SPLIT_FORMAT = "medscore-level-split"
_BUNDLED = "bundled"


def _meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path / META if path.is_dir() else path


def is_level_split(path: str | Path) -> bool:
    """Whether ``path`` (a folder or its model.json) describes a level-split prior."""
    meta = _meta_path(path)
    if meta.suffix != ".json" or not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == LEVEL_SPLIT_FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def save_level_split(out_dir: str | Path, coarse: str, fine: str, switch_sigma: float, *, name: str | None = None,
                     presets: dict[str, Any] | None = None, card: dict[str, Any] | None = None,
                     verify: bool = True, overwrite: bool = False) -> Path:
    """Write a level-split ``model.json`` into ``out_dir`` (atomically); returns its path.

    ``coarse`` / ``fine``: ``"bundled"``, ``"bundled:NAME"`` or a model folder relative to ``out_dir``.
    With ``verify`` both members are loaded and checked for compatibility first: nothing is written for
    a pair that would not load. An existing ``model.json`` is replaced only with ``overwrite``.
    """
    target = Path(out_dir) / META
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise OutputError(f"{out_dir} is a file: give a folder for the level split")
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists: choose a new folder (or pass overwrite=True)")
    _check_fields({"coarse": coarse, "fine": fine, "switch_sigma": switch_sigma}, target)
    if verify:
        from .models import load_prior

        members = [load_prior(_member_ref(m, Path(out_dir)), "cpu") for m in (coarse, fine)]
        _combine(members[0], members[1], float(switch_sigma), target)
    meta: dict[str, Any] = {"format": LEVEL_SPLIT_FORMAT, "format_version": 1, "coarse": coarse, "fine": fine,
                            "switch_sigma": float(switch_sigma)}
    meta.update({k: v for k, v in (("name", name), ("presets", presets), ("card", card)) if v is not None})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out_dir) / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return Path(out_dir) / META


def _check_fields(meta: dict[str, Any], where: Path) -> None:
    for key in ("coarse", "fine"):
        member = meta.get(key)
        if not isinstance(member, str) or not member:
            raise CheckpointError(f"{where}: {key!r} must name a model ('bundled', 'bundled:NAME' or a folder)")
    s = meta.get("switch_sigma")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s >= 0):
        raise CheckpointError(f"{where}: 'switch_sigma' must be a finite number >= 0, got {s!r}")


def _member_ref(member: str, folder: Path) -> str | Path | None:
    """What :func:`~medscore.models.load_prior` takes for a member: None for the default bundled prior."""
    if member == _BUNDLED:
        return None
    if member.startswith(_BUNDLED + ":"):
        return member
    path = (folder / member).resolve()
    if is_level_split(path):
        raise CheckpointError(f"{folder / META}: member {member!r} is itself a level split; name its networks")
    return path


def member_refs(path: str | Path) -> dict[str, str | Path | None]:
    """What :func:`~medscore.models.load_prior` takes for each member (``coarse``, ``fine``) of the split at
    ``path``: None for the default bundled prior, ``"bundled:NAME"``, or a resolved folder."""
    meta_path = _meta_path(path)
    meta = json.loads(meta_path.read_text())
    _check_fields(meta, meta_path)
    return {k: _member_ref(meta[k], meta_path.parent) for k in ("coarse", "fine")}


def _combine(coarse: LoadedModel, fine: LoadedModel, switch_sigma: float, where: Path) -> Any:
    """The :class:`~medscore.nets.level_split.LevelSplitScore` of two loaded members, or CheckpointError naming
    what differs (intensity rule, noise levels, channels)."""
    from .nets.level_split import LevelSplitScore

    if coarse.meta.get("intensity") != fine.meta.get("intensity"):
        raise CheckpointError(f"{where}: the two models scale intensities differently")
    try:
        return LevelSplitScore(coarse.model, fine.model, switch_sigma)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def load_level_split(path: str | Path, device: str | torch.device,
                     load_member: Callable[[Any, Any], LoadedModel]) -> LoadedModel:
    """The level-split prior described at ``path``; ``load_member(ref, device)`` loads each member."""
    meta_path = _meta_path(path)
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{meta_path}: not valid JSON") from None
    _check_fields(meta, meta_path)
    coarse, fine = (load_member(_member_ref(meta[k], meta_path.parent), device) for k in ("coarse", "fine"))
    model = _combine(coarse, fine, float(meta["switch_sigma"]), meta_path)
    if meta.get("presets") is not None:
        attach_presets(model, meta["presets"], meta_path)
    info = {**fine.meta, "name": meta.get("name", meta_path.parent.name), "card": meta.get("card", {}),
            "level_split": {k: meta[k] for k in ("coarse", "fine", "switch_sigma")},
            "presets": getattr(model, "presets", None)}
    return LoadedModel(model.eval(), info, meta_path)  # type: ignore[arg-type]
