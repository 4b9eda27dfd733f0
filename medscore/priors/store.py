"""Finding a score model: a user's training folder or weights file, or the prior bundled with medscore.

The bundled prior's weights ship inside the package and are checked against their SHA-256 at load.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .checkpoint import LoadedModel, load_model
from ..errors import CheckpointError, InputError
from ..errors import OutputError
from ..io.atomic import atomic_path
from .checkpoint import META
from .checks import read_description
from .split_folder import (LEVEL_SPLIT_FORMAT, check_fields, combine, is_level_split, load_level_split,
                           member_ref)

__all__ = ["BUNDLED_NAME", "COMPLEX_PRIOR", "RAW_PHASE_PRIOR", "default_prior_name", "bundled_dir", "bundled_info",
           "bundled_label", "bundled_names",
           "load_prior", "save_level_split", "check_model_arg"]

BUNDLED_NAME = "mri-heads-ncsn"
#: the bundled complex (real, imaginary) prior, a subfolder of the bundled folder; used for complex k-space
COMPLEX_PRIOR = "complex"
#: the bundled prior for complex images that keep their scanner phase (single-coil k-space), when no ``complex``
RAW_PHASE_PRIOR = "ncsn-complex"
_PREFIX = "bundled:"


def bundled_dir(name: str | None = None) -> Path:
    """Folder of a bundled prior inside the installed package: the default one, or the one called ``name``."""
    root = Path(str(resources.files("medscore") / "pretrained"))
    return root / name if name else root


def bundled_names() -> list[str]:
    """Names of the extra bundled priors (``--model bundled:NAME``), beside the default one."""
    root = bundled_dir()
    return sorted(p.name for p in root.iterdir() if (p / "model.json").is_file()) if root.is_dir() else []


def bundled_info(name: str | None = None) -> dict[str, Any]:
    """A bundled model's ``model.json`` plus its card summary; CheckpointError when absent."""
    meta = bundled_dir(name) / "model.json"
    if not meta.is_file():
        if name:
            raise CheckpointError(f"no bundled model {name!r}; the bundled ones: default, "
                                  + ", ".join(_PREFIX + n for n in bundled_names()))
        raise CheckpointError("no bundled model in this installation: pass --model with a training output folder")
    try:
        info = read_description(meta)
    except CheckpointError:
        info = None
    fields = {"coarse", "fine", "switch_sigma"} if isinstance(info, dict) and info.get("format") == LEVEL_SPLIT_FORMAT \
        else {"model", "sigmas", "sha256"}
    if not isinstance(info, dict) or not fields <= set(info):
        raise CheckpointError(f"{meta} is damaged (not the model description it should be): reinstall medscore")
    return info


def bundled_label(folder: str | Path) -> str | None:
    """The name of the bundled prior in ``folder`` (its model.json's ``name``), or None if it is not bundled."""
    folder = Path(folder).resolve()
    for name in [None, *bundled_names()]:
        if folder == bundled_dir(name).resolve():
            return str(bundled_info(name).get("name") or (name if name else BUNDLED_NAME))
    return None


def _load_bundled(name: str | None, device: str | torch.device) -> LoadedModel:
    if is_level_split(bundled_dir(name)):
        return load_level_split(bundled_dir(name), device, load_prior)
    expected = bundled_info(name).get("sha256")
    if not expected:
        raise CheckpointError("a bundled model.json lacks its sha256: the installation is damaged")
    return load_model(bundled_dir(name), device=device, expected_sha256=expected)


def default_prior_name(complex_data: bool = False, raw_phase: bool = False) -> str | None:
    """The bundled prior used when no model is given (None: the default magnitude prior).

    Complex data take a prior installed as ``complex`` when there is one. Otherwise complex images solved with
    their scanner phase (``raw_phase``) take the channel-pair prior ``ncsn-complex`` (test slab, 1D 4x: 26.6
    against 23.0 dB for the magnitude prior on the raw real and imaginary parts, docs/model-card.md); nearly
    real ones keep the magnitude prior on the two parts. medscore's own k-space paths move the phase out first
    (coil maps, or a one-coil phase map for single coil: :func:`medscore.tasks.coil_phase.single_coil_phase_map`), so
    they ask for ``raw_phase=False``; ``raw_phase=True`` is for callers that solve a raw-phase image themselves.
    """
    for name, wanted in ((COMPLEX_PRIOR, complex_data), (RAW_PHASE_PRIOR, complex_data and raw_phase)):
        if wanted and (bundled_dir(name) / "model.json").is_file():
            return name
    return None


def check_model_arg(name: str, model: Any) -> None:
    """``None`` (the bundled prior), a path to a model, or an already loaded model."""
    if model is not None and not isinstance(model, (str, Path, LoadedModel)):
        raise InputError(f"{name} must be None (the bundled prior), a model folder/file path or a LoadedModel, "
                         f"got {type(model).__name__}")


def load_prior(model: str | Path | LoadedModel | None, device: str | torch.device = "cpu", *,
               complex_data: bool = False, raw_phase: bool = False, allow_unverified: bool = False) -> LoadedModel:
    """The score model to use (bundled ones SHA-256 checked against the hash the package ships).

    ``None`` -> the bundled prior :func:`default_prior_name` picks (the default magnitude prior unless the data
    are complex); ``"bundled:NAME"`` (a str, or a Path as the CLI passes it, unless such a file
    exists) -> that bundled prior; a path -> that model (a level split,
    :mod:`medscore.priors.split_folder`, when its model.json says so); a LoadedModel -> itself.
    A user's weights must match the SHA-256 their model.json records; ``allow_unverified`` accepts a model.json
    that records none (:func:`~medscore.priors.checkpoint.load_model`), for a model and a level split's members.
    """
    if isinstance(model, LoadedModel):
        return model
    if model is None:
        return _load_bundled(default_prior_name(complex_data, raw_phase), device)
    # the CLI's --model options are typed as paths: "bundled:NAME" arrives as Path("bundled:NAME")
    if str(model).startswith(_PREFIX) and not Path(model).exists():
        return _load_bundled(str(model)[len(_PREFIX):] or None, device)
    if is_level_split(model):
        return load_level_split(model, device, functools.partial(load_prior, allow_unverified=allow_unverified))
    return load_model(model, device=device, allow_unverified=allow_unverified)


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
    check_fields({"coarse": coarse, "fine": fine, "switch_sigma": switch_sigma}, target)
    if verify:
        from .store import load_prior

        members = [load_prior(member_ref(m, Path(out_dir)), "cpu") for m in (coarse, fine)]
        combine(members[0], members[1], float(switch_sigma), target)
    meta: dict[str, Any] = {"format": LEVEL_SPLIT_FORMAT, "format_version": 1, "coarse": coarse, "fine": fine,
                            "switch_sigma": float(switch_sigma)}
    meta.update({k: v for k, v in (("name", name), ("presets", presets), ("card", card)) if v is not None})
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out_dir) / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return Path(out_dir) / META
