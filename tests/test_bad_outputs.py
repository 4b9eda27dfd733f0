"""Bad outputs (issue 29): every output path checked before the first slice is solved, a full disk as one line and
no file left, long runs (demo, benchmark, tune) refusing a bad output up front, ``-o NAME.h5`` writing the fastMRI
file alone, ``--noise-std`` meaning the same noise whatever the scan's range. CLI cases: exit code 1, one ``error:``
line, no traceback, no new file. Tests run as root, which ignores permission bits, so an unwritable folder is a
path under an existing *file* or a monkeypatched ``tempfile.mkstemp``.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _synth import one_error_line, phantom, tiny_model, write_nifti
from medscore.cli.main import app
from medscore.errors import InputError, OutputError
from medscore.io import atomic
from medscore.io.atomic import atomic_group, atomic_path
from medscore.nets import refinenet
from medscore.pipeline import denoise_file, reconstruct_kspace_file
from medscore.solvers import SamplerOptions
from medscore.tasks import ImageStack, get_task
from medscore.tasks.denoise import DenoiseInputs

S = 16
FAST = SamplerOptions(preset="fast")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_outputs")
    write_nifti(root / "scan.nii.gz", 100.0 * phantom((S, S, 3), seed=1) + 10.0)
    lines = np.zeros(S, dtype=np.float32)
    lines[::2] = 1
    np.save(root / "lines.npy", lines)
    np.save(root / "holes.npy", np.pad(np.zeros((4, 4), np.float32), 6, constant_values=1))
    base = phantom((S, S, 3), seed=2)[:, :, 1]
    img = np.stack([base, base[::-1]]).astype(np.complex64)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)) * lines
    with h5py.File(root / "ksp.h5", "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
    tiny_model(root / "tiny")
    (root / "afile").write_text("a file where a folder should be")
    return {"root": root, "model": root / "tiny", "ksp": root / "ksp.h5"}


def _boom(*args, **kwargs):
    raise AssertionError("the work ran: the bad output was not caught up front")


@pytest.fixture
def tripwire(monkeypatch):
    """No case may run the score network, the demo/benchmark tasks or tune's trials."""
    for cls in vars(refinenet).values():
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and "forward" in vars(cls):
            monkeypatch.setattr(cls, "forward", _boom)
    monkeypatch.setattr("medscore.evaluation.benchmark.run_tasks", _boom)
    monkeypatch.setattr("medscore.evaluation.tuning.run_trials", _boom)
    monkeypatch.delenv("MEDSCORE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "300")


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _readonly(monkeypatch, folder: Path) -> None:
    """``folder`` refuses new files, as a read-only folder would for a non-root user."""
    real = atomic.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


SOLVE = ["--model", "{root}/tiny", "--device", "cpu", "--preset", "fast"]
DEN = ["denoise", "{root}/scan.nii.gz", "--add-noise", "0.1", "-o", "{out}/d.nii.gz", *SOLVE]
REC = ["reconstruct", "{root}/scan.nii.gz", "--mask", "{root}/lines.npy", "-o", "{out}/r.nii.gz", *SOLVE]
INP = ["inpaint", "{root}/scan.nii.gz", "--mask", "{root}/holes.npy", "-o", "{out}/i.nii.gz", *SOLVE]
KSP = ["reconstruct", "{root}/ksp.h5", "-o", "{out}/k.nii.gz", *SOLVE]
FOLDER_CASES = {  # case: (argv, the folder put in the way of one of its outputs)
    "denoise-panel": (DEN, "d_panel.png"),
    "denoise-noisy": (DEN, "d_noisy.nii.gz"),
    "reconstruct-zerofilled": (REC, "r_zerofilled.nii.gz"),
    "reconstruct-std": (REC + ["--samples", "2"], "r_std.nii.gz"),
    "inpaint-masked": (INP, "i_masked.nii.gz"),
    "kspace-sidecar": (KSP, "k.json"),
    "kspace-complex": (KSP, "k_complex.npy"),
    "kspace-fastmri": (KSP, "k.h5"),
    "kspace-panel": (KSP, "k_panel.png"),
    "kspace-h5-out": (KSP[:2] + ["-o", "{out}/k.h5", *SOLVE], "k.h5"),  # --out itself: "is a folder"
    "demo-panel": (["demo", "--out", "{out}"], "mri-1d-8x_panel.png"),
    "benchmark-figure": (["benchmark", "--out", "{out}", "--tasks", "mri-1d-4x"], "figures/nfe_curve_mri4x.png"),
    "benchmark-task-file": (["benchmark", "--out", "{out}", "--tasks", "inpaint-70", "--no-curve", "--no-external"],
                            "figures/benchmark/inpaint-70_medscore.nii.gz"),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_a_folder_in_the_way_of_any_output_is_refused_before_the_solve(case, env, tmp_path, tripwire):
    argv, blocker = FOLDER_CASES[case]
    (tmp_path / blocker).mkdir(parents=True)
    before = _snapshot(tmp_path)
    res = CliRunner().invoke(app, [a.format(root=env["root"], out=tmp_path) for a in argv])
    line = one_error_line(res)
    assert ("in the way" in line or "is a folder" in line) and blocker.split("/")[-1] in line, line
    assert _snapshot(tmp_path) == before


LONG_RUN_CASES = {  # case: (argv, words of the message); {ro} is a folder that refuses new files
    "demo-into-a-file": (["demo", "--out", "{root}/afile"], "--out"),
    "demo-under-a-file": (["demo", "--out", "{root}/afile/demo"], "not a folder"),
    "demo-read-only": (["demo", "--out", "{ro}/demo"], "not writable"),
    "demo-bogus-preset": (["demo", "--out", "{out}/demo", "--preset", "bogus", "--model", "{root}/tiny"],
                          "--preset: unknown preset(s) ['bogus']"),
    "benchmark-into-a-file": (["benchmark", "--out", "{root}/afile"], "is a file"),
    "benchmark-read-only": (["benchmark", "--out", "{ro}"], "not writable"),
    "benchmark-bogus-preset": (["benchmark", "--out", "{out}/b", "--presets", "fast,bogus", "--model", "{root}/tiny"],
                               "--presets"),
    "benchmark-slices-abc": (["benchmark", "--out", "{out}/b", "--slices", "abc"], "--slices must be 'all' or"),
    "benchmark-slices-1000": (["benchmark", "--out", "{out}/b", "--slices", "1000"], "indices in 0..9"),
    "benchmark-slices-negative": (["benchmark", "--out", "{out}/b", "--slices", "2,-1"], "indices in 0..9"),
    "benchmark-slices-empty-item": (["benchmark", "--out", "{out}/b", "--slices", "1,,2"], "--slices"),
    "tune-read-only": (["tune", "{ro}"], "--no-write"),
}


@pytest.mark.parametrize("case", sorted(LONG_RUN_CASES))
def test_long_runs_refuse_a_bad_output_or_option_up_front(case, env, tmp_path, tripwire, monkeypatch):
    argv, words = LONG_RUN_CASES[case]
    ro = tmp_path / "ro"
    tiny_model(ro)  # tune's MODEL, or a folder for the others
    _readonly(monkeypatch, ro)
    before, root_before = _snapshot(tmp_path), _snapshot(env["root"])
    res = CliRunner().invoke(app, [a.format(root=env["root"], out=tmp_path, ro=ro) for a in argv])
    line = one_error_line(res)
    assert words in line, line
    assert _snapshot(tmp_path) == before and _snapshot(env["root"]) == root_before


DISK_FULL = r"""
import json, resource, sys
from pathlib import Path
import numpy as np, torch
from typer.testing import CliRunner
from medscore.cli.main import app
from medscore.io.pictures import save_panel
from medscore.io.scans import load_scan, save_like
from medscore.pipeline.fastmri import save_complex, save_reconstruction_h5, save_sidecar
from medscore.evaluation.report import write_markdown

torch.set_num_threads(1)
root, out = Path(sys.argv[1]), Path(sys.argv[2])
scan = load_scan(root / "scan.nii.gz")
img = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
writers = {
    "nifti": lambda p: save_like(scan, scan.data, p / "o.nii.gz"),
    "png": lambda p: save_panel([img[0], img[1]], ["a", "b"], p / "o.png"),
    "npy": lambda p: save_complex(p / "o.npy", img.astype(np.complex64)),
    "h5": lambda p: save_reconstruction_h5(p / "o.h5", img, provenance={"model": "x" * 200}),
    "json": lambda p: save_sidecar(p / "o.json", {"model": "x" * 200}),
    "markdown": lambda p: write_markdown([], p / "o.md", "medscore benchmark", "x" * 200),
}
runs = {"denoise": ["denoise", str(root / "scan.nii.gz"), "--add-noise", "0.1"],
        "kspace-nifti": ["reconstruct", str(root / "ksp.h5")], "kspace-h5": ["reconstruct", str(root / "ksp.h5")]}
suffix = {"denoise": ".nii.gz", "kspace-nifti": ".nii.gz", "kspace-h5": ".h5"}
resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))  # Python ignores SIGXFSZ: writes fail with EFBIG
report = {}
for name, write in writers.items():
    (out / name).mkdir()
    try:
        report[name] = ["no error", write(out / name)]
    except Exception as exc:
        report[name] = [type(exc).__name__, str(exc), sorted(p.name for p in (out / name).iterdir())]
for name, argv in runs.items():
    (out / name).mkdir()
    opts = ["-o", str(out / name / ("r" + suffix[name])), "--model", str(root / "tiny"), "--preset", "fast"]
    res = CliRunner().invoke(app, argv + opts + ["--device", "cpu"])
    report[name] = [res.exit_code, res.stderr, sorted(p.name for p in (out / name).iterdir())]
print(json.dumps(report, default=str))
"""


def test_a_full_disk_is_one_line_and_leaves_no_file(env, tmp_path):
    """RLIMIT_FSIZE in a subprocess: every writer (NIfTI, PNG, npy, h5, json, markdown) and three CLI runs."""
    environ = {k: v for k, v in os.environ.items() if k != "MEDSCORE_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", DISK_FULL, str(env["root"]), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, env={**environ, "COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    for name in ("nifti", "png", "npy", "h5", "json", "markdown"):
        kind, msg, left = report[name]
        assert kind == "OutputError" and "\n" not in msg and left == [], (name, report[name])
        assert msg.startswith(f"cannot write {tmp_path / name}/o.") and "File too large" in msg, msg
    for name in ("denoise", "kspace-nifti", "kspace-h5"):
        code, stderr, left = report[name]
        errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
        assert code == 1 and len(errors) == 1 and "File too large" in errors[0], (name, stderr)
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
        assert left == [], (name, left)


def test_a_write_that_fails_late_leaves_none_of_the_run_s_outputs(env, tmp_path, monkeypatch):
    """The panel is written last: when it fails, the NIfTIs already written in the group are not left either."""
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("PIL.Image.Image.save", no_space)
    with pytest.raises(OutputError, match="d_panel.png: No space left on device; no output of this run") as info:
        denoise_file(env["root"] / "scan.nii.gz", noise_std=0.1, model=env["model"], out=tmp_path / "d.nii.gz",
                     opts=FAST, device="cpu")
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []


def test_an_atomic_group_renames_all_or_none(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(OutputError, match="b.txt: File too large"):
        with atomic_group():
            with atomic_path(tmp_path / "a.txt") as tmp:
                tmp.write_text("new")
            with atomic_path(tmp_path / "b.txt") as tmp:
                raise OSError(errno.EFBIG, "File too large")
    assert _snapshot(tmp_path) == {"a.txt"} and (tmp_path / "a.txt").read_text() == "old"
    assert not atomic.live_temp_files()
    with atomic_group():
        for name in ("a.txt", "b.txt"):
            with atomic_path(tmp_path / name) as tmp:
                tmp.write_text(name)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.txt": "a.txt", "b.txt": "b.txt"}


def test_out_h5_on_kspace_writes_that_fastmri_file_alone_and_out_nifti_every_file(env, tmp_path):
    out = tmp_path / "recon.h5"
    opts = SamplerOptions(preset="fast", samples=2)
    rep = reconstruct_kspace_file(env["ksp"], model=env["model"], out=out, opts=opts, device="cpu", crop=12)
    assert rep.outputs == {"fastmri": out} and _snapshot(tmp_path) == {"recon.h5"}
    with h5py.File(out, "r") as f:
        assert f["reconstruction"].shape == (2, 12, 12) and f["reconstruction"].dtype == np.float32
        assert f["std"].shape == (2, 12, 12) and f.attrs["crop"] == "12x12"
        info = json.loads(f.attrs["medscore_provenance"])
    assert info["model"]["name"] == "tiny" and info["preset"] == "fast" and info["crop"] == [12, 12]
    assert info["input"]["file"] == "ksp.h5" and info["nfe_per_slice"] == rep.nfe
    reconstruct_kspace_file(env["ksp"], model=env["model"], out=tmp_path / "r.nii.gz", opts=FAST, device="cpu")
    assert _snapshot(tmp_path) == {"recon.h5", "r.nii.gz", "r_zerofilled.nii.gz", "r_panel.png", "r_complex.npy",
                                   "r.h5", "r.json"}  # -o NAME.nii.gz: every file, as before
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert json.loads(f.attrs["medscore_provenance"])["task"] == "mri-kspace" and "std" not in f


H5_CLI_CASES = {
    "out-is-the-input": (["reconstruct", "{root}/ksp.h5", "-o", "{root}/ksp.h5"], "overwrite the input"),
    "h5-out-for-an-image": (["denoise", "{root}/scan.nii.gz", "-o", "{out}/d.h5"], "needs k-space input"),
    "png-out-for-kspace": (["reconstruct", "{root}/ksp.h5", "-o", "{out}/k.png"], "(or a fastMRI .h5)"),
}


@pytest.mark.parametrize("case", sorted(H5_CLI_CASES))
def test_h5_outputs_are_refused_where_they_do_not_fit(case, env, tmp_path, tripwire):
    argv, words = H5_CLI_CASES[case]
    before = _snapshot(env["root"])
    res = CliRunner().invoke(app, [a.format(root=env["root"], out=tmp_path) for a in argv + SOLVE])
    assert words in one_error_line(res)
    assert _snapshot(env["root"]) == before and list(tmp_path.iterdir()) == []


def test_h5_outputs_in_the_api(env, tmp_path, tripwire):
    run = {"model": env["model"], "opts": FAST, "device": "cpu"}
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        reconstruct_kspace_file(env["ksp"], out=env["ksp"], **run)
    with pytest.raises(InputError, match="must be a .nii or .nii.gz file, got d.h5"):
        denoise_file(env["root"] / "scan.nii.gz", noise_std=0.1, out=tmp_path / "d.h5", **run)
    assert list(tmp_path.iterdir()) == []


def test_noise_std_is_a_fraction_of_the_upper_percentile_on_any_range():
    task, ref = get_task("denoise"), np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    stack = ImageStack(ref, (-40.0, 100.0))  # noise below a zero background: p0 = -40
    assert stack.model_std(0.1) == pytest.approx(0.1 * 100 / 140)
    _, sigma, info = task.noisy_input(stack, DenoiseInputs(noise_std=0.1))
    assert sigma == pytest.approx(0.1 / 1.4)
    assert info == {"noise_std": 0.1, "noise_std_model": round(0.1 / 1.4, 6), "noise_std_from": "given"}
    _, sigma, info = task.noisy_input(stack, DenoiseInputs(add_noise=0.05))  # simulated: the [0, 1] scale, as before
    assert sigma == 0.05 and info["noise_std_from"] == "simulated" and info["noise_std"] == pytest.approx(0.07)
    with pytest.raises(InputError, match="fraction of the scan's upper-percentile intensity"):
        task.noisy_input(ImageStack(ref, (-5.0, -1.0)), DenoiseInputs(noise_std=0.1))


def test_noise_std_of_a_zero_background_scan_is_at_least_as_good_as_the_estimate(tmp_path):
    """A 64 x 64 corner of an embedded test slice (40 % zero background) plus Gaussian noise of std 0.1 x its
    99.5th percentile; --noise-std is that std as a fraction of the noisy scan's 99.5th percentile. Before the fix
    the level went to the solver unconverted (p0 < 0 stretches the scale): 27.8 dB against 31.4 dB estimated."""
    from medscore.io.embedded import held_out
    from medscore.metrics import psnr
    from medscore.priors import load_prior

    clean = 100.0 * held_out("test")[5][:64, :64]
    std = 0.1 * np.percentile(clean, 99.5)
    noisy = clean + std * np.random.default_rng(0).standard_normal(clean.shape)
    scan = write_nifti(tmp_path / "noisy.nii.gz", noisy[:, :, None])
    lo, hi = np.percentile(noisy, [0, 99.5])
    prior, quality = load_prior(None), {}
    for label, noise_std in (("given", std / hi), ("estimated", None)):
        rep = denoise_file(scan, noise_std=noise_std, model=prior, out=tmp_path / f"{label}.nii.gz", opts=FAST,
                           device="cpu")
        est = np.asarray(nib.load(str(rep.outputs["output"])).dataobj)[:, :, 0]
        quality[label] = float(psnr(clean / (10 * std), est / (10 * std)))
        assert rep.info["noise_std_from"] == label
        if label == "given":  # the true std on the model's scale, (x - p0) / (p99.5 - p0)
            assert rep.info["noise_std_model"] == pytest.approx(std / (hi - lo), rel=1e-3)
    assert quality["given"] >= quality["estimated"] - 0.2, quality  # the bug cost 3.6 dB; priors differ by 0.1
