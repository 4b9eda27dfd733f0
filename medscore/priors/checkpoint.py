"""Model files: weights in safetensors, everything needed to rebuild the model in JSON.

A training output folder holds
``model.safetensors`` (EMA weights, used for sampling), ``model_raw.safetensors`` (raw weights),
``model.json`` (model config, sigmas, image size, modality, intensity-scaling rule, training step,
the full training config) and ``resume.pt`` (optimizer and EMA state; tensors and numbers only,
read back with ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import TrainConfig, config_to_dict
from ..errors import CheckpointError
from ..io.atomic import atomic_path
from .checks import check_adaptation, check_meta, check_presets, read_description
from ..nets import ScoreNetwork, build_model
from ..nets.accelerate import inference_layout

__all__ = ["LoadedModel", "save_model", "load_model", "save_resume", "load_resume", "resolve_model_path", "sha256",
           "attach_presets", "attach_adaptation", "read_weights", "verify_weights", "trained_with_flips"]

FORMAT = "medscore-score-model"
WEIGHTS, RAW_WEIGHTS, META, RESUME = "model.safetensors", "model_raw.safetensors", "model.json", "resume.pt"
_HASH_KEYS = {WEIGHTS: "sha256", RAW_WEIGHTS: "sha256_raw"}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass
class LoadedModel:
    """A score network with what is needed to use it on scans."""

    model: ScoreNetwork
    meta: dict[str, Any]
    path: Path

    @property
    def sigmas(self) -> torch.Tensor:
        return self.model.sigmas

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def percentiles(self) -> tuple[float, float]:
        lo, hi = self.meta["intensity"]["percentiles"]
        return float(lo), float(hi)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(out_dir: str | Path, model: nn.Module, ema: nn.Module, cfg: TrainConfig, step: int,
               extra: dict[str, Any] | None = None) -> Path:
    """Write weights (EMA and raw) and ``model.json`` atomically; returns the EMA weights path.

    ``model.json`` records the SHA-256 of both weights files (``sha256``, ``sha256_raw``); they are
    verified at load, so altered weights are refused.
    """
    out_dir = Path(out_dir)
    meta = {
        "format": FORMAT,
        "format_version": 1,
        "model": config_to_dict(cfg.model),
        "sigmas": [float(s) for s in model.sigmas],  # type: ignore[attr-defined]
        "image_size": cfg.data.image_size,
        "spatial": cfg.data.spatial,
        "modality": cfg.modality,
        "intensity": {"rule": "percentile", "percentiles": list(cfg.data.percentiles)},
        "step": step,
        "train_config": config_to_dict(cfg),
        **(extra or {}),
    }
    for name, net, key in ((WEIGHTS, ema, "sha256"), (RAW_WEIGHTS, model, "sha256_raw")):
        with atomic_path(out_dir / name) as tmp:
            save_file(_state(net), str(tmp), metadata={"format": FORMAT})
            meta[key] = sha256(tmp)
    with atomic_path(out_dir / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return out_dir / WEIGHTS


def resolve_model_path(path: str | Path) -> tuple[Path, Path]:
    """``(weights, json)`` for a training output folder, its weights file or its JSON file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model not found: {path}")
    if path.is_dir():
        weights, meta = path / WEIGHTS, path / META
    elif path.suffix == ".safetensors":
        weights, meta = path, path.parent / META
    elif path.suffix == ".json":
        weights, meta = path.parent / WEIGHTS, path
    else:
        raise CheckpointError(f"--model must be a training output folder or a .safetensors file, got {path}")
    for p in (weights, meta):
        if not p.is_file():
            raise CheckpointError(f"model file not found: {p}")
    return weights, meta


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(path: str | Path, device: str | torch.device = "cpu", expected_sha256: str | None = None, *,
               allow_unverified: bool = False) -> LoadedModel:
    """Rebuild a score network from its folder or weights file (no pickle involved).

    ``model.json`` is read with its size and nesting caps and checked (config, noise levels, image size, intensity
    rule, parameter cap, presets table) before the network is built. The weights file, whatever its name, must
    match a SHA-256 that ``model.json`` records (``sha256`` / ``sha256_raw``) and ``expected_sha256`` when given;
    a ``model.json`` that records none is refused unless ``allow_unverified`` (the user's explicit opt-in for a
    model saved before hashes were recorded). Every tensor must be finite and the noise levels those listed.
    """
    weights, meta_path = resolve_model_path(path)
    meta = read_description(meta_path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a medscore model description (format {meta.get('format')!r})")
    cfg, sigmas = check_meta(meta, meta_path)
    presets = check_presets(meta.get("presets"), meta_path)
    state = read_weights(weights, meta, expected_sha256=expected_sha256, allow_unverified=allow_unverified)
    try:
        model = build_model(cfg, torch.tensor(sigmas, dtype=torch.float32))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise _unloadable(weights, exc) from None
    if presets is not None:
        model.presets = presets  # type: ignore[assignment]
    attach_adaptation(model, meta.get("adaptation"), meta_path)
    model.flip_invariant = trained_with_flips(meta)  # type: ignore[assignment]
    return LoadedModel(inference_layout(model.to(device).eval()), meta, weights)


def _unloadable(weights: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{weights}: cannot load weights ({exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0][:160] if str(exc) else ''})")


def read_weights(weights: Path, meta: dict[str, Any], *, expected_sha256: str | None = None,
                 allow_unverified: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` once checked against ``meta`` (its ``model.json``, already checked): the SHA-256
    (:func:`verify_weights`), every tensor finite, and the noise levels it carries equal to ``meta['sigmas']``."""
    verify_weights(weights, meta, expected_sha256, allow_unverified)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise _unloadable(weights, exc) from None
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(f"{weights}: the model's weights hold NaN/inf: {bad[0]}{more}; the file is damaged "
                              "(restore it or retrain)")
    levels = state.get("sigmas")
    listed = torch.tensor(meta["sigmas"], dtype=torch.float64)
    if levels is not None and (levels.shape != listed.shape or not torch.allclose(levels.double(), listed, rtol=1e-5)):
        raise CheckpointError(f"{weights}: its noise levels differ from the 'sigmas' that {META} lists; the "
                              "description does not belong to these weights")
    return state


def attach_presets(model: nn.Module, table: Any, where: Path) -> None:
    """Tuned sampler presets saved with the weights (``medscore tune``) travel on the module as ``.presets``,
    where the solvers look for them; a malformed table is refused here, before any compute
    (:func:`~medscore.priors.checks.check_presets`)."""
    if check_presets(table, where) is not None:
        model.presets = table  # type: ignore[assignment]


def attach_adaptation(model: nn.Module, table: Any, where: Path) -> None:
    """The model's tuned test-time adaptation settings (``adaptation`` of its ``model.json``), checked, travel on
    the module as ``.adaptation``, where ``Adaptation.of(True, model)`` finds them."""
    if check_adaptation(table, where) is not None:
        model.adaptation = table  # type: ignore[assignment]


def trained_with_flips(meta: dict[str, Any]) -> bool:
    """Whether the model was trained with random left-right and up-down flips (``data.flip_prob`` > 0 in its
    training config; configs that do not say used the default, 0.5): its score is then flip-equivariant and
    the samplers' flip ensemble may use it."""
    data = (meta.get("train_config") or {}).get("data") or {}
    return float(data.get("flip_prob", 0.5)) > 0


def verify_weights(weights: Path, meta: dict[str, Any], expected: str | None = None,
                   allow_unverified: bool = False) -> None:
    """Hash ``weights`` once and compare it with ``expected`` and with what ``model.json`` records: the file's own
    key (``sha256`` for model.safetensors, ``sha256_raw`` for model_raw.safetensors) when recorded, else either
    recorded hash (a weights file under another name). Nothing to compare with: refused unless ``allow_unverified``."""
    recorded = {}
    for key in ("sha256", "sha256_raw"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) and _HEX64.fullmatch(value)):
            raise CheckpointError(f"{weights.parent / META}: {key!r} must be a SHA-256 of 64 hex digits, got "
                                  f"{str(value)[:80]!r}")
        if value is not None:
            recorded[key] = value.lower()
    own = _HASH_KEYS.get(weights.name)
    keys = [own] if own in recorded else list(recorded)
    if expected is None and not keys:
        if allow_unverified:
            return
        raise CheckpointError(f"{weights}: {META} records no SHA-256 (sha256 / sha256_raw), so the weights cannot "
                              "be verified; re-save the model with medscore's save_model (it records the hashes), or "
                              "load it with allow_unverified=True if you trust the file")
    actual = sha256(weights)
    if expected is not None and actual != expected.lower():
        raise CheckpointError(f"{weights}: SHA-256 does not match the expected value; the file is corrupt or replaced")
    if keys and actual not in (recorded[k] for k in keys):
        raise CheckpointError(f"{weights}: SHA-256 differs from the one {META} records ({' / '.join(keys)}); "
                              "the weights were altered or replaced")


def save_resume(out_dir: str | Path, state: dict[str, Any]) -> None:
    """Optimizer/EMA state and step, atomically."""
    with atomic_path(Path(out_dir) / RESUME) as tmp:
        torch.save(state, tmp)


def load_resume(out_dir: str | Path) -> dict[str, Any]:
    """Read ``resume.pt`` with ``weights_only=True`` (never unpickle arbitrary objects)."""
    path = Path(out_dir) / RESUME
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, ...
        raise CheckpointError(f"cannot resume: {path} is unreadable ({exc.__class__.__name__})") from None
