"""``medscore mask | reconstruct | inpaint | denoise | sample`` end to end through typer's CliRunner.

A tiny untrained checkpoint (ngf 8, six noise levels) keeps every run well under a second: these tests
check plumbing, geometry and error handling, not reconstruction quality.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from _synth import line_mask, one_error_line, ramp_phantom_scan, tiny_model
from medscore.cli.main import app

SHAPE = (24, 28, 3)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A scan with a non-trivial affine, a line mask for it, a tiny model folder and complex k-space."""
    root = tmp_path_factory.mktemp("cli_solve")
    scan = ramp_phantom_scan(root / "scan.nii.gz", SHAPE, seed=1)
    tiny_model(root / "tiny")
    mask = np.load(line_mask(root / "lines.npy", SHAPE[1], slice(SHAPE[1] // 2 - 1, SHAPE[1] // 2 + 2)))
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 24, 28)) + 1j * rng.standard_normal((2, 24, 28))).astype(np.complex64)
    np.save(root / "kspace.npy", k * mask)
    return {"root": root, "scan": scan, "model": root / "tiny", "mask": root / "lines.npy",
            "kspace": root / "kspace.npy"}


@pytest.fixture()
def runner(monkeypatch):
    monkeypatch.delenv("MEDSCORE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not wrap the error line
    return CliRunner()


def _run(runner, *args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _text(result) -> str:
    """stdout with rich's wrapping undone (the test terminal is narrow)."""
    return " ".join(result.stdout.split())


def _ok(result) -> None:
    assert result.exit_code == 0, (result.exit_code, result.output[-2000:], repr(result.exception))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _common(files) -> list:
    return ["--model", files["model"], "--preset", "fast", "--device", "cpu"]


# ---------------------------------------------------------------------------------------------------------------
# medscore mask


def test_mask_random_lines(runner, tmp_path):
    out = tmp_path / "m.npy"
    res = _run(runner, "mask", "--pattern", "random", "--accel", "4", "--center", "0.08", "--shape", "24", "28",
               "-o", out)
    _ok(res)
    m = np.load(out)
    assert m.shape == (28,) and set(np.unique(m).tolist()) <= {0.0, 1.0}
    assert m[14] == 1.0  # DC line sampled
    assert 3.0 < m.size / m.sum() < 7.0
    assert "acceleration" in _text(res)


def test_mask_poisson_2d(runner, tmp_path):
    out = tmp_path / "p.npy"
    _ok(_run(runner, "mask", "--pattern", "poisson", "--accel", "4", "--center", "0.08", "--shape", "24", "28",
             "-o", out))
    m = np.load(out)
    assert m.shape == (24, 28) and set(np.unique(m).tolist()) <= {0.0, 1.0}
    assert m[12, 14] == 1.0


@pytest.mark.parametrize("args, match", [
    (["--pattern", "spiral"], "--pattern"),
    (["--accel", "0.5"], "accel"),
    (["--center", "0.5"], "center"),
])
def test_mask_errors(runner, tmp_path, args, match):
    out = tmp_path / "m.npy"
    line = one_error_line(_run(runner, "mask", "--shape", "24", "28", "-o", out, *args))
    assert match in line
    assert not out.exists()


def test_mask_needs_npy_output(runner, tmp_path):
    line = one_error_line(_run(runner, "mask", "--shape", "24", "28", "-o", tmp_path / "m.txt"))
    assert ".npy" in line
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# the solvers on files


def _assert_same_geometry(out: Path, ref: Path) -> np.ndarray:
    a, b = nib.load(str(ref)), nib.load(str(out))
    assert b.shape == a.shape
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
    np.testing.assert_array_equal(b.header["dim"], a.header["dim"])
    np.testing.assert_allclose(b.header["pixdim"][1:4], a.header["pixdim"][1:4], rtol=1e-6)
    data = np.asarray(b.dataobj, dtype=np.float32)
    assert np.isfinite(data).all()
    return data


def test_reconstruct_writes_outputs_with_the_input_geometry(runner, files, tmp_path):
    before = _digest(files["scan"])
    out = tmp_path / "out" / "rec.nii.gz"
    res = _run(runner, "reconstruct", files["scan"], "--mask", files["mask"], "-o", out, "--samples", "2",
               *_common(files))
    _ok(res)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "rec.nii.gz", "rec_panel.png", "rec_std.nii.gz", "rec_zerofilled.nii.gz"]
    for name in ("rec.nii.gz", "rec_zerofilled.nii.gz", "rec_std.nii.gz"):
        _assert_same_geometry(out.parent / name, files["scan"])
    std = np.asarray(nib.load(str(out.parent / "rec_std.nii.gz")).dataobj)
    assert (std >= 0).all() and std.max() > 0
    # the zero-filled image is in the scan's units: close to the scan where k-space is mostly sampled
    zf = np.asarray(nib.load(str(out.parent / "rec_zerofilled.nii.gz")).dataobj)
    ref = np.asarray(nib.load(str(files["scan"])).dataobj)
    assert np.corrcoef(zf.ravel(), ref.ravel())[0, 1] > 0.5
    assert "PSNR" in _text(res) and "zero-filled" in _text(res) and "medscore" in _text(res)
    assert _digest(files["scan"]) == before


def test_reconstruct_default_output_goes_next_to_the_input(runner, files, tmp_path):
    scan = tmp_path / "brain.nii.gz"
    scan.write_bytes(files["scan"].read_bytes())
    _ok(_run(runner, "reconstruct", scan, "--mask", files["mask"], *_common(files)))
    assert (tmp_path / "brain_medscore.nii.gz").is_file()
    assert not (tmp_path / "brain_medscore_std.nii.gz").exists()  # one sample: no std
    assert _digest(scan) == _digest(files["scan"])


def test_inpaint_missing_fraction(runner, files, tmp_path):
    out = tmp_path / "inp.nii.gz"
    res = _run(runner, "inpaint", files["scan"], "--missing", "0.5", "-o", out, *_common(files))
    _ok(res)
    est = _assert_same_geometry(out, files["scan"])
    masked = _assert_same_geometry(tmp_path / "inp_masked.nii.gz", files["scan"])
    assert (tmp_path / "inp_panel.png").is_file()
    ref = np.asarray(nib.load(str(files["scan"])).dataobj, dtype=np.float32)
    known = masked != masked.min()  # the known pixels keep their values (up to float round-off)
    np.testing.assert_allclose(est[known], ref[known], rtol=1e-4, atol=1e-3)
    assert "PSNR" in _text(res)


def test_inpaint_with_a_mask_file(runner, files, tmp_path):
    holes = np.ones(SHAPE[:2], dtype=np.float32)
    holes[8:16, 10:18] = 0
    np.save(tmp_path / "holes.npy", holes)
    _ok(_run(runner, "inpaint", files["scan"], "--mask", tmp_path / "holes.npy", "-o", tmp_path / "i.nii.gz",
             *_common(files)))
    _assert_same_geometry(tmp_path / "i.nii.gz", files["scan"])


def test_denoise_simulated_noise(runner, files, tmp_path):
    out = tmp_path / "den.nii.gz"
    res = _run(runner, "denoise", files["scan"], "--add-noise", "0.1", "-o", out, *_common(files))
    _ok(res)
    _assert_same_geometry(out, files["scan"])
    _assert_same_geometry(tmp_path / "den_noisy.nii.gz", files["scan"])
    assert (tmp_path / "den_panel.png").is_file()
    assert "PSNR" in _text(res)


def test_denoise_without_reference(runner, files, tmp_path):
    out = tmp_path / "den.nii.gz"
    res = _run(runner, "denoise", files["scan"], "--noise-std", "0.05", "-o", out, *_common(files))
    _ok(res)
    _assert_same_geometry(out, files["scan"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["den.nii.gz", "den_panel.png"]
    assert "no metrics" in _text(res) and "PSNR" not in _text(res)


def test_denoise_langevin_with_samples(runner, files, tmp_path):
    out = tmp_path / "den.nii.gz"
    _ok(_run(runner, "denoise", files["scan"], "--noise-std", "0.05", "--method", "langevin", "--samples", "2",
             "-o", out, *_common(files)))
    _assert_same_geometry(tmp_path / "den_std.nii.gz", files["scan"])


def test_sample(runner, files, tmp_path):
    out = tmp_path / "s.png"
    res = _run(runner, "sample", "-n", "4", "--size", "16", "-o", out, *_common(files))
    _ok(res)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (4, 16, 16) and np.isfinite(arr).all()
    assert "4 samples" in _text(res)


def test_sample_needs_png(runner, files, tmp_path):
    line = one_error_line(_run(runner, "sample", "-n", "2", "--size", "16", "-o", tmp_path / "s.jpg", *_common(files)))
    assert ".png" in line
    assert list(tmp_path.iterdir()) == []


def test_reconstruct_complex_kspace(runner, files, tmp_path):
    out = tmp_path / "k" / "rec.nii.gz"
    res = _run(runner, "reconstruct", files["kspace"], "--mask", files["mask"], "-o", out, *_common(files))
    _ok(res)
    img = nib.load(str(out))
    assert img.shape == (24, 28, 2)  # (H, W, N): one slice per k-space frame
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all() and (data >= 0).all()  # a magnitude image
    assert (out.parent / "rec_zerofilled.nii.gz").is_file() and (out.parent / "rec_panel.png").is_file()
    assert "no metrics" in _text(res) and "PSNR" not in _text(res)


def test_reconstruct_complex_kspace_mask_from_data(runner, files, tmp_path):
    out = tmp_path / "rec.nii.gz"
    _ok(_run(runner, "reconstruct", files["kspace"], "-o", out, *_common(files)))
    assert nib.load(str(out)).shape == (24, 28, 2)


# ---------------------------------------------------------------------------------------------------------------
# errors: one line on stderr, exit code != 0, nothing written


def _bad_inputs(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "short.npy", np.ones(27, dtype=np.float32))
    np.save(root / "twos.npy", np.full(28, 2.0, dtype=np.float32))
    np.save(root / "zeros.npy", np.zeros(28, dtype=np.float32))
    nan = np.ones(28, dtype=np.float32)
    nan[3] = np.nan
    np.save(root / "nan.npy", nan)
    (root / "mask.txt").write_text("1 0 1 1\n")
    (root / "corrupt.nii.gz").write_bytes(b"this is not a NIfTI file")
    (root / "corrupt.npy").write_bytes(b"garbage, not an array")
    return {n: root / f for n, f in [("short", "short.npy"), ("twos", "twos.npy"), ("zeros", "zeros.npy"),
                                     ("nan", "nan.npy"), ("txt", "mask.txt"), ("corrupt", "corrupt.nii.gz"),
                                     ("corrupt_npy", "corrupt.npy")]}


@pytest.mark.parametrize("case, match", [
    ("short", "expected (W,) = (28,) or (H, W) = (24, 28)"),
    ("twos", "0 or 1"),
    ("zeros", "all zeros"),
    ("nan", "NaN"),
    ("txt", ".npy"),
    ("missing_scan", "not found"),
    ("missing_model", "not found"),
    ("corrupt", "cannot read"),
    ("corrupt_npy", "cannot read"),
    ("no_mask", "--mask"),
    ("not_nifti_out", ".nii"),
    ("samples", "--samples"),
    ("preset", "preset"),
    ("precision", "precision"),
])
def test_reconstruct_errors(runner, files, tmp_path, case, match):
    bad = _bad_inputs(tmp_path / "inputs")
    out_dir = tmp_path / "out"
    out = out_dir / "rec.nii.gz"
    scan, mask, extra = files["scan"], files["mask"], _common(files)
    if case in ("short", "twos", "zeros", "nan", "txt"):
        mask = bad[case]
    elif case == "missing_scan":
        scan = tmp_path / "nope.nii.gz"
    elif case == "missing_model":
        extra = ["--model", tmp_path / "no_model_here", "--device", "cpu"]
    elif case in ("corrupt", "corrupt_npy"):
        scan = bad[case]
    elif case == "not_nifti_out":
        out = out_dir / "rec.png"
    elif case == "samples":
        extra = [*extra, "--samples", "0"]
    elif case == "preset":
        extra = ["--model", files["model"], "--device", "cpu", "--preset", "turbo"]
    elif case == "precision":
        extra = [*extra, "--precision", "fp16"]
    args = ["reconstruct", scan, "-o", out, *extra] + ([] if case == "no_mask" else ["--mask", mask])
    line = one_error_line(_run(runner, *args))
    assert match in line, line
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_output_never_overwrites_the_input(runner, files, tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(files["scan"].read_bytes())
    before = _digest(scan)
    for cmd in (["reconstruct", scan, "--mask", files["mask"]], ["inpaint", scan, "--missing", "0.3"],
                ["denoise", scan, "--add-noise", "0.1"]):
        line = one_error_line(_run(runner, *cmd, "-o", scan, *_common(files)))
        assert "overwrite" in line
        assert _digest(scan) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_derived_outputs_never_overwrite_the_input(runner, files, tmp_path):
    """OUT_zerofilled.nii.gz is written too: it must not be the input either, and the refusal comes first."""
    scan = tmp_path / "rec_zerofilled.nii.gz"
    scan.write_bytes(files["scan"].read_bytes())
    line = one_error_line(_run(runner, "reconstruct", scan, "--mask", files["mask"], "-o", tmp_path / "rec.nii.gz",
                                *_common(files)))
    assert "overwrite" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec_zerofilled.nii.gz"]
    assert _digest(scan) == _digest(files["scan"])


def test_kspace_output_never_overwrites_the_input(runner, files, tmp_path):
    k = tmp_path / "k.npy"
    k.write_bytes(files["kspace"].read_bytes())
    line = one_error_line(_run(runner, "reconstruct", k, "-o", tmp_path / "k.png", *_common(files)))
    assert ".nii" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.npy"]


@pytest.mark.parametrize("cmd, match", [
    (["inpaint", "--missing", "1.5"], "--missing"),
    (["inpaint"], "--missing"),
    (["denoise", "--add-noise", "-1"], "--add-noise"),
    (["denoise", "--method", "bm3d"], "--method"),
])
def test_inpaint_denoise_errors(runner, files, tmp_path, cmd, match):
    out = tmp_path / "out" / "x.nii.gz"
    line = one_error_line(_run(runner, cmd[0], files["scan"], *cmd[1:], "-o", out, *_common(files)))
    assert match in line
    assert not out.parent.exists()


def test_inpaint_mask_of_the_wrong_shape(runner, files, tmp_path):
    np.save(tmp_path / "holes.npy", np.ones((28, 24), dtype=np.float32))
    line = one_error_line(_run(runner, "inpaint", files["scan"], "--mask", tmp_path / "holes.npy",
                                "-o", tmp_path / "out" / "x.nii.gz", *_common(files)))
    assert "(24, 28)" in line
    assert not (tmp_path / "out").exists()


def test_a_named_bundled_prior_through_the_cli(runner, files, tmp_path):
    """``--model bundled:NAME`` (typer hands it over as a path) loads that bundled prior, as the README says."""
    from medscore.priors.store import load_prior
    from medscore.nets import UNetScore

    assert isinstance(load_prior(Path("bundled:unet")).model, UNetScore)
    out = tmp_path / "den.nii.gz"
    _ok(_run(runner, "denoise", files["scan"], "--noise-std", "0.05", "-o", out, "--model", "bundled:unet",
             "--device", "cpu"))
    _assert_same_geometry(out, files["scan"])
