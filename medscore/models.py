"""Finding a score model: a user's training folder or weights file, or the prior bundled with medscore.

The bundled prior's weights ship inside the package and are checked against their SHA-256 at load.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .checkpoint import LoadedModel, load_model
from .config import ModelConfig
from .errors import CheckpointError
from .level_split import LEVEL_SPLIT_FORMAT, is_level_split, load_level_split

__all__ = ["BUNDLED_NAME", "COMPLEX_PRIOR", "RAW_PHASE_PRIOR", "default_prior_name", "bundled_dir", "bundled_info", "bundled_label", "bundled_names",
           "load_prior", "estimate_parameters"]

BUNDLED_NAME = "mri-brain-ncsn-split"
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
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
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
    (coil maps, or a one-coil phase map for single coil: :func:`medscore.coilmaps.single_coil_phase_map`), so
    they ask for ``raw_phase=False``; ``raw_phase=True`` is for callers that solve a raw-phase image themselves.
    """
    for name, wanted in ((COMPLEX_PRIOR, complex_data), (RAW_PHASE_PRIOR, complex_data and raw_phase)):
        if wanted and (bundled_dir(name) / "model.json").is_file():
            return name
    return None


def load_prior(model: str | Path | LoadedModel | None, device: str | torch.device = "cpu", *,
               complex_data: bool = False, raw_phase: bool = False) -> LoadedModel:
    """The score model to use (bundled ones SHA-256 checked).

    ``None`` -> the bundled prior :func:`default_prior_name` picks (the default magnitude prior unless the data
    are complex); ``"bundled:NAME"`` (a str, or a Path as the CLI passes it, unless such a file
    exists) -> that bundled prior; a path -> that model (a level split,
    :mod:`medscore.level_split`, when its model.json says so); a LoadedModel -> itself.
    """
    if isinstance(model, LoadedModel):
        return model
    if model is None:
        return _load_bundled(default_prior_name(complex_data, raw_phase), device)
    # the CLI's --model options are typed as paths: "bundled:NAME" arrives as Path("bundled:NAME")
    if str(model).startswith(_PREFIX) and not Path(model).exists():
        return _load_bundled(str(model)[len(_PREFIX):] or None, device)
    if is_level_split(model):
        return load_level_split(model, device, load_prior)
    return load_model(model, device=device)


@lru_cache(maxsize=64)
def _quadratic(arch: str, in_channels: int, conditioning: str, scale: bool, down3: bool,
               levels: int, pair: bool = False) -> tuple[int, ...]:
    """Parameter counts at ngf = 4, 8, 12 (every layer's size is a polynomial of degree 2 in ngf)."""
    from .nets import build_model, count_parameters

    sigmas = torch.logspace(0, -2, levels)
    cfgs = (ModelConfig(arch=arch, in_channels=in_channels, ngf=n, conditioning=conditioning,  # type: ignore[arg-type]
                        scale_by_sigma=scale, downsample3=down3, pair_channels=pair) for n in (4, 8, 12))
    return tuple(count_parameters(build_model(c, sigmas)) for c in cfgs)


def estimate_parameters(cfg: ModelConfig, levels: int) -> int:
    """Exact parameter count of ``build_model(cfg, <levels sigmas>)`` without building it at full width:
    three tiny networks fix the quadratic in ``ngf``."""
    p4, p8, p12 = _quadratic(cfg.arch, cfg.in_channels, cfg.conditioning, cfg.scale_by_sigma, cfg.downsample3, levels,
                             cfg.pair_channels)
    a = (p12 - 2 * p8 + p4) / 32  # second difference with step 4: p12 - 2 p8 + p4 = 32 a
    b = (p8 - p4) / 4 - 12 * a
    c = p4 - 16 * a - 4 * b
    n = cfg.ngf
    return int(round(a * n * n + b * n + c))
