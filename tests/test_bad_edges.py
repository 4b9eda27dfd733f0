"""Bad inputs at the edges (issue 29): values, headers and sizes that gave tracebacks or were silently misread.

As in ``test_bad_inputs.py``: CLI cases exit 1 with exactly one ``error:`` line naming the culprit, no traceback,
nothing written and the inputs unchanged; API cases raise the MedscoreError subclass with a one-line message. The
score network is a tripwire, and so is the model loader for the cases that must be caught before any model loads.
Free memory is pinned to :data:`FREE` so that the memory checks do not depend on the machine.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _synth import QUIET_MONAI, one_error_line, phantom, tiny_model, write_dicom_series, write_nifti
from medscore import api, checks
from medscore.cli.main import app
from medscore.errors import InputError
from medscore.io.arrays import open_smaps, read_mask
from medscore.io.scans import load_scan
from medscore.nets import refinenet
from medscore.physics import make_mask, validate_mask

pytestmark = QUIET_MONAI
S = 16
FREE = 128 << 20  # pinned free memory: 128 MiB


def _nifti_with_affine(path, value: float) -> None:
    """A NIfTI whose sform is ``value`` everywhere (nibabel refuses to build such an image from an affine)."""
    img = nib.Nifti1Image(np.random.default_rng(0).random((S, S, 3)).astype(np.float32), np.eye(4))
    hdr = img.header
    hdr["qform_code"], hdr["sform_code"] = 0, 1
    for row in ("srow_x", "srow_y", "srow_z"):
        hdr[row] = value
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, hdr), str(path))


def _lying_header(path, gz: bool) -> None:
    """A header claiming 30000 x 30000 x 40 float32 voxels in an 8 KiB file."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 40))
    hdr.set_data_dtype(np.float32)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(hdr.binaryblock + b"\0" * 7804)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import h5py

    root = tmp_path_factory.mktemp("bad_edges")
    rng = np.random.default_rng(0)
    write_nifti(root / "scan.nii.gz", 100.0 * phantom((S, S, 3), seed=1) + 10.0)
    write_nifti(root / "subnormal.nii.gz", rng.random((S, S, 3)) * 1e-38)
    _nifti_with_affine(root / "nan_affine.nii.gz", np.nan)
    _nifti_with_affine(root / "zero_affine.nii.gz", 0.0)
    nib.save(nib.Nifti1Image((rng.random((S, S, 3)) + 1j).astype(np.complex64), np.eye(4)), str(root / "cplx.nii.gz"))
    _lying_header(root / "liar.nii", gz=False)
    _lying_header(root / "liar.nii.gz", gz=True)
    with h5py.File(root / "huge.h5", "w") as f:  # nothing written: a few KiB on disk
        f.create_dataset("kspace", shape=(1, 2, 50000, 50000), dtype=np.complex64, chunks=(1, 1, 256, 256))
    write_dicom_series(root / "one_position", (rng.random((4, S, S)) * 1000).astype(np.uint16), thickness=0.0)
    np.save(root / "mc.npy", (rng.standard_normal((2, 2, S, S)) + 1j).astype(np.complex64))
    np.save(root / "zero_maps.npy", np.zeros((2, 2, S, S), np.complex64))
    maps = np.ones((2, 2, S, S), np.complex64)
    maps[1] = 0
    np.save(root / "zero_slice_maps.npy", maps)
    np.save(root / "zero_shared_maps.npy", np.zeros((2, S, S), np.complex64))
    lines = (np.arange(S) % 2 == 0).astype(np.float32)
    np.save(root / "lines.npy", lines)
    np.save(root / "text_lines.npy", lines.astype(int).astype(str))
    np.save(root / "text_holes.npy", np.full((S, S), "1"))
    np.save(root / "empty.npy", np.zeros((0, S), np.float32))
    np.lib.format.open_memmap(root / "big_mask.npy", mode="w+", dtype=np.uint8, shape=(8192, 8192)).flush()
    tiny_model(root / "tiny")
    return root


@pytest.fixture(autouse=True)
def tripwires(monkeypatch, request):
    """No case runs the score network; ``early`` cases may not even load a model. Free memory is pinned."""
    def boom(self, *args, **kwargs):
        raise AssertionError("the score network ran: the bad input was not caught before the solve")

    for cls in vars(refinenet).values():
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and "forward" in vars(cls):
            monkeypatch.setattr(cls, "forward", boom)
    monkeypatch.setattr(checks, "available_memory", lambda: FREE)
    monkeypatch.delenv("MEDSCORE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "60")


def _no_model_load(monkeypatch) -> None:
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded: the bad input was not caught before")

    import medscore.pipeline.driver as driver

    monkeypatch.setattr(driver, "load_prior", no_load)
    monkeypatch.setattr(api, "load_prior", no_load)


def _snapshot(folder):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


SOLVE = ["--model", "{root}/tiny", "--device", "cpu", "--preset", "fast"]


def den(scan: str, *extra: str) -> list[str]:
    return ["denoise", scan, "-o", "{out}/d.nii.gz", *SOLVE, "--noise-std", "0.1", *extra]


def rec(scan: str = "{root}/scan.nii.gz", *extra: str, mask: str = "{root}/lines.npy") -> list[str]:
    return ["reconstruct", scan, *(["--mask", mask] if mask else []), "-o", "{out}/r.nii.gz", *SOLVE, *extra]


def inp(scan: str = "{root}/scan.nii.gz", *extra: str) -> list[str]:
    return ["inpaint", scan, "--missing", "0.5", "-o", "{out}/i.nii.gz", *SOLVE, *extra]


SAMPLE = ["sample", "-o", "{out}/s.png", "--model", "{root}/tiny", "--device", "cpu"]
MC = ("{root}/mc.npy", "--smaps")
#: name -> (argv, text of the error line, caught before any model loads)
CLI_CASES = {
    "scan-values-1e-38": (den("{root}/subnormal.nii.gz"), "subnormal.nii.gz: the scan is constant", True),
    "affine-nan": (den("{root}/nan_affine.nii.gz"), "nan_affine.nii.gz: the affine", True),
    "affine-zero": (rec("{root}/zero_affine.nii.gz"), "zero_affine.nii.gz: the affine", True),
    "sigma-start-1e-30": (rec("{root}/scan.nii.gz", "--sigma-start", "1e-30"), "--sigma-start must be >= 0.001", True),
    "sigma-start-1e-30-inpaint": (inp("{root}/scan.nii.gz", "--sigma-start", "1e-30"), "--sigma-start", True),
    "sigma-start-below-model": (rec("{root}/scan.nii.gz", "--sigma-start", "0.005"), "smallest model level", False),
    "snr-1e30": (rec("{root}/scan.nii.gz", "--sampler", "pc", "--snr", "1e30"), "--snr must be in (0, 1]", True),
    "samples-1000000": (rec("{root}/scan.nii.gz", "--samples", "1000000"), "--samples must be >= 1 and <= 1000",
                        True),
    "samples-beyond-free-memory": (rec("{root}/scan.nii.gz", "--samples", "1000"), "free memory", False),
    "complex-nifti-reconstruct": (rec("{root}/cplx.nii.gz"), "cplx.nii.gz holds complex voxels", True),
    "complex-nifti-inpaint": (inp("{root}/cplx.nii.gz"), "pass the magnitude", True),
    "zero-coil-maps": (rec(MC[0], MC[1], "{root}/zero_maps.npy", mask=""), "coil maps of slice 0 are all zero",
                       True),
    "zero-coil-maps-one-slice": (rec(MC[0], MC[1], "{root}/zero_slice_maps.npy", mask=""), "slice 1 are all zero",
                                 True),
    "zero-shared-coil-maps": (rec(MC[0], MC[1], "{root}/zero_shared_maps.npy", mask=""), "all zero", True),
    "mask-of-strings-lines": (rec("{root}/scan.nii.gz", mask="{root}/text_lines.npy"), "mask has dtype <U", True),
    "mask-of-strings-holes": (["inpaint", "{root}/scan.nii.gz", "--mask", "{root}/text_holes.npy", "-o",
                               "{out}/i.nii.gz", *SOLVE], "expected 0/1 numbers", True),
    "mask-file-beyond-free-memory": (rec("{root}/scan.nii.gz", mask="{root}/big_mask.npy"), "big_mask.npy", True),
    "nifti-header-30000-squared": (den("{root}/liar.nii"), "liar.nii: the header declares 30000 x 30000 x 40", True),
    "nifti-gz-header-30000-squared": (den("{root}/liar.nii.gz"), "free memory", True),
    "h5-kspace-50000-squared": (rec("{root}/huge.h5", mask=""), "huge.h5: k-space of shape (1, 2, 50000, 50000)",
                                True),
    "mask-shape-100000-poisson": (["mask", "--shape", "100000", "100000", "--max-size", "200000", "--pattern",
                                   "poisson", "-o", "{out}/m.npy"], "free memory", True),
    "sample-n-1e9": (SAMPLE + ["-n", "1000000000"], "sampling 1000000000 images", True),
    "sample-size-100000": (SAMPLE + ["--size", "100000"], "100000 x 100000 pixels", True),
    "sample-n-beyond-free-memory": (SAMPLE + ["-n", "1000"], "free memory", False),
    "seed-2-64": (den("{root}/scan.nii.gz", "--seed", str(2**64)), "--seed must be an integer in [0, 2**63 - 1]",
                  True),
    "seed-2-64-mask": (["mask", "--shape", "16", "16", "--seed", str(2**64), "-o", "{out}/m.npy"], "--seed", True),
    "seed-2-64-sample": (SAMPLE + ["--seed", str(2**64)], "--seed", True),
    "dicom-one-position": (den("{root}/one_position"), "distinct slice position", True),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_edge(case, env, tmp_path, monkeypatch):
    argv, expected, early = CLI_CASES[case]
    if early:
        _no_model_load(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(env)
    res = CliRunner().invoke(app, [a.format(root=env, out=out) for a in argv])
    line = one_error_line(res)
    assert res.exit_code == 1
    assert expected in line, line
    assert list(out.iterdir()) == [], "a bad input left files in the output folder"
    assert _snapshot(env) == before, "an input was changed"


IMG = np.random.default_rng(1).random((S, S)).astype(np.float32)
LINES = (np.arange(S) % 2 == 0).astype(np.float32)
HOLES = np.ones((S, S), dtype=np.float32)
D, R, P = api.denoise, api.reconstruct_mri, api.inpaint


def _m(env) -> dict:
    return {"model": env / "tiny"}


def _eof(*args, **kwargs):
    raise EOFError()  # no message, as MemoryError and some reader errors have


#: name -> (call, exception, message pattern, caught before any model loads)
API_CASES = {
    "load-scan-values-1e-38": (lambda e: load_scan(e / "subnormal.nii.gz"), InputError, "subnormal.nii.gz", True),
    "load-scan-nan-affine": (lambda e: load_scan(e / "nan_affine.nii.gz"), InputError, "NaN or inf", True),
    "load-scan-zero-affine": (lambda e: load_scan(e / "zero_affine.nii.gz"), InputError, "singular", True),
    "load-scan-complex-nifti": (lambda e: load_scan(e / "cplx.nii.gz"), InputError, "complex voxels", True),
    "load-scan-header-30000": (lambda e: load_scan(e / "liar.nii"), InputError, "truncated", True),
    "load-scan-gz-header-30000": (lambda e: load_scan(e / "liar.nii.gz"), InputError, "free memory", True),
    "load-scan-empty-npy": (lambda e: load_scan(e / "empty.npy"), InputError, "empty.npy: the scan is empty", True),
    "load-scan-one-position": (lambda e: load_scan(e / "one_position"), InputError, "distinct slice position", True),
    "mri-sigma-start-1e-30": (lambda e: R(IMG, LINES, sigma_start=1e-30, **_m(e)), InputError, "sigma_start", True),
    "mri-sigma-end-1e-30": (lambda e: R(IMG, LINES, sigma_end=1e-30, **_m(e)), InputError, "sigma_end", True),
    "mri-sigma-end-above-start": (lambda e: R(IMG, LINES, sigma_start=0.1, sigma_end=0.5, **_m(e)), InputError,
                                  r"sigma_end \(0.5\) must be <= sigma_start", True),
    "mri-sigma-start-below-model": (lambda e: R(IMG, LINES, sigma_start=0.005, **_m(e)), InputError,
                                    "smallest model level", False),
    "mri-snr-1e30": (lambda e: R(IMG, LINES, sampler="pc", snr=1e30, **_m(e)), InputError, "snr", True),
    "inpaint-samples-1000000": (lambda e: P(IMG, HOLES, samples=10**6, **_m(e)), InputError, "<= 1000", True),
    "denoise-samples-beyond-memory": (lambda e: D(IMG, 0.1, method="sampler", samples=1000, **_m(e)), InputError,
                                      "free memory", False),
    "inpaint-mask-of-strings": (lambda e: P(IMG, np.full((S, S), "1"), **_m(e)), InputError, "dtype", True),
    "validate-mask-of-strings": (lambda e: validate_mask(np.array(["0", "1"] * 8), (S, S)), InputError, "dtype",
                                 True),
    "validate-mask-of-objects": (lambda e: validate_mask(np.array([0, 1] * 8, dtype=object), (S, S)), InputError,
                                 "dtype", True),
    "zero-coil-maps-array": (lambda e: open_smaps(np.zeros((2, S, S), np.complex64), (1, 2, S, S)).__enter__(),
                             InputError, "all zero", True),
    "read-mask-beyond-memory": (lambda e: read_mask(e / "big_mask.npy"), InputError, "free memory", True),
    "make-mask-poisson-100000": (lambda e: make_mask("poisson", (100_000, 100_000), 4, 0.08, max_size=200_000),
                                 InputError, "free memory", True),
    "make-mask-seed-2-64": (lambda e: make_mask("random", (S, S), 4, 0.08, seed=2**64), InputError, "seed", True),
    "make-mask-seed-negative": (lambda e: make_mask("poisson", (S, S), 4, 0.08, seed=-1), InputError, "seed", True),
    "sample-n-1e9": (lambda e: api.sample(10**9, 64, **_m(e)), InputError, "free memory", True),
    "sample-size-100000": (lambda e: api.sample(2, 100_000, **_m(e)), InputError, "free memory", True),
    "sample-n-beyond-memory": (lambda e: api.sample(1000, 64, **_m(e)), InputError, "free memory", False),
    "sample-to-files-size-100000": (lambda e: api.sample_to_files(2, e / "s.png", size=100_000, **_m(e)),
                                    InputError, "free memory", True),
    "sample-bad-size-tuple": (lambda e: api.sample(2, (16, 16, 16), **_m(e)), InputError, "size", True),
    "denoise-seed-2-64": (lambda e: D(IMG, 0.1, seed=2**64, **_m(e)), InputError, r"seed must be .* 2\*\*63", True),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_bad_edge(case, env, monkeypatch):
    fn, exc, match, early = API_CASES[case]
    if early:
        _no_model_load(monkeypatch)
    before = _snapshot(env)
    with pytest.raises(exc, match=match) as info:
        fn(env)
    assert "\n" not in str(info.value)
    assert _snapshot(env) == before


def test_reader_error_without_message_is_one_line(env, monkeypatch):
    monkeypatch.setattr(nib, "load", _eof)
    with pytest.raises(InputError, match=r"^cannot read .*scan.nii.gz: EOFError$"):
        load_scan(env / "scan.nii.gz")


def test_mask_with_raised_max_size_is_not_expanded(tmp_path):
    """A (W,) line mask for 100000 x 100000 needs 1.6 MB: its acceleration is not computed on the (H, W) grid
    (74.5 GiB) any more, so the command writes it."""
    out = tmp_path / "m.npy"
    res = CliRunner().invoke(app, ["mask", "--shape", "100000", "100000", "--max-size", "200000", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert np.load(out).shape == (100_000,)
    assert "acceleration" in res.stdout


def test_memory_check_formats_and_passes_when_unknown(monkeypatch):
    checks.check_memory("x", 10**15, "hint", free=10**16)  # an explicit free figure (CUDA's) wins
    with pytest.raises(InputError, match=r"^x needs about 909.5 TiB, more than the 128.0 MiB of free memory; hint$"):
        checks.check_memory("x", 10**15, "hint")
    monkeypatch.setattr(checks, "available_memory", lambda: None)
    checks.check_memory("x", 10**15, "hint")  # free memory unknown: no refusal
    assert checks.format_bytes(512) == "512 bytes" and checks.format_bytes(3 << 30) == "3.0 GiB"
