"""The prior store: model folders (safetensors weights + ``model.json``), the bundled priors, level-split priors,
and the checks a model description passes before any network is built."""

from __future__ import annotations

from .checkpoint import LoadedModel, load_model, save_model
from .store import bundled_dir, bundled_info, bundled_names, load_prior

__all__ = ["LoadedModel", "load_model", "save_model", "load_prior", "bundled_dir", "bundled_info", "bundled_names"]
