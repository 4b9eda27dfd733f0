"""Finding a score model: a user's training folder or weights file, or the prior bundled with medscore.

The bundled prior's weights ship inside the package and are checked against their SHA-256 at load.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .checkpoint import LoadedModel, load_model
from .errors import CheckpointError

__all__ = ["BUNDLED_NAME", "bundled_dir", "bundled_info", "load_prior"]

BUNDLED_NAME = "mri-brain-ncsn"


def bundled_dir() -> Path:
    """Folder of the bundled prior inside the installed package."""
    return Path(str(resources.files("medscore") / "pretrained"))


def bundled_info() -> dict[str, Any]:
    """The bundled model's ``model.json`` plus its card summary; CheckpointError when absent."""
    meta = bundled_dir() / "model.json"
    if not meta.is_file():
        raise CheckpointError("no bundled model in this installation: pass --model with a training output folder")
    return json.loads(meta.read_text())


def load_prior(model: str | Path | LoadedModel | None, device: str | torch.device = "cpu") -> LoadedModel:
    """``None`` -> the bundled prior (SHA-256 checked); a path -> that model; a LoadedModel -> itself."""
    if isinstance(model, LoadedModel):
        return model
    if model is None:
        info = bundled_info()
        expected = info.get("sha256")
        if not expected:
            raise CheckpointError("the bundled model.json lacks its sha256: the installation is damaged")
        return load_model(bundled_dir(), device=device, expected_sha256=expected)
    return load_model(model, device=device)
