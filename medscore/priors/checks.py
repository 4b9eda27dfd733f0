"""Checks of model descriptions and model arguments, made before any network is built.

``model.json`` is data from the user's disk. :func:`read_description` is the one reader of every ``model.json``
medscore opens (model folders, level splits, bundled priors, bundles): a size cap and a nesting cap before it is
parsed. :func:`check_meta` validates its config, noise levels, image size and intensity rule, and refuses a network
above :data:`~medscore.checks.MAX_PARAMETERS` from its config alone (:func:`estimate_parameters`, three tiny
networks instead of the full one). :func:`check_presets` validates a ``presets`` table field by field, per-task
overrides and first passes included.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import MAX_LEVELS, MAX_PARAMETERS, MIN_SLICE, check_int, check_positive
from ..config import ModelConfig, config_from_dict
from ..errors import CheckpointError, ConfigError, InputError

__all__ = ["read_description", "check_meta", "check_presets", "check_adaptation", "ADAPTATION_FIELDS",
           "estimate_parameters", "MAX_DESCRIPTION_BYTES",
           "MAX_NESTING", "MAX_SAMPLES", "MAX_STEPS"]

MAX_DESCRIPTION_BYTES = 1 << 20  # largest model.json read (the bundled ones are below 16 KiB)
MAX_NESTING = 32  # deepest nesting of arrays and objects in a model.json (the bundled ones: 5)
MAX_SAMPLES = 1000  # most posterior samples a preset of a model.json may average
MAX_STEPS = 1000  # most Langevin / corrector steps per level a preset of a model.json may take
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _nesting(raw: bytes) -> int:
    """Deepest nesting of ``[`` and ``{`` outside JSON strings, counted without parsing."""
    code = np.frombuffer(_STRING.sub(b'""', raw), dtype=np.uint8)
    step = np.isin(code, (91, 123)).astype(np.int64) - np.isin(code, (93, 125))
    return int(np.cumsum(step).max(initial=0))


def read_description(path: str | Path) -> dict[str, Any]:
    """A ``model.json`` as a dict: at most :data:`MAX_DESCRIPTION_BYTES` and :data:`MAX_NESTING` levels deep,
    both checked before it is parsed; CheckpointError naming the file otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DESCRIPTION_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if len(raw) > MAX_DESCRIPTION_BYTES:
        raise CheckpointError(f"{path}: larger than the {MAX_DESCRIPTION_BYTES >> 10} KiB a model description may "
                              "take; not a medscore model.json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not valid JSON (not UTF-8 text)") from None
    depth = _nesting(raw)
    if depth > MAX_NESTING:
        raise CheckpointError(f"{path}: nested {depth} levels deep, above the {MAX_NESTING} levels a model "
                              "description may take")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, and too many digits in an integer, are ValueErrors
        raise CheckpointError(f"{path}: not valid JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a model description (a JSON object), got a {type(meta).__name__}")
    return meta


def _meta_field(meta: dict[str, Any], key: str, where: str) -> Any:
    if key not in meta:
        raise CheckpointError(f"{where}: the model description lacks '{key}'")
    return meta[key]


def _check_levels(sigmas: Any, where: str) -> list[float]:
    ok = isinstance(sigmas, list) and 1 <= len(sigmas) <= MAX_LEVELS and all(
        isinstance(s, (int, float)) and not isinstance(s, bool) for s in sigmas)
    if not ok:
        raise CheckpointError(f"{where}: 'sigmas' must be a list of 1 to {MAX_LEVELS} numbers")
    arr = np.asarray(sigmas, dtype=np.float64)
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise CheckpointError(f"{where}: 'sigmas' must be finite and > 0 (found NaN, inf or <= 0)")
    return [float(s) for s in sigmas]


def _check_intensity(intensity: Any, where: str) -> None:
    pct = intensity.get("percentiles") if isinstance(intensity, dict) else None
    if not isinstance(pct, list) or len(pct) != 2 or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                                                             for p in pct):
        raise CheckpointError(f"{where}: 'intensity' must hold 'percentiles': [lower, upper]")
    lo, hi = (float(p) for p in pct)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= 100.0):
        raise CheckpointError(f"{where}: intensity percentiles must satisfy 0 <= lower < upper <= 100, got {pct}")
    if intensity.get("rule", "percentile") != "percentile":
        raise CheckpointError(f"{where}: unknown intensity rule {intensity.get('rule')!r} (expected 'percentile')")


def check_meta(meta: dict[str, Any], where: str | Any) -> tuple[Any, list[float]]:
    """Check a ``model.json`` before any network is built: ``(ModelConfig, sigmas)`` or CheckpointError.

    The parameter count is estimated from the config and refused above ``MAX_PARAMETERS``.
    """
    where = str(where)
    try:
        cfg = config_from_dict(ModelConfig, _meta_field(meta, "model", where), where=f"{where}: model")
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(str(exc).splitlines()[0] if str(exc) else f"{where}: bad 'model'") from None
    if not 1 <= cfg.in_channels <= 64 or cfg.ngf < 4:
        raise CheckpointError(f"{where}: model needs 1 <= in_channels <= 64 and ngf >= 4, got "
                              f"{cfg.in_channels}, {cfg.ngf}")
    sigmas = _check_levels(_meta_field(meta, "sigmas", where), where)
    size = _meta_field(meta, "image_size", where)
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SLICE:
        raise CheckpointError(f"{where}: 'image_size' must be an integer >= {MIN_SLICE}, got {size!r}")
    _check_intensity(_meta_field(meta, "intensity", where), where)
    n = estimate_parameters(cfg, len(sigmas))
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: the model would have {n / 1e6:.0f} M parameters, above the "
                              f"{MAX_PARAMETERS // 1_000_000} M limit (ngf={cfg.ngf}); refusing to build it")
    return cfg, sigmas


@lru_cache(maxsize=64)
def _quadratic(arch: str, in_channels: int, conditioning: str, scale: bool, down3: bool,
               levels: int, pair: bool = False) -> tuple[int, ...]:
    """Parameter counts at ngf = 4, 8, 12 (every layer's size is a polynomial of degree 2 in ngf)."""
    from ..nets import build_model, count_parameters

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


_PRESET_FIELDS = ("sampler", "num_levels", "settings", "samples", "sigma_start", "sigma_end", "prepass")
_ALLOWED = {"preset": {*_PRESET_FIELDS, "tasks", "note"}, "task": set(_PRESET_FIELDS), "prepass": set(_PRESET_FIELDS)}
_COUNTS = {"num_levels": (1, MAX_LEVELS), "samples": (1, MAX_SAMPLES), "n_steps_each": (1, MAX_STEPS),
           "n_corrector": (0, MAX_STEPS)}
_POSITIVE = ("sigma_start", "sigma_end", "eps", "multiplier", "snr")
_UNIT = {"eta": "]", "renoise": "]", "momentum": ")"}  # in [0, 1] or [0, 1)
_SWITCHES = ("flips", "transposes", "denoise_last")


def _check_value(where: str, name: str, key: str, value: Any) -> None:
    """One preset field or sampler setting ``key`` (``name``: its path in the table) in its range; None = unset."""
    if value is None and key != "samples":
        return
    try:
        if key in _COUNTS:
            check_int(name, value, *_COUNTS[key])
        elif key in _POSITIVE:
            check_positive(name, value)
        elif key in _UNIT:
            v = check_positive(name, value, allow_zero=True)
            if v > 1 or (_UNIT[key] == ")" and v == 1):
                raise InputError(f"{name} must be in [0, 1{_UNIT[key]}, got {value!r}")
        elif key in _SWITCHES and not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, got {value!r}")
    except InputError as exc:  # the value as the user wrote it, cut short: a model.json may hold long ones
        msg = str(exc)
        raise CheckpointError(f"{where}: {msg if len(msg) <= 300 else msg[:300] + '...'}") from None


def _check_entry(entry: Any, name: str, where: str, kind: str = "preset") -> None:
    """A preset (``kind`` ``preset``), a per-task override (``task``) or a first pass (``prepass``), as data."""
    from ..sampling import SAMPLERS

    if not isinstance(entry, dict):
        raise CheckpointError(f"{where}: {name} must be an object of preset fields, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ALLOWED[kind])
    missing = [k for k in ("sampler", "num_levels") if k not in entry] if kind == "preset" else []
    if unknown or missing:
        raise CheckpointError(f"{where}: {name} " + (f"has unknown fields {unknown}" if unknown else
                                                      f"lacks {missing[0]!r}"))
    for key, value in entry.items():
        path = f"{name}.{key}"
        if key == "sampler" and (not isinstance(value, str) or value not in SAMPLERS):
            raise CheckpointError(f"{where}: {path} must be one of {', '.join(sorted(SAMPLERS))}, got {value!r}")
        if key == "note" and not isinstance(value, str):
            raise CheckpointError(f"{where}: {path} must be a string")
        if key in ("settings", "tasks"):
            if not isinstance(value, dict):
                raise CheckpointError(f"{where}: {path} must be an object, got {type(value).__name__}")
            for sub, item in value.items():
                if key == "tasks":
                    _check_entry(item, f"{path}.{sub}", where, "task")
                else:
                    _check_value(where, f"{path}.{sub}", sub, item)
        elif key == "prepass":
            _check_entry(value, path, where, "prepass")
        else:
            _check_value(where, path, key, value)


def _check_samplers(table: dict[str, Any], where: str) -> None:
    """Every pass of every preset and task override builds its sampler (settings the sampler has)."""
    from ..sampling import preset_table

    try:
        presets = preset_table(table)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid presets table: {str(exc).splitlines()[0]}") from None
    for name in table:
        for task in (None, *presets[name].tasks):
            label = f"presets.{name}" + (f".tasks.{task}" if task else "")
            run = presets[name].for_task(task)
            while run is not None:
                try:
                    run.build()
                except (TypeError, ValueError) as exc:
                    raise CheckpointError(f"{where}: {label}: {str(exc).splitlines()[0]}") from None
                run, label = run.first_pass(), label + ".prepass"


#: the fields of a ``model.json`` ``adaptation`` entry (``medscore.solvers.adapt.Adaptation``) and their types
ADAPTATION_FIELDS: dict[str, tuple[type, ...]] = {"lr": (int, float), "steps": (int,), "anchor": (int, float),
                                                  "min_sigma": (int, float), "parameters": (str,),
                                                  "renoise": (bool,), "seed": (int,), "denoise_steps": (int,),
                                                  "denoise_lr": (int, float)}


def check_adaptation(table: Any, where: str | Any) -> dict[str, Any] | None:
    """A ``model.json`` ``adaptation`` entry (the model's tuned test-time adaptation settings; None: none), checked
    as data: known fields of the right types, finite non-negative numbers. The solver checks the values' ranges
    when it builds the settings. Returns the entry; CheckpointError naming the field."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise CheckpointError(f"{where}: 'adaptation' must be an object, got {type(table).__name__}")
    for key, value in table.items():
        kinds = ADAPTATION_FIELDS.get(key)
        if kinds is None:
            raise CheckpointError(f"{where}: adaptation.{key} is not a setting; known: {', '.join(ADAPTATION_FIELDS)}")
        numeric = bool not in kinds and isinstance(value, bool)
        if numeric or not isinstance(value, kinds) or (
                isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                    math.isfinite(value) and value >= 0)):
            raise CheckpointError(f"{where}: adaptation.{key} must be a finite, non-negative "
                                  f"{kinds[-1].__name__}, got {value!r}")
    return table


def check_presets(table: Any, where: str | Any) -> dict[str, Any] | None:
    """A ``model.json`` ``presets`` table (None: none), checked as data before any compute: known fields, a known
    sampler, integer counts in range (levels up to ``MAX_LEVELS``, samples up to ``MAX_SAMPLES``), finite step
    sizes and noise levels, ``eta`` / ``renoise`` in [0, 1] and ``momentum`` in [0, 1), in every per-task override
    and first pass; then every pass builds its sampler. Returns the table; CheckpointError naming the field."""
    if table is None:
        return None
    where = str(where)
    if not isinstance(table, dict):
        raise CheckpointError(f"{where}: 'presets' must be an object of presets by name, got {type(table).__name__}")
    for name, entry in table.items():
        _check_entry(entry, f"presets.{name}", where)
    _check_samplers(table, where)
    return table
