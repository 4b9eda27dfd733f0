"""Exceptions users see as one clear line (the CLI turns them into a message and exit code 1).

Every message names the argument, option or file at fault. See ``docs/errors-and-limits.md``.
"""

from __future__ import annotations

__all__ = ["MedscoreError", "ConfigError", "InputError", "CheckpointError", "OutputError", "NonFiniteError"]


class MedscoreError(Exception):
    """Base class: a problem with the user's input, config or model, not a bug."""


class ConfigError(MedscoreError, ValueError):
    """A configuration file or option is invalid."""


class InputError(MedscoreError, ValueError):
    """A scan, mask, array or argument is missing, unreadable, out of range or has the wrong shape."""


class CheckpointError(MedscoreError, ValueError):
    """A model folder or weights file is missing, corrupt, inconsistent or too large."""


class OutputError(MedscoreError, OSError):
    """An output location cannot be written, or writing there would destroy existing results."""


class NonFiniteError(MedscoreError, FloatingPointError):
    """A computed result holds NaN or infinite values and is not written."""
