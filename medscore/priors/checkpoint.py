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
from .checks import check_meta
from ..nets import ScoreNetwork, build_model
from ..nets.accelerate import inference_layout

__all__ = ["LoadedModel", "save_model", "load_model", "save_resume", "load_resume", "resolve_model_path", "sha256",
           "attach_presets"]

FORMAT = "medscore-score-model"
WEIGHTS, RAW_WEIGHTS, META, RESUME = "model.safetensors", "model_raw.safetensors", "model.json", "resume.pt"


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


def load_model(path: str | Path, device: str | torch.device = "cpu", expected_sha256: str | None = None) -> LoadedModel:
    """Rebuild a score network from its folder or weights file (no pickle involved).

    ``model.json`` is checked (config, noise levels, image size, intensity rule, size cap) before the
    network is built, and the weights against the SHA-256 it records (and ``expected_sha256``).
    """
    weights, meta_path = resolve_model_path(path)
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{meta_path}: not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{meta_path}: not a medscore model description (format {fmt!r})")
    cfg, sigmas = check_meta(meta, meta_path)
    _verify_sha256(weights, meta, expected_sha256)
    try:
        model = build_model(cfg, torch.tensor(sigmas, dtype=torch.float32))
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: cannot load weights ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0][:160]})") from None
    attach_presets(model, meta.get("presets"), meta_path)
    model.flip_invariant = trained_with_flips(meta)  # type: ignore[assignment]
    return LoadedModel(inference_layout(model.to(device).eval()), meta, weights)


def attach_presets(model: nn.Module, table: Any, where: Path) -> None:
    """Tuned sampler presets saved with the weights (``medscore tune``) travel on the module as ``.presets``,
    where the solvers look for them; a malformed table is refused here, before any compute."""
    if table is None:
        return
    from ..sampling import preset_table

    try:
        preset_table(table)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{where}: invalid presets table: {exc}") from None
    model.presets = table  # type: ignore[assignment]


def trained_with_flips(meta: dict[str, Any]) -> bool:
    """Whether the model was trained with random left-right and up-down flips (``data.flip_prob`` > 0 in its
    training config; configs that do not say used the default, 0.5): its score is then flip-equivariant and
    the samplers' flip ensemble may use it."""
    data = (meta.get("train_config") or {}).get("data") or {}
    return float(data.get("flip_prob", 0.5)) > 0


def _verify_sha256(weights: Path, meta: dict[str, Any], expected: str | None) -> None:
    """Hash ``weights`` once and compare it with ``expected`` and the value ``model.json`` records."""
    key = {WEIGHTS: "sha256", RAW_WEIGHTS: "sha256_raw"}.get(weights.name)
    recorded = meta.get(key) if key else None
    if expected is None and recorded is None:
        return
    actual = sha256(weights)
    if expected is not None and actual != expected:
        raise CheckpointError(f"{weights}: SHA-256 does not match the expected value; the file is corrupt or replaced")
    if recorded is not None and actual != recorded:
        raise CheckpointError(f"{weights}: SHA-256 differs from the one model.json records ({key}); "
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
