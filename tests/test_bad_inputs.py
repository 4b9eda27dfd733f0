"""Catalogue of bad inputs (issue 9): each gets one clear line, before any model runs, and writes nothing.

CLI cases: exit code != 0, exactly one ``error:`` line naming the culprit, no traceback, no file in the
output folder, the inputs unchanged. API cases: the MedscoreError subclass and a one-line message naming
the argument. The score network's ``forward`` is replaced by a tripwire, so a case whose input is not
caught before the solve fails instead of running a reconstruction.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from _synth import (QUIET_MONAI, bad_cli_case, file_snapshot, phantom, stop_score_networks, write_dicom_series,
                    write_nifti)
from medscore import api
from medscore.priors.checkpoint import load_model, save_model, sha256
from medscore.config import DataConfig, ModelConfig, NoiseConfig, TrainConfig
from medscore.training.dataset import find_scans
from medscore.errors import CheckpointError, ConfigError, InputError, NonFiniteError, OutputError
from medscore.nets import build_model
from medscore.training.noise import geometric_sigmas
from medscore.physics import make_mask
from medscore.io.scans import load_scan, save_like
from medscore.training.loop import train

pytestmark = QUIET_MONAI
S = 16  # side of every test image


def _model_variant(root: Path, name: str, edit) -> Path:
    """A copy of the tiny model with its model.json (or weights) edited by ``edit(meta, folder)``."""
    folder = root / name
    shutil.copytree(root / "tiny", folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["sha256"] = sha256(folder / "model.safetensors")
    edit(meta, folder)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _flip_last_byte(folder: Path) -> None:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))


MODEL_EDITS = {
    "nan_sigmas": lambda m, f: m.update(sigmas=[float("nan")] * len(m["sigmas"])),
    "no_intensity": lambda m, f: m.pop("intensity"),
    "no_image_size": lambda m, f: m.pop("image_size"),
    "swapped_pct": lambda m, f: m.update(intensity={"rule": "percentile", "percentiles": [99.5, 0.0]}),
    "pct_150": lambda m, f: m.update(intensity={"rule": "percentile", "percentiles": [0.0, 150.0]}),
    "huge_ngf": lambda m, f: m["model"].update(ngf=100_000),
    "many_levels": lambda m, f: m.update(sigmas=[1.0] * 20_001),
    "altered": lambda m, f: _flip_last_byte(f),
}

TRAIN_BASE = {"model": {"ngf": 8}, "noise": {"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 5},
              "data": {"image_size": 16}, "batch_size": 2, "device": "cpu", "amp": False, "num_samples": 0}
YAML_EDITS = {"ck0": {"checkpoint_every": 0}, "log0": {"log_every": 0}, "sample0": {"sample_every": 0},
              "lrnan": {"lr": float("nan")}, "ema": {"ema_decay": 1.5},
              "pct": {"data": {"image_size": 16, "percentiles": [99.0, 1.0]}},
              "size4": {"data": {"image_size": 4}}, "ngf0": {"model": {"ngf": 0}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    write_nifti(root / "scan.nii.gz", 100.0 * phantom((S, S, 3), seed=1) + 10.0)
    write_nifti(root / "thin.nii.gz", rng.random((1, S, 4)))  # axis-2 slices of 1 x 16 pixels
    write_nifti(root / "dot.nii.gz", rng.random((1, 1, 5)))  # 1 x 1 slices
    np.save(root / "flat.npy", rng.random((1, 64)).astype(np.float32))
    huge = np.full((S, S), 3e38, dtype=np.float32)
    huge[::2] = -3e38
    np.save(root / "huge.npy", huge)
    lines = np.zeros(S, dtype=np.float32)
    lines[::2] = 1
    np.save(root / "lines.npy", lines)
    holes = np.ones((S, S), dtype=np.float32)
    holes[4:8, 4:8] = 0
    np.save(root / "holes.npy", holes)
    cfg = TrainConfig(model=ModelConfig(ngf=8))
    cfg.data.image_size = S
    net = build_model(cfg.model, geometric_sigmas(1.0, 0.01, 4))
    save_model(root / "tiny", net, net, cfg, step=0)
    for name, edit in MODEL_EDITS.items():
        _model_variant(root, name, edit)
    series = root / "two_series"
    for i, k in enumerate((3, 4)):
        one = write_dicom_series(root / f"series{i}", (rng.random((k, S, S)) * 1000).astype(np.uint16))
        for f in one.iterdir():
            series.mkdir(exist_ok=True)
            shutil.copy(f, series / f"s{i}_{f.name}")
    (root / "self.txt").write_text("scan.nii.gz\nself.txt\n")
    for name, edit in YAML_EDITS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**TRAIN_BASE, **edit}))
    (root / "run").mkdir()
    (root / "run" / "model.json").write_text("{}")
    (root / "run" / "train_log.csv").write_text("step,loss\n")
    return {"root": root, "model": root / "tiny", "scan": root / "scan.nii.gz"}


@pytest.fixture(autouse=True)
def tripwire(monkeypatch):
    """No case may get as far as running a score network."""
    stop_score_networks(monkeypatch, "the bad input was not caught before the solve")


_snapshot = file_snapshot


SOLVE = ["--model", "{root}/tiny", "--device", "cpu", "--preset", "fast"]
DEN = ["denoise", "{root}/scan.nii.gz", "-o", "{out}/d.nii.gz", *SOLVE]
REC = ["reconstruct", "{root}/scan.nii.gz", "--mask", "{root}/lines.npy", "-o", "{out}/r.nii.gz", *SOLVE]
INP = ["inpaint", "{root}/scan.nii.gz", "--mask", "{root}/holes.npy", "-o", "{out}/i.nii.gz", *SOLVE]
TRAIN = ["train", "--data", "{root}/scan.nii.gz", "--out", "{out}/run"]


def _den(scan: str, *extra: str) -> list[str]:
    return ["denoise", scan, "-o", "{out}/d.nii.gz", *SOLVE, *extra]


CLI_CASES = {
    # non-finite inputs
    "scan-near-float32-max": (_den("{root}/huge.npy"), "float32"),
    "noise-std-nan": (DEN + ["--noise-std", "nan"], "--noise-std"),
    "noise-std-inf": (DEN + ["--noise-std", "inf"], "--noise-std"),
    "add-noise-nan": (DEN + ["--add-noise", "nan"], "--add-noise"),
    "add-noise-negative": (DEN + ["--add-noise", "-0.1"], "--add-noise must be a finite number > 0"),
    "model-nan-sigmas": (DEN[:4] + ["--model", "{root}/nan_sigmas", "--device", "cpu"], "sigmas"),
    "step-multiplier-nan": (REC + ["--step-multiplier", "nan"], "--step-multiplier"),
    "sigma-start-nan": (INP + ["--sigma-start", "nan"], "--sigma-start"),
    # integrity and model sanity
    "altered-user-weights": (DEN[:4] + ["--model", "{root}/altered", "--device", "cpu"], "SHA-256"),
    "model-no-intensity": (DEN[:4] + ["--model", "{root}/no_intensity", "--device", "cpu"], "intensity"),
    "model-no-image-size": (DEN[:4] + ["--model", "{root}/no_image_size", "--device", "cpu"], "image_size"),
    "model-swapped-percentiles": (REC[:6] + ["--model", "{root}/swapped_pct", "--device", "cpu"], "percentiles"),
    "model-percentile-150": (INP[:6] + ["--model", "{root}/pct_150", "--device", "cpu"], "percentiles"),
    "model-huge-ngf": (DEN[:4] + ["--model", "{root}/huge_ngf", "--device", "cpu"], "parameters"),
    "model-too-many-levels": (DEN[:4] + ["--model", "{root}/many_levels", "--device", "cpu"], "sigmas"),
    # DICOM folder with two series
    "dicom-two-series": (_den("{root}/two_series"), "2 DICOM series"),
    "dicom-unknown-series": (_den("{root}/two_series", "--series", "1.2.3"), "not in two_series"),
    "train-dicom-two-series": (["train", "--data", "{root}/two_series", "--out", "{out}/run"], "DICOM series"),
    # options that contradict or make no sense
    "missing-with-mask": (INP + ["--missing", "0.3"], "--missing"),
    "missing-out-of-range": (INP[:2] + ["--missing", "1.5", "-o", "{out}/i.nii.gz", *SOLVE], "--missing must be in"),
    # unbounded memory
    "mask-100000-squared": (["mask", "--shape", "100000", "100000", "-o", "{out}/m.npy"], "max"),
    "mask-poisson-20000": (["mask", "--shape", "20000", "20000", "--pattern", "poisson", "-o", "{out}/m.npy"], "max"),
    "mask-one-side-huge": (["mask", "--shape", "16", "5000", "-o", "{out}/m.npy"], "max"),
    # data loss
    "train-into-existing-run": (["train", "--data", "{root}/scan.nii.gz", "--out", "{root}/run"], "--overwrite"),
    "train-resume-and-overwrite": (TRAIN + ["--resume", "--overwrite"], "--overwrite"),
    # tracebacks turned into one line
    "readonly-output": (DEN[:2] + ["-o", "/sys/medscore_d.nii.gz", *SOLVE], "--out"),
    "output-under-a-file": (DEN[:2] + ["-o", "{root}/lines.npy/d.nii.gz", *SOLVE], "--out"),
    "reconstruct-readonly-default": (REC[:4] + ["-o", "/proc/medscore_r.nii.gz", *SOLVE], "--out"),
    "mask-readonly-output": (["mask", "--shape", "16", "16", "-o", "/sys/medscore_m.npy"], "--out"),
    "batch-size-0-denoise": (DEN + ["--batch-size", "0"], "--batch-size"),
    "batch-size-neg-denoise": (DEN + ["--batch-size", "-1"], "--batch-size"),
    "batch-size-0-reconstruct": (REC + ["--batch-size", "0"], "--batch-size"),
    "batch-size-0-inpaint": (INP + ["--batch-size", "0"], "--batch-size"),
    "sigma-start-0": (REC + ["--sigma-start", "0"], "--sigma-start"),
    "sigma-start-negative": (INP + ["--sigma-start", "-0.5"], "--sigma-start"),
    "step-multiplier-0": (REC + ["--step-multiplier", "0"], "--step-multiplier"),
    "flips-with-a-sampler-without-them": (REC + ["--sampler", "ald", "--flips"], "flips"),
    "momentum-1": (REC + ["--momentum", "1"], "momentum must be in [0, 1)"),
    "momentum-with-a-sampler-without-it": (INP + ["--sampler", "ddim", "--momentum", "0.5"], "momentum"),
    "step-multiplier-negative": (DEN + ["--step-multiplier", "-2"], "--step-multiplier"),
    "slices-one-pixel-thick": (_den("{root}/thin.nii.gz"), "too small"),
    "slices-one-by-one": (_den("{root}/dot.nii.gz"), "too small"),
    "2d-one-row": (_den("{root}/flat.npy"), "too small"),
    "axis-giving-thin-slices": (DEN + ["--axis", "0"], "too small"),
    "train-self-naming-list": (["train", "--data", "{root}/self.txt", "--out", "{out}/run"], "names itself"),
    "train-checkpoint-every-0": (TRAIN + ["--config", "{root}/ck0.yaml"], "checkpoint_every"),
    "train-log-every-0": (TRAIN + ["--config", "{root}/log0.yaml"], "log_every"),
    "train-sample-every-0": (TRAIN + ["--config", "{root}/sample0.yaml"], "sample_every"),
    "train-lr-nan": (TRAIN + ["--config", "{root}/lrnan.yaml"], "lr"),
    "train-ema-decay": (TRAIN + ["--config", "{root}/ema.yaml"], "ema_decay"),
    "train-bad-percentiles": (TRAIN + ["--config", "{root}/pct.yaml"], "data.percentiles"),
    "train-image-size-4-yaml": (TRAIN + ["--config", "{root}/size4.yaml"], "data.image_size"),
    "train-ngf-0": (TRAIN + ["--config", "{root}/ngf0.yaml"], "model.ngf"),
    "train-image-size-0": (TRAIN + ["--image-size", "0"], "--image-size"),
    "train-batch-size-0": (TRAIN + ["--batch-size", "0"], "--batch-size"),
    "train-batch-size-neg": (TRAIN + ["--batch-size", "-1"], "--batch-size"),
    "train-steps-0": (TRAIN + ["--steps", "0"], "--steps"),
    # files written before validation
    "mask-all-zero": (["mask", "--shape", "16", "16", "--accel", "1000", "--center", "0", "-o", "{out}/m.npy"],
                      "samples nothing"),
    "mask-equispaced-all-zero": (["mask", "--shape", "16", "16", "--pattern", "equispaced", "--accel", "100",
                                  "--center", "0", "-o", "{out}/m.npy"], "samples nothing"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input(case, env, tmp_path, monkeypatch):
    argv, expected = CLI_CASES[case]
    _, line = bad_cli_case(argv, env["root"], tmp_path, monkeypatch)
    assert expected in line, line


IMG = np.random.default_rng(1).random((S, S)).astype(np.float32)
LINES = (np.arange(S) % 2 == 0).astype(np.float32)
HOLES = np.ones((S, S), dtype=np.float32)


def _with(value, at=(3, 4)) -> np.ndarray:
    img = IMG.copy()
    img[at] = value
    return img


def _run_train(env, tmp_path):
    cfg = TrainConfig(model=ModelConfig(ngf=8), noise=NoiseConfig(sigma_max=1.0, num_levels=5),
                      data=DataConfig(path=str(env["scan"]), image_size=16), steps=1, batch_size=2, device="cpu")
    train(cfg, env["root"] / "run")


def _mutated_train(env, tmp_path):
    cfg = TrainConfig(data=DataConfig(path=str(env["scan"]), image_size=16), device="cpu")
    cfg.checkpoint_every = 0  # edited after construction: train() checks again
    train(cfg, tmp_path / "fresh")


def _nan_output(env, tmp_path):
    scan = load_scan(env["scan"])
    save_like(scan, np.full(scan.data.shape, np.nan, dtype=np.float32), tmp_path / "o.nii.gz", step="denoiser")


def _m(env, name: str) -> dict:
    return {"model": env["root"] / name}


D, R, P = api.denoise, api.reconstruct_mri, api.inpaint
API_CASES = {
    # non-finite arrays and numbers
    "denoise-nan-image": (lambda e, t: D(_with(np.nan), 0.1, model=e["model"]), InputError, "image contains NaN"),
    "denoise-inf-image": (lambda e, t: D(_with(np.inf), 0.1, model=e["model"]), InputError, "image contains NaN"),
    "inpaint-nan-image": (lambda e, t: P(_with(np.nan), HOLES, model=e["model"]), InputError, "image contains NaN"),
    "mri-nan-image": (lambda e, t: R(_with(np.nan), LINES, model=e["model"]), InputError, "image_or_kspace"),
    "mri-inf-kspace": (lambda e, t: R(_with(np.inf).astype(np.complex64), LINES, model=e["model"]), InputError,
                       "image_or_kspace"),
    "denoise-noise-std-nan": (lambda e, t: D(IMG, float("nan"), model=e["model"]), InputError, "noise_std"),
    "denoise-noise-std-0": (lambda e, t: D(IMG, 0.0, model=e["model"]), InputError, "noise_std"),
    "mri-noise-std-nan": (lambda e, t: R(IMG, LINES, noise_std=float("nan"), model=e["model"]), InputError,
                          "noise_std"),
    "load-scan-near-float32-max": (lambda e, t: load_scan(e["root"] / "huge.npy"), InputError, "float32"),
    "load-model-nan-sigmas": (lambda e, t: load_model(e["root"] / "nan_sigmas"), CheckpointError, "sigmas"),
    "nan-output-not-written": (_nan_output, NonFiniteError, "denoiser produced NaN"),
    # integrity, model sanity, size caps
    "load-model-altered": (lambda e, t: load_model(e["root"] / "altered"), CheckpointError, "SHA-256"),
    "denoise-altered-model": (lambda e, t: D(IMG, 0.1, **_m(e, "altered")), CheckpointError, "SHA-256"),
    "load-model-no-intensity": (lambda e, t: load_model(e["root"] / "no_intensity"), CheckpointError, "intensity"),
    "load-model-no-image-size": (lambda e, t: load_model(e["root"] / "no_image_size"), CheckpointError, "image_size"),
    "load-model-bad-percentiles": (lambda e, t: load_model(e["root"] / "swapped_pct"), CheckpointError, "percentiles"),
    "load-model-huge-ngf": (lambda e, t: load_model(e["root"] / "huge_ngf"), CheckpointError, "M parameters"),
    "load-model-many-levels": (lambda e, t: load_model(e["root"] / "many_levels"), CheckpointError, "1 to 10000"),
    # DICOM series
    "load-scan-two-series": (lambda e, t: load_scan(e["root"] / "two_series"), InputError, "2 DICOM series"),
    "load-scan-unknown-series": (lambda e, t: load_scan(e["root"] / "two_series", series_uid="1.2.3"), InputError,
                                 "not in two_series"),
    "series-on-a-nifti": (lambda e, t: load_scan(e["scan"], series_uid="1.2.3"), InputError, "DICOM folders only"),
    # arguments that were silently ignored or misread
    "denoise-method-magic": (lambda e, t: D(IMG, 0.1, method="magic", model=e["model"]), InputError, "tweedie"),
    "inpaint-complex-image": (lambda e, t: P(IMG + 1j * IMG, HOLES, model=e["model"]), InputError, "complex"),
    "denoise-complex-image": (lambda e, t: D(IMG + 1j * IMG, 0.1, model=e["model"]), InputError, "complex"),
    "denoise-samples-0": (lambda e, t: D(IMG, 0.1, samples=0, model=e["model"]), InputError, "samples"),
    "inpaint-samples-negative": (lambda e, t: P(IMG, HOLES, samples=-2, model=e["model"]), InputError, "samples"),
    "mri-samples-0": (lambda e, t: R(IMG, LINES, samples=0, model=e["model"]), InputError, "samples"),
    "mri-sigma-start-0": (lambda e, t: R(IMG, LINES, sigma_start=0.0, model=e["model"]), InputError, "sigma_start"),
    "inpaint-multiplier-0": (lambda e, t: P(IMG, HOLES, multiplier=0.0, model=e["model"]), InputError, "multiplier"),
    "mri-momentum-with-ald": (lambda e, t: R(IMG, LINES, sampler="ald", momentum=0.5, model=e["model"]), InputError,
                              "momentum"),
    "mri-momentum-negative": (lambda e, t: R(IMG, LINES, momentum=-0.1, model=e["model"]), InputError, "momentum"),
    "mri-num-levels-0": (lambda e, t: R(IMG, LINES, num_levels=0, model=e["model"]), InputError, "num_levels"),
    "mri-unknown-option": (lambda e, t: R(IMG, LINES, colour=1, model=e["model"]), InputError, "colour"),
    "mri-unknown-preset": (lambda e, t: R(IMG, LINES, preset="turbo", model=e["model"]), InputError, "turbo"),
    "mri-rank-4-image": (lambda e, t: R(IMG[None, None], LINES, model=e["model"]), InputError, "image_or_kspace"),
    "inpaint-4x4-image": (lambda e, t: P(IMG[:4, :4], HOLES[:4, :4], model=e["model"]), InputError, "too small"),
    "denoise-text-array": (lambda e, t: D(np.full((S, S), "a"), 0.1, model=e["model"]), InputError, "numeric"),
    "inpaint-mask-wrong-shape": (lambda e, t: P(IMG, HOLES[:8], model=e["model"]), InputError, "mask shape"),
    "model-of-wrong-type": (lambda e, t: D(IMG, 0.1, model=123), InputError, "model must be"),
    "sample-n-0": (lambda e, t: api.sample(0, 16, model=e["model"]), InputError, "n must be"),
    "sample-size-4": (lambda e, t: api.sample(2, 4, model=e["model"]), InputError, "size must be"),
    "sample-to-readonly": (lambda e, t: api.sample_to_files(2, "/sys/medscore.png", size=16, model=e["model"]),
                           OutputError, "not writable"),
    # masks: size caps, nothing sampled, bad shapes
    "make-mask-100000": (lambda e, t: make_mask("random", (100_000, 100_000), 4, 0.08), InputError, "max_size"),
    "make-mask-poisson-20000": (lambda e, t: make_mask("poisson", (20_000, 20_000), 4, 0.08), InputError, "max_size"),
    "make-mask-all-zero": (lambda e, t: make_mask("random", (16, 16), 1000, 0.0), InputError, "samples nothing"),
    "make-mask-float-shape": (lambda e, t: make_mask("random", (16.5, 16), 4, 0.08), InputError, "integers"),
    "make-mask-nan-accel": (lambda e, t: make_mask("random", (16, 16), float("nan"), 0.08), InputError, "accel"),
    # training: data loss and config sanity
    "train-into-existing-run": (_run_train, OutputError, "overwrite=True"),
    "train-mutated-config": (_mutated_train, ConfigError, "checkpoint_every"),
    "config-log-every-0": (lambda e, t: TrainConfig(log_every=0), ConfigError, "log_every"),
    "config-image-size-0": (lambda e, t: DataConfig(image_size=0), ConfigError, "data.image_size"),
    "config-sigma-max-inf": (lambda e, t: NoiseConfig(sigma_max=float("inf")), ConfigError, "sigma_max"),
    "data-list-names-itself": (lambda e, t: find_scans(e["root"] / "self.txt"), InputError, "names itself"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_bad_input(case, env, tmp_path):
    fn, exc, match = API_CASES[case]
    before = _snapshot(env["root"])
    with pytest.raises(exc, match=match) as info:
        fn(env, tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [] and _snapshot(env["root"]) == before


KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from medscore.io.atomic import atomic_path
with atomic_path(Path(sys.argv[1]) / "out.nii.gz") as tmp:
    tmp.write_text("partial")
    os.kill(os.getpid(), signal.SIGTERM)
"""


def test_killed_during_final_write_leaves_no_temp_file(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGTERM, proc.stderr.decode()[-500:]
    assert list(tmp_path.iterdir()) == []


def test_signal_handlers_installed_only_while_a_temp_file_exists(tmp_path):
    from medscore.io.atomic import atomic_path, live_temp_files

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with atomic_path(tmp_path / "a.npy") as tmp:
        assert tmp in live_temp_files() and signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert not live_temp_files() and [p.name for p in tmp_path.iterdir()] == ["a.npy"]
