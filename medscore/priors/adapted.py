"""Adapted priors on disk: the network an adaptation fitted to one scan, as a model folder for the next scan.

The folder is a model folder like any other (safetensors weights + ``model.json``, SHA-256 recorded and checked at
load), whose ``model.json`` also names the prior it was adapted from (``adapted_from``: name, SHA-256) and the
adaptation's settings. A level-split prior is saved as a level split of its two adapted members (``coarse/``,
``fine/``). ``--model DIR`` (``model=DIR``) loads it for the next scan of the same protocol.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from ..io.atomic import atomic_path
from .checkpoint import FORMAT, META, WEIGHTS, LoadedModel, sha256
from .split_folder import member_refs
from .store import bundled_label, load_prior, save_level_split

__all__ = ["save_adapted_prior"]


def _source(prior: LoadedModel) -> dict[str, Any]:
    folder = Path(prior.path).parent
    return {"name": bundled_label(folder) or folder.name, "sha256": prior.meta.get("sha256")}


def _save_network(out_dir: Path, net: nn.Module, meta: dict[str, Any], extra: dict[str, Any]) -> Path:
    """``net``'s weights and a copy of ``meta`` (its description) with the new SHA-256 and ``extra``."""
    info = {k: v for k, v in copy.deepcopy(meta).items() if k not in ("sha256", "sha256_raw", "level_split")}
    info.update(format=FORMAT, **extra)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
        info["sha256"] = sha256(tmp)
    with atomic_path(out_dir / META) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    return out_dir / META


def save_adapted_prior(out_dir: str | Path, prior: LoadedModel, adapted: Any) -> Path:
    """Write ``adapted`` (a :class:`~medscore.solvers.adapt.AdaptedPrior` of ``prior``) as a model folder in the new
    folder ``out_dir``; returns its ``model.json``."""
    out_dir = Path(out_dir)
    extra = {"adapted_from": _source(prior), "adaptation": adapted.settings.to_dict()}
    split = prior.meta.get("level_split")
    if split is None:
        return _save_network(out_dir, adapted.net, prior.meta, extra)
    refs = member_refs(prior.path)
    for role in ("coarse", "fine"):
        member = load_prior(refs[role], "cpu")
        _save_network(out_dir / role, getattr(adapted.net, role), member.meta, extra)
    return save_level_split(out_dir, "coarse", "fine", float(split["switch_sigma"]),
                            name=f"{extra['adapted_from']['name']}-adapted", presets=prior.meta.get("presets"),
                            card={"adapted_from": extra["adapted_from"]}, overwrite=True)
