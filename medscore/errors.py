"""Exceptions users see as one clear line (the CLI turns them into a message and exit code 1)."""

from __future__ import annotations

__all__ = ["MedscoreError", "ConfigError", "InputError", "CheckpointError"]


class MedscoreError(Exception):
    """Base class: a problem with the user's input, config or model, not a bug."""


class ConfigError(MedscoreError, ValueError):
    """A configuration file or option is invalid."""


class InputError(MedscoreError, ValueError):
    """A scan, mask or data path is missing, unreadable or has the wrong shape."""


class CheckpointError(MedscoreError, ValueError):
    """A model folder or weights file is missing, corrupt or inconsistent."""
