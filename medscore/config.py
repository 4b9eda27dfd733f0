"""Typed configuration: dataclasses filled from YAML (unknown keys are errors) and CLI overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

#: learning-rate schedules after warm-up (:func:`medscore.training.lr_schedule.learning_rate`)
SCHEDULES = ("constant", "cosine")

__all__ = ["ModelConfig", "NoiseConfig", "DataConfig", "TrainConfig", "load_config", "config_from_dict",
           "config_to_dict"]

T = TypeVar("T")


@dataclass
class ModelConfig:
    """Score network: ``ncsn`` (conditional instance norm++), ``ncsnv2`` (unconditional, output / sigma) or
    ``unet`` (MONAI's BasicUNet with conditional instance norm++, output / sigma; ~3x cheaper per evaluation)."""

    arch: Literal["ncsn", "ncsnv2", "unet"] = "ncsn"
    in_channels: int = 1
    ngf: int = 32
    conditioning: Literal["index", "continuous"] = "continuous"  # NCSN only
    scale_by_sigma: bool = True  # NCSN only; NCSNv2 always divides by sigma
    downsample3: bool = True
    pair_channels: bool = False  # complex prior scoring each channel with its partner (nets.RefineNetScore)

    def __post_init__(self) -> None:
        _need(_is_int(self.in_channels) and self.in_channels >= 1,
              f"model.in_channels must be >= 1, got {self.in_channels!r}")
        _need(not self.pair_channels or (self.in_channels == 2 and self.arch != "unet"),
              f"model.pair_channels needs in_channels 2 and arch ncsn or ncsnv2, got {self.in_channels}, {self.arch}")
        _need(_is_int(self.ngf) and self.ngf >= 4, f"model.ngf must be an integer >= 4, got {self.ngf!r}")


@dataclass
class NoiseConfig:
    """Geometric noise levels. ``"auto"`` applies NCSNv2's techniques 1 and 2 to the training images."""

    sigma_max: Union[float, str] = "auto"
    sigma_min: float = 0.01
    num_levels: Union[int, str] = "auto"
    max_levels: int = 500
    train_sigma_max: float | None = None  # train on the levels <= this only (a fine-level expert), None: all

    def __post_init__(self) -> None:
        for name in ("sigma_max", "num_levels"):
            if isinstance(getattr(self, name), str) and getattr(self, name) != "auto":
                raise ConfigError(f"noise.{name}: {getattr(self, name)!r} is neither a number nor 'auto'")
        if not 0 < self.sigma_min < math.inf or (self.sigma_max != "auto"
                                                  and not self.sigma_min < float(self.sigma_max) < math.inf):
            raise ConfigError(f"noise: need sigma_max > sigma_min > 0, got {self.sigma_max}, {self.sigma_min}")
        if (self.num_levels != "auto" and int(self.num_levels) < 2) or self.max_levels < 2:
            raise ConfigError(f"noise: need at least 2 levels, got num_levels={self.num_levels}, "
                              f"max_levels={self.max_levels}")
        if self.train_sigma_max is not None and not self.sigma_min <= float(self.train_sigma_max) < math.inf:
            raise ConfigError(f"noise.train_sigma_max must be a number >= sigma_min ({self.sigma_min}), "
                              f"got {self.train_sigma_max}")


@dataclass
class DataConfig:
    """Where scans come from and how 2D training images are made from them.

    ``path`` None means the embedded MNI152 brain MRI. ``spatial`` ``crop`` takes random
    ``image_size`` patches at native resolution (the model then runs fully convolutionally on scans of
    any size); ``resize`` pads each slice to a square and resizes it to ``image_size``.
    """

    path: str | None = None
    axis: int = 2
    planes: tuple[str, ...] = ("axial", "coronal", "sagittal")  # embedded data only
    image_size: int = 64
    spatial: Literal["crop", "resize"] = "crop"
    orientation: str = "RAS"
    percentiles: tuple[float, float] = (0.0, 99.5)
    foreground_threshold: float = 0.1
    min_foreground_fraction: float = 0.15
    augment: bool = True
    rotate_deg: float = 10.0
    zoom: tuple[float, float] = (0.8, 1.25)
    flip_prob: float = 0.5
    bias_field_prob: float = 0.3
    gamma_prob: float = 0.3
    contrast_prob: float = 0.5  # tissue-map contrast randomisation (embedded data only)
    phase: Literal["none", "random"] = "none"  # "random": complex (real, imag) images with simulated phase
    cache: bool = True
    # Scans mixed into the embedded brain (``path`` None): sliced in every plane of ``planes``, plus ``oblique``
    # copies of each turned by up to ``oblique_deg`` about all three axes (1 mm voxels expected).
    extra: str | None = None
    oblique: int = 0
    oblique_deg: float = 25.0
    # Real-scan augmentations (off when None): pixel size drawn in ``pixel_mm`` per axis (blur + resample),
    # Rician noise at an SNR drawn in ``snr`` (signal = the 99.5th percentile).
    pixel_mm: tuple[float, float] | None = None
    pixel_prob: float = 0.5
    snr: tuple[float, float] | None = None
    noise_prob: float = 0.5

    def __post_init__(self) -> None:
        from .checks import MIN_SLICE

        _need(_is_int(self.image_size) and self.image_size >= MIN_SLICE,
              f"data.image_size must be an integer >= {MIN_SLICE}, got {self.image_size!r}")
        _need(self.axis in (0, 1, 2), f"data.axis must be 0, 1 or 2, got {self.axis!r}")
        pct = tuple(self.percentiles)
        _need(len(pct) == 2 and all(_is_num(p) for p in pct) and 0 <= pct[0] < pct[1] <= 100,
              f"data.percentiles must be [lower, upper] with 0 <= lower < upper <= 100, got {list(pct)}")
        zoom = tuple(self.zoom)
        _need(len(zoom) == 2 and all(_is_num(z) for z in zoom) and 0 < zoom[0] <= zoom[1],
              f"data.zoom must be [min, max] with 0 < min <= max, got {list(zoom)}")
        for name, rng in (("pixel_mm", (0.1, 10.0)), ("snr", (1.0, 1e4))):
            v = getattr(self, name)
            _need(v is None or (len(v) == 2 and all(_is_num(x) for x in v) and rng[0] <= v[0] <= v[1] <= rng[1]),
                  f"data.{name} must be [min, max] with {rng[0]:g} <= min <= max <= {rng[1]:g}, got {v!r}")
        _need(_is_int(self.oblique) and 0 <= self.oblique <= 64, f"data.oblique must be 0..64, got {self.oblique!r}")
        _need(_is_num(self.oblique_deg) and 0 <= self.oblique_deg <= 90,
              f"data.oblique_deg must be in [0, 90], got {self.oblique_deg!r}")
        for name in ("flip_prob", "bias_field_prob", "gamma_prob", "contrast_prob", "foreground_threshold",
                     "min_foreground_fraction", "pixel_prob", "noise_prob"):
            v = getattr(self, name)
            _need(_is_num(v) and 0 <= v <= 1, f"data.{name} must be in [0, 1], got {v!r}")


@dataclass
class TrainConfig:
    """Everything ``medscore train`` needs; saved next to the weights."""

    modality: str = "mri"
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-4
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # after warm-up: "constant" or "cosine" (down to lr_final at the last step)
    lr_final: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA only
    num_workers: int = 1  # DataLoader processes preparing (augmenting) the next batches
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: bool = False  # also keep an EMA snapshot per checkpoint under checkpoints/
    sample_every: int = 500
    num_samples: int = 8  # preview images: 8 x 100 levels x 3 steps cost ~1.5 min at 64 px on 2 CPU cores
    sample_levels: int = 100  # preview chains (3 steps each): 30 levels diverged from sigma_max 53 (docs/training.md)
    sample_steps_each: int = 3
    val_images: int = 32
    init_from: str | None = None  # a model folder, "bundled" or "bundled:NAME": its weights start a new run

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "sample_every", "sample_levels",
                     "sample_steps_each"):
            v = getattr(self, name)
            _need(_is_int(v) and v >= 1, f"{name} must be an integer >= 1, got {v!r}")
        for name in ("warmup_steps", "seed", "num_workers", "num_samples", "val_images"):
            v = getattr(self, name)
            _need(_is_int(v) and v >= 0, f"{name} must be an integer >= 0, got {v!r}")
        for name in ("lr", "grad_clip"):
            v = getattr(self, name)
            _need(_is_num(v) and 0 < v < math.inf, f"{name} must be a finite number > 0, got {v!r}")
        _need(self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {list(SCHEDULES)}, got {self.lr_schedule!r}")
        _need(_is_num(self.lr_final) and 0 <= self.lr_final <= self.lr,
              f"lr_final must be a number in [0, lr], got {self.lr_final!r}")
        _need(_is_num(self.ema_decay) and 0 <= self.ema_decay < 1,
              f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        model, data = self.model, self.data
        if isinstance(model, ModelConfig) and isinstance(data, DataConfig) and data.phase == "random":
            _need(model.in_channels == 2, "data.phase 'random' makes 2-channel (real, imaginary) images, but "
                  f"model.in_channels is {model.in_channels}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return config_from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = get_args(tp)[0]
        return tuple(_coerce(inner, v, where) for v in value)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {get_args(tp)}")
        return value
    if origin is Union or origin is types.UnionType:  # Optional[X] and X | None (PEP 604)
        for arg in get_args(tp):
            if arg is type(None) and value is None:
                return None
            if get_origin(arg) is tuple and isinstance(value, (list, tuple)):
                return _coerce(arg, value, where)
            if arg in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
                if arg is int and not float(value).is_integer():
                    continue
                return arg(value)
            if arg is str and isinstance(value, str):
                return value
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, bool, str) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-safe nested dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def load_config(path: str | Path, cls: type[T] = TrainConfig) -> T:  # type: ignore[assignment]
    """Read a YAML file into ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config_from_dict(cls, data, where=path.name)


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` that ignores ``None`` values (unset CLI options)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]
