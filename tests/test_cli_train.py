"""``medscore train`` through typer's CliRunner: clear one-line errors that write nothing, and a tiny real run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from _synth import QUIET_MONAI, one_error_line, phantom, write_nifti
from medscore.cli.main import app

pytestmark = QUIET_MONAI

TINY_YAML = """\
model: {ngf: 8}
noise: {sigma_max: 1.0, sigma_min: 0.01, num_levels: 5}
data: {image_size: 16}
batch_size: 4
device: cpu
amp: false
warmup_steps: 2
log_every: 1
checkpoint_every: 2
num_samples: 2
sample_levels: 3
sample_steps_each: 1
val_images: 2
"""


@pytest.fixture()
def runner(monkeypatch):
    monkeypatch.delenv("MEDSCORE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not wrap the error line
    return CliRunner()


@pytest.fixture()
def tiny(tmp_path):
    scan = write_nifti(tmp_path / "tiny.nii.gz", phantom((20, 22, 8)))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    return scan, cfg


def test_missing_data(runner, tmp_path):
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "missing" / "path"), "--out", str(out)])
    line = one_error_line(res)
    assert "not found" in line and "missing" in line
    assert not out.exists()


def test_corrupt_nifti(runner, tmp_path, tiny):
    _, cfg = tiny
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b definitely not a gzipped NIfTI")
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", "--data", str(bad), "--config", str(cfg), "--steps", "2", "--out", str(out)])
    line = one_error_line(res)
    assert "bad.nii.gz" in line and "cannot read" in line
    assert not out.exists()


def test_bad_config(runner, tmp_path, tiny):
    scan, _ = tiny
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {ngf: 8, colour: blue}\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", "--data", str(scan), "--config", str(cfg), "--out", str(out)])
    assert "colour" in one_error_line(res)
    assert not out.exists()


def test_resume_without_run(runner, tmp_path, tiny):
    scan, cfg = tiny
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", "--data", str(scan), "--config", str(cfg), "--out", str(out), "--resume"])
    assert "resume" in one_error_line(res)
    assert not out.exists()


def test_tiny_run_and_resume(runner, tmp_path, tiny):
    scan, cfg = tiny
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(scan), "--config", str(cfg), "--steps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in ("model.safetensors", "model.json", "train_log.csv", "samples_0000002.png"):
        assert (out / name).is_file(), name
    assert "weights:" in res.stdout
    meta = json.loads((out / "model.json").read_text())
    assert meta["step"] == 2 and meta["model"]["ngf"] == 8 and meta["train_config"]["data"]["path"] == str(scan)
    # --resume continues the run in --out with the run's own config (no --config/--data needed)
    res = runner.invoke(app, ["train", "--steps", "4", "--out", str(out), "--resume"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["step"] == 4 and meta["model"]["ngf"] == 8
    assert (out / "samples_0000004.png").is_file()
    steps = [ln.split(",")[0] for ln in (out / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]


def test_resume_with_other_model_is_clear(runner, tmp_path, tiny):
    scan, cfg = tiny
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--data", str(scan), "--config", str(cfg), "--steps", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    other = tmp_path / "other.yaml"
    other.write_text(TINY_YAML.replace("ngf: 8", "ngf: 12"))
    res = runner.invoke(app, ["train", "--config", str(other), "--steps", "4", "--out", str(out), "--resume"])
    assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit))
    assert "Traceback" not in res.output
    last = res.stderr.strip().splitlines()[-1]  # after the (empty) progress bar, which is already on screen
    assert last.startswith("error: cannot resume") and "config" in last
    assert json.loads((out / "model.json").read_text())["step"] == 2  # the run is left as it was


def test_overwrite_replaces_a_run_and_records_the_sha256(runner, tmp_path, tiny):
    """A non-empty --out is refused without a flag and replaced with --overwrite; model.json records the hash."""
    from medscore.priors.checkpoint import sha256

    scan, cfg = tiny
    out = tmp_path / "run"
    args = ["train", "--data", str(scan), "--config", str(cfg), "--steps", "2", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    stale = (out / "model.safetensors").read_bytes()
    assert "--overwrite" in one_error_line(runner.invoke(app, args))
    assert (out / "model.safetensors").read_bytes() == stale  # refused: nothing touched
    res = runner.invoke(app, [*args[:-4], "--steps", "1", "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["step"] == 1 and meta["sha256"] == sha256(out / "model.safetensors")
    assert [ln.split(",")[0] for ln in (out / "train_log.csv").read_text().splitlines()[1:]] == ["1"]
