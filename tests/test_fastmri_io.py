"""Measured k-space files in and researcher-usable files out: fastMRI .h5 / .npy multi-coil k-space -> complex
.npy, magnitude NIfTI, fastMRI .h5 ``reconstruction`` and JSON sidecar; mask inference; the CLI; bad inputs;
the fastMRI metric convention.

A tiny untrained prior (ngf 8, six levels) and 2 slices of 4 coils at 24 x 20 keep every run near a second:
these tests check plumbing, shapes, units and error handling, not reconstruction quality. ESPIRiT itself is
tested with the coil-map module; here its entry point is replaced by one returning the true maps, so the
runs stay fast and the k-space the estimator is given can be checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

import medscore
from _synth import one_error_line, tiny_model
from medscore.cli.main import app
from medscore.errors import InputError
from medscore.metrics import FASTMRI_METRICS, fastmri_nmse, fastmri_psnr, fastmri_ssim
from medscore.physics import fft2c, ifft2c
from medscore.io.arrays import load_kspace
from medscore.pipeline import reconstruct_kspace_file, reconstruct_multicoil_file
from medscore.solvers import SamplerOptions, score_function

S, C, H, W = 2, 4, 24, 20
FAST = SamplerOptions(preset="fast")


def _acquisition() -> tuple[np.ndarray, np.ndarray]:
    """Fully sampled centred k-space (S, C, H, W) of a phased ellipse, and the true coil maps (C, H, W)."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    img = ((xx**2 / 0.8 + yy**2 / 0.9) < 1) * (1 + 0.5 * xx) * np.exp(1j * (0.6 * yy + 0.3 * xx))
    centres = [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2) * np.exp(1j * cx * yy) for cx, cy in centres])
    vol = np.stack([img * (s + 1) for s in range(S)])[:, None] * maps[None]
    return fft2c(torch.from_numpy(vol.astype(np.complex64))).numpy(), maps.astype(np.complex64)


def _lines(acs: int = 8) -> np.ndarray:
    m = np.zeros(W, dtype=np.float32)
    m[::2] = 1.0
    m[W // 2 - acs // 2: W // 2 + acs // 2] = 1.0
    return m


@pytest.fixture(scope="module")
def acq(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fastmri_io")
    k, maps = _acquisition()
    mask = _lines()
    with h5py.File(root / "mc.h5", "w") as f:
        f.create_dataset("kspace", data=k * mask)
    np.save(root / "full.npy", k)
    np.save(root / "lines.npy", mask)
    np.save(root / "maps.npy", maps)
    with h5py.File(root / "maps.h5", "w") as f:
        f.create_dataset("smaps", data=np.repeat(maps[None], S, axis=0))
    tiny_model(root / "tiny")
    return {"root": root, "k": k, "maps": maps, "mask": mask, "h5": root / "mc.h5", "full": root / "full.npy",
            "lines": root / "lines.npy", "maps_npy": root / "maps.npy", "maps_h5": root / "maps.h5",
            "model": root / "tiny"}


@pytest.fixture()
def fake_espirit(monkeypatch, acq) -> list:
    """Replace ESPIRiT by the true maps; record the k-space batches it is given."""
    calls: list = []

    def estimate(kspace: np.ndarray, calib: int | None = None, **options) -> np.ndarray:
        assert options == {"crop": 0.0, "image_phase": True}  # the benchmark's maps (estimate_image_maps)
        calls.append(np.array(kspace))
        return np.broadcast_to(acq["maps"], kspace.shape).astype(np.complex64)

    monkeypatch.setattr("medscore.physics.coils.estimate_smaps_volume", estimate)
    return calls


def _rss_zero_filled(k: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.sqrt((np.abs(ifft2c(torch.from_numpy(k * mask)).numpy()) ** 2).sum(1))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# round trips


def test_h5_in_all_outputs_out(acq, tmp_path):
    """fastMRI .h5 in, mask inferred, maps from a .npy: every output with its shape, dtype, units and sidecar."""
    out = tmp_path / "rec.nii.gz"
    rep = reconstruct_multicoil_file(acq["h5"], smaps=acq["maps_npy"], model=acq["model"], out=out, opts=FAST,
                                     device="cpu")
    assert _files(tmp_path) == ["rec.h5", "rec.json", "rec.nii.gz", "rec_complex.npy", "rec_panel.png",
                                "rec_zerofilled.nii.gz"]
    cplx = np.load(tmp_path / "rec_complex.npy")
    assert cplx.shape == (S, H, W) and cplx.dtype == np.complex64 and np.isfinite(cplx).all()
    mag = np.asarray(nib.load(str(out)).dataobj)
    assert mag.shape == (H, W, S) and mag.dtype == np.float32
    np.testing.assert_allclose(mag, np.moveaxis(np.abs(cplx), 0, -1), rtol=1e-5, atol=1e-6)
    zf = np.asarray(nib.load(str(tmp_path / "rec_zerofilled.nii.gz")).dataobj)
    np.testing.assert_allclose(np.moveaxis(zf, -1, 0), _rss_zero_filled(acq["k"], acq["mask"]), rtol=1e-4, atol=1e-5)
    with h5py.File(tmp_path / "rec.h5", "r") as f:
        rec = f["reconstruction"][()]
    assert rec.shape == (S, H, W) and rec.dtype == np.float32
    np.testing.assert_allclose(rec, np.abs(cplx), rtol=1e-6)
    info = json.loads((tmp_path / "rec.json").read_text())
    meta = json.loads((acq["model"] / "model.json").read_text())
    assert info["medscore_version"] == medscore.__version__
    assert info["model"]["name"] == "tiny" and info["model"]["sha256"] == meta["sha256"]
    assert info["preset"] == "fast" and info["sampler"]["sampler"] and info["seed"] == 0
    assert info["precision"] == "fp32"  # auto on CPU: bf16 only from 128 x 128 up
    assert info["nfe_per_slice"] == rep.nfe > 0
    assert "inferred" in info["mask"]["source"]
    assert info["mask"]["acceleration"] == pytest.approx(W / acq["mask"].sum(), rel=1e-3)
    assert info["coil_maps"] == "file maps.npy" and info["crop"] is None
    from medscore.physics.coils import estimate_kspace_noise  # the acquisition's noise, as the solver was told
    per_slice = [estimate_kspace_noise(acq["k"][i] * acq["mask"], acq["mask"]) for i in sorted({0, S // 2, S - 1})]
    assert info["kspace_noise_std"] == pytest.approx(min(per_slice), rel=1e-6) and info["kspace_noise_std"] > 0
    assert info["timing_s"]["total"] >= info["timing_s"]["solver"] > 0
    assert info["input"] == {"file": "mc.h5", "shape": [S, C, H, W]}
    assert set(info["outputs"].values()) == set(_files(tmp_path)) - {"rec.json"}
    assert rep.task == "mri-multicoil" and rep.slices == S and rep.outputs["sidecar"] == tmp_path / "rec.json"


def test_npy_kspace_with_mask_file_h5_maps_and_crop(acq, tmp_path):
    """Fully sampled .npy k-space + --mask: undersampled by the mask; maps per slice from .h5; crop (h, w)."""
    out = tmp_path / "r.nii.gz"
    reconstruct_multicoil_file(acq["full"], acq["lines"], smaps=acq["maps_h5"], model=acq["model"], out=out,
                               opts=FAST, device="cpu", crop=(16, 12))
    cplx = np.load(tmp_path / "r_complex.npy")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        rec = f["reconstruction"][()]
    assert rec.shape == (S, 16, 12) and rec.dtype == np.float32
    np.testing.assert_allclose(rec, np.abs(cplx)[:, 4:20, 4:16], rtol=1e-6)
    zf = np.moveaxis(np.asarray(nib.load(str(tmp_path / "r_zerofilled.nii.gz")).dataobj), -1, 0)
    np.testing.assert_allclose(zf, _rss_zero_filled(acq["k"], acq["mask"]), rtol=1e-4, atol=1e-5)
    info = json.loads((tmp_path / "r.json").read_text())
    assert info["mask"]["source"] == "file lines.npy" and info["crop"] == [16, 12]
    assert info["coil_maps"] == "file maps.h5"


def test_file_maps_solve_with_the_phase_moved_in_and_the_output_keeps_their_convention(acq, tmp_path):
    """A file's maps are used times the smooth phase of a TV-CS pre-reconstruction (the image to solve is nearly
    real), and the complex output is rotated back: its phase is the phased ellipse's, as the given maps encode it."""
    from medscore.physics import normalize_smaps
    from medscore.io.arrays import open_smaps
    from medscore.tasks.measured import CoilMaps

    y = acq["k"] * acq["mask"]
    with open_smaps(acq["maps_npy"], y.shape) as f:
        maps, phase = CoilMaps(f).batch(slice(0, S), y, np.broadcast_to(acq["mask"], (H, W)).copy())
    given = normalize_smaps(torch.from_numpy(np.broadcast_to(acq["maps"], y.shape).copy()))
    assert phase.shape == (S, 1, H, W) and torch.allclose(phase.abs(), torch.ones(()), atol=1e-5)
    torch.testing.assert_close(maps, given * phase, rtol=1e-5, atol=1e-6)
    coil_images = ifft2c(torch.from_numpy(acq["k"]))  # the true image as each set of maps encodes it
    inside = torch.from_numpy(np.abs(ifft2c(torch.from_numpy(acq["k"])).numpy()).sum((0, 1)) > 0.5)

    def imaginary_fraction(m: torch.Tensor) -> float:
        x = (m.conj() * coil_images).sum(1)[:, inside]
        return float(x.imag.pow(2).sum() / x.abs().pow(2).sum())

    assert imaginary_fraction(maps) < 0.1 * imaginary_fraction(given), (imaginary_fraction(maps),
                                                                          imaginary_fraction(given))
    reconstruct_multicoil_file(acq["full"], acq["lines"], smaps=acq["maps_npy"], model=acq["model"],
                               out=tmp_path / "p.nii.gz", opts=FAST, device="cpu")
    cplx = torch.from_numpy(np.load(tmp_path / "p_complex.npy"))
    truth = (given.conj() * coil_images).sum(1)
    error = torch.angle(cplx * truth.conj())[:, inside].abs().mean()
    spread = torch.angle(truth)[:, inside].abs().mean()  # what an output left nearly real would be off by
    assert error < 0.25 * spread, (float(error), float(spread))


def test_estimated_maps_see_only_the_measured_samples(acq, tmp_path, fake_espirit):
    """Without --smaps the maps are estimated per batch from the *masked* k-space (no data crime), on the image
    scale the solver works on (ESPIRiT does not care; the TV pre-reconstruction of the phase does)."""
    reconstruct_multicoil_file(acq["full"], acq["lines"], model=acq["model"], out=tmp_path / "e.nii.gz", opts=FAST,
                               device="cpu", batch_size=1)
    info = json.loads((tmp_path / "e.json").read_text())
    assert [c.shape for c in fake_espirit] == [(1, C, H, W)] * S
    for s, seen in enumerate(fake_espirit):
        measured = acq["k"][s:s + 1] * acq["mask"]
        np.testing.assert_array_equal(seen == 0, measured == 0)
        np.testing.assert_allclose(seen * info["scale"], measured, rtol=1e-5, atol=1e-7 * np.abs(measured).max())
    assert "ESPIRiT" in info["coil_maps"]


def test_mask_inferred_where_any_coil_is_non_zero(acq, tmp_path, fake_espirit):
    """Coils measuring different lines: the inferred mask is their union (over coils and slices)."""
    k = acq["k"].copy()
    k[:, 0, :, 1::2] = 0  # coil 0 misses the odd lines, the others keep them
    k[:, 1:, :, 3] = 0  # line 3: now missing from every coil -> not sampled
    k[:, :, :, 5] = 0
    k[1, 2, :, 5] = acq["k"][1, 2, :, 5]  # line 5: one coil of one slice
    np.save(tmp_path / "k.npy", k)
    reconstruct_multicoil_file(tmp_path / "k.npy", model=acq["model"], out=tmp_path / "o" / "m.nii.gz", opts=FAST,
                               device="cpu")
    info = json.loads((tmp_path / "o" / "m.json").read_text())
    assert info["mask"]["acceleration"] == pytest.approx(W / (W - 1), rel=1e-3)  # only line 3 is missing
    zf = np.moveaxis(np.asarray(nib.load(str(tmp_path / "o" / "m_zerofilled.nii.gz")).dataobj), -1, 0)
    np.testing.assert_allclose(zf, _rss_zero_filled(k, 1.0), rtol=1e-4, atol=1e-5)


def test_single_coil_h5_still_works_and_gets_the_new_outputs(acq, tmp_path):
    k1 = (acq["k"][:, 0] * acq["mask"]).astype(np.complex64)
    with h5py.File(tmp_path / "sc.h5", "w") as f:
        f.create_dataset("kspace", data=k1)
    np.testing.assert_array_equal(load_kspace(tmp_path / "sc.h5"), k1)
    rep = reconstruct_kspace_file(tmp_path / "sc.h5", None, model=acq["model"], out=tmp_path / "o" / "s.nii.gz",
                                  opts=FAST, device="cpu", crop=16)
    assert rep.task == "mri-kspace"
    assert nib.load(str(tmp_path / "o" / "s.nii.gz")).shape == (H, W, S)
    assert np.load(tmp_path / "o" / "s_complex.npy").shape == (S, H, W)
    with h5py.File(tmp_path / "o" / "s.h5", "r") as f:
        assert f["reconstruction"].shape == (S, 16, 16)
    info = json.loads((tmp_path / "o" / "s.json").read_text())
    assert info["coil_maps"].startswith("one-coil map") and info["timing_s"]["coil_maps"] > 0
    # the image's phase moves into a one-coil map, so the sidecar names the multi-coil passes the solver used
    from medscore.sampling import PRESETS

    from medscore.training.noise import geometric_sigmas

    multicoil = PRESETS["fast"].for_task("mri-multicoil")
    assert info["sampler"] == {k: v for k, v in multicoil.to_dict().items() if k not in ("tasks", "note")}
    # both passes counted, on the tiny model's 6 levels
    assert info["sampler"]["prepass"] and info["nfe_per_slice"] == multicoil.total_nfe(geometric_sigmas(1.0, 0.01, 6))
    with pytest.raises(InputError, match="multi-coil"):
        load_kspace(acq["h5"])


# ---------------------------------------------------------------------------------------------------------------
# a complex (2-channel) prior is applied to the complex image itself


def _channel_model(folder: Path, channels: int) -> Path:
    from medscore.priors.checkpoint import save_model
    from medscore.config import ModelConfig, TrainConfig
    from medscore.nets import build_model
    from medscore.training.noise import geometric_sigmas

    cfg = TrainConfig(model=ModelConfig(ngf=8, in_channels=channels))
    torch.manual_seed(0)
    net = build_model(cfg.model, geometric_sigmas(1.0, 0.01, 6))
    save_model(folder, net, net, cfg, step=0)
    return folder


def test_score_function_applies_a_two_channel_prior_directly():
    seen = []

    class Prior(torch.nn.Module):
        def __init__(self, in_channels: int) -> None:
            super().__init__()
            self.in_channels = in_channels

        def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            return -x

    x, sigma = torch.ones(3, 2, 8, 8), torch.full((3,), 0.5)
    score_function(Prior(2), complex_image=True)(x, sigma)
    score_function(Prior(1), complex_image=True)(x, sigma)
    assert seen == [(3, 2, 8, 8), (6, 1, 8, 8)]


def test_complex_prior_runs_on_multicoil_kspace(acq, tmp_path):
    model = _channel_model(tmp_path / "complex", 2)
    reconstruct_multicoil_file(acq["h5"], smaps=acq["maps_npy"], model=model, out=tmp_path / "c.nii.gz", opts=FAST,
                               device="cpu")
    assert json.loads((tmp_path / "c.json").read_text())["model"]["in_channels"] == 2
    assert np.isfinite(np.load(tmp_path / "c_complex.npy")).all()


# ---------------------------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture()
def runner(monkeypatch):
    monkeypatch.delenv("MEDSCORE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not wrap the error line
    return CliRunner()


def _run(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def _quick(acq) -> list:
    return ["--model", acq["model"], "--preset", "fast", "--device", "cpu"]


def test_cli_multicoil_h5_with_no_other_argument(acq, tmp_path, runner, fake_espirit):
    """`medscore reconstruct file.h5`: mask inferred, maps estimated, outputs next to the input."""
    scan = tmp_path / "file1000.h5"
    scan.write_bytes(acq["h5"].read_bytes())
    res = _run(runner, "reconstruct", scan, *_quick(acq))
    assert res.exit_code == 0, (res.output[-2000:], repr(res.exception))
    stem = "file1000_medscore"
    assert _files(tmp_path) == sorted(["file1000.h5", f"{stem}.nii.gz", f"{stem}_zerofilled.nii.gz",
                                       f"{stem}_panel.png", f"{stem}_complex.npy", f"{stem}.h5", f"{stem}.json"])
    assert len(fake_espirit) >= 1 and all(c.shape[1:] == (C, H, W) for c in fake_espirit)
    info = json.loads((tmp_path / f"{stem}.json").read_text())
    assert "ESPIRiT" in info["coil_maps"] and "inferred" in info["mask"]["source"]
    assert "no metrics" in " ".join(res.stdout.split())


def test_cli_smaps_and_crop_name_the_h5_for_fastmri_evaluate(acq, tmp_path, runner):
    """-o recon/file1000.nii.gz writes recon/file1000.h5, the name fastMRI's evaluate.py pairs with the target."""
    np.save(tmp_path / "file1000.npy", np.load(acq["full"]) * acq["mask"])
    res = _run(runner, "reconstruct", tmp_path / "file1000.npy", "--smaps", acq["maps_npy"], "--crop", "16",
               "-o", tmp_path / "recon" / "file1000.nii.gz", *_quick(acq))
    assert res.exit_code == 0, (res.output[-2000:], repr(res.exception))
    with h5py.File(tmp_path / "recon" / "file1000.h5", "r") as f:
        assert f["reconstruction"].shape == (S, 16, 16) and f["reconstruction"].dtype == np.float32


@pytest.fixture(scope="module")
def bad(acq, tmp_path_factory) -> dict[str, list]:
    """Bad inputs, by name: the CLI arguments after `reconstruct` (the input file first)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    k = acq["k"] * acq["mask"]
    with h5py.File(root / "real.h5", "w") as f:
        f.create_dataset("kspace", data=np.abs(k).astype(np.float32))
    with h5py.File(root / "nokspace.h5", "w") as f:
        f.create_dataset("reconstruction_rss", data=np.ones((S, H, W), np.float32))
    (root / "corrupt.h5").write_bytes(b"not an HDF5 file at all")
    np.save(root / "rank5.npy", k[None])
    nan = k.copy()
    nan[1, 2, 3, 4] = np.nan
    np.save(root / "nan.npy", nan)
    np.save(root / "single.npy", k[:, 0])
    np.save(root / "image.npy", np.ones((H, W, 3), np.float32))
    np.save(root / "maps_shape.npy", acq["maps"][:, :, :-1])
    np.save(root / "maps_real.npy", np.abs(acq["maps"]))
    narrow = acq["mask"].copy()
    narrow[W // 2 - 4: W // 2 + 4] = 0
    narrow[W // 2 - 1: W // 2 + 1] = 1  # a 2-line centre: too narrow for ESPIRiT
    np.save(root / "narrow.npy", narrow)
    h5, maps, model = acq["h5"], acq["maps_npy"], ["--model", acq["model"]]
    return {"root": root, "real": [root / "real.h5", *model], "nokspace": [root / "nokspace.h5", *model],
            "corrupt": [root / "corrupt.h5", *model], "rank5": [root / "rank5.npy", *model],
            "nan": [root / "nan.npy", *model], "single_with_maps": [root / "single.npy", "--smaps", maps, *model],
            "maps_shape": [h5, "--smaps", root / "maps_shape.npy", *model],
            "maps_real": [h5, "--smaps", root / "maps_real.npy", *model],
            "maps_missing": [h5, "--smaps", root / "nope.npy", *model],
            "crop": [h5, "--smaps", maps, "--crop", "32", *model],
            "narrow_acs": [acq["full"], "--mask", root / "narrow.npy", *model],
            "image_with_crop": [root / "image.npy", "--crop", "8", *model],
            "channels": [h5, "--smaps", maps, "--model", _channel_model(root / "rgb", 3)]}


@pytest.mark.parametrize("case, match", [
    ("real", "complex-valued"), ("nokspace", "'kspace' dataset"), ("corrupt", "cannot read"),
    ("rank5", "(S, C, H, W)"), ("nan", "NaN"), ("single_with_maps", "multi-coil"), ("maps_shape", "do not fit"),
    ("maps_real", "complex-valued"), ("maps_missing", "not found"), ("crop", "--crop"),
    ("narrow_acs", "coil maps"), ("image_with_crop", "--crop"), ("channels", "3-channel"),
])
def test_bad_inputs_one_line_and_nothing_written(acq, bad, tmp_path, runner, case, match):
    before = _files(bad["root"])
    out = tmp_path / "out" / "rec.nii.gz"
    line = one_error_line(_run(runner, "reconstruct", *bad[case], "-o", out, "--preset", "fast", "--device", "cpu"))
    assert match in line, line
    assert not out.parent.exists() or _files(out.parent) == []
    assert _files(bad["root"]) == before  # no temp file left beside the inputs either


# ---------------------------------------------------------------------------------------------------------------
# fastMRI metric convention


def test_fastmri_metrics_hand_computed():
    """Two constant slices (2 and 1), estimate + 0.1: the data range is the *volume's* maximum, 2."""
    ref = np.stack([np.full((16, 16), 2.0), np.full((16, 16), 1.0)])
    est = ref + 0.1
    assert fastmri_psnr(ref, est) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-9)  # 26.02 dB, not 20 for slice 2
    c1 = (0.01 * 2.0) ** 2  # zero variances: SSIM is its luminance term, with L = 2 for both slices
    lum = [(2 * a * (a + 0.1) + c1) / (a * a + (a + 0.1) ** 2 + c1) for a in (2.0, 1.0)]
    assert fastmri_ssim(ref, est) == pytest.approx(np.mean(lum), rel=1e-7)
    assert fastmri_nmse(ref, est) == pytest.approx(0.01 * 512 / (4 * 256 + 256))
    assert fastmri_psnr(ref, ref.copy()) == math.inf and fastmri_ssim(ref, ref.copy()) == pytest.approx(1.0)
    assert set(FASTMRI_METRICS) == {"psnr", "ssim", "nmse"}


def test_fastmri_ssim_is_the_slice_mean_at_the_volume_range_and_crops():
    rng = np.random.default_rng(0)
    ref = rng.random((3, 20, 24)) * np.array([1.0, 2.0, 4.0])[:, None, None]
    est = ref + 0.2 * rng.standard_normal(ref.shape)
    per_slice = [structural_similarity(r, e, win_size=7, data_range=ref.max()) for r, e in zip(ref, est)]
    assert fastmri_ssim(ref, est) == pytest.approx(np.mean(per_slice), rel=1e-9)
    assert fastmri_psnr(ref, est, crop=(10, 12)) == fastmri_psnr(ref[:, 5:15, 6:18], est[:, 5:15, 6:18])
    with pytest.raises(ValueError, match="maximum"):
        fastmri_psnr(np.zeros((2, 8, 8)), np.ones((2, 8, 8)))


def test_noise_level_falls_back_to_noiseless_when_the_periphery_is_not_measured():
    """A centre-only mask leaves no k-space periphery to estimate the noise from: a warning, and noise 0."""
    from types import SimpleNamespace

    from medscore.pipeline.kspace_source import kspace_noise as _kspace_noise

    k = np.ones((3, 2, 16, 16), np.complex64)
    mask = np.pad(np.ones((6, 6), np.float32), 5)
    src = SimpleNamespace(shape=k.shape, path=Path("centre.h5"), read=lambda sl: k[sl])
    with pytest.warns(UserWarning, match="noiseless"):
        assert _kspace_noise(src, mask) == 0.0
    wide = np.ones((16, 16), np.float32)
    assert _kspace_noise(src, wide) == pytest.approx(1 / np.sqrt(np.log(2)))  # |k| = 1 everywhere
