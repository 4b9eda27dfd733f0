"""The external benchmark's pieces: HFEN, BART's pics through .cfl files, external scans, the CLI's checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medscore import metrics as M
from medscore.baselines.bart import bart_available, ecalib, pics, read_cfl, write_cfl
from medscore.evaluation.external import EXTERNAL_SCANS, available_scans, block_mean, load_external
from medscore.io.embedded import held_out
from medscore.physics import SingleCoilMRI, make_mask

needs_bart = pytest.mark.skipif(not bart_available(), reason="BART is not installed (apt-get install bart)")


def _slice(shape=(151, 187)) -> np.ndarray:
    return np.ascontiguousarray(held_out("test")[4][: shape[0], : shape[1]], dtype=np.float32)


def test_hfen_is_zero_for_the_truth_one_for_double_and_blind_to_offsets():
    ref = _slice()
    assert M.hfen(ref, ref) == 0.0
    assert M.hfen(ref, 2 * ref) == pytest.approx(1.0, rel=1e-6)  # LoG is linear: ||LoG ref|| / ||LoG ref||
    assert M.hfen(ref, ref + 0.2) < 1e-3  # a constant has no high frequencies (but for the kernel's truncation)


def test_hfen_punishes_a_cartoon_more_than_psnr_does():
    from scipy.ndimage import gaussian_filter

    ref = _slice()
    rng = np.random.default_rng(0)
    cartoon = gaussian_filter(ref, 1.5)
    noisy = ref + rng.normal(0, np.sqrt(np.mean((cartoon - ref) ** 2)), ref.shape).astype(np.float32)
    assert abs(M.psnr(ref, cartoon) - M.psnr(ref, noisy)) < 0.1  # the same PSNR by construction
    assert M.hfen(ref, cartoon) > 1.5 * M.hfen(ref, noisy)  # the lost detail weighs more than white noise
    stack = np.stack([ref, cartoon])[:, None]
    assert M.hfen(stack, stack).shape == (2,)


def test_cfl_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(5, 7, 1, 3)) + 1j * rng.normal(size=(5, 7, 1, 3))).astype(np.complex64)
    write_cfl(tmp_path / "a", arr)
    back = read_cfl(tmp_path / "a")
    np.testing.assert_array_equal(back, arr)
    assert (tmp_path / "a.hdr").read_text().splitlines()[1] == "5 7 1 3"


@needs_bart
@pytest.mark.parametrize("shape", [(151, 187), (150, 186)])
def test_bart_pics_of_full_kspace_is_the_image_in_medscores_frame(shape):
    x = torch.from_numpy(_slice(shape))[None, None]
    y = SingleCoilMRI(torch.ones(shape[1])).A(x)
    out = np.abs(pics(y[0].numpy(), None, 1e-6, iters=30))
    assert M.psnr(x[0, 0].numpy(), out) > 80  # odd sizes too: the frames agree to the pixel


@needs_bart
def test_bart_pics_beats_zero_filling_and_ecalib_maps_fit_multicoil():
    from medscore.physics.simulate import simulate_multicoil

    ref = _slice()
    mask = torch.from_numpy(make_mask("random", ref.shape, 4, 0.08, seed=0))
    op = SingleCoilMRI(mask)
    y = op.A(torch.from_numpy(ref)[None, None])
    zf = op.zero_filled_magnitude(y)[0, 0].numpy()
    tv = np.abs(pics(y[0].numpy(), None, 1e-2, reg="tv", iters=60))
    assert M.psnr(ref, tv) > M.psnr(ref, zf) + 2
    acq = simulate_multicoil(ref, num_coils=8, seed=0)
    k = np.asarray(acq.kspace)
    maps = ecalib(k)
    assert maps.shape == k.shape
    assert M.psnr(ref, np.abs(pics(k, maps, 1e-6, iters=30))) > 40


def test_block_mean_is_the_coarse_voxel_average():
    vol = np.arange(4 * 6 * 2, dtype=np.float32).reshape(4, 6, 2)
    out = block_mean(vol, 2)
    assert out.shape == (2, 3, 1)
    assert out[0, 0, 0] == pytest.approx(vol[:2, :2, :2].mean())
    assert block_mean(vol, 1) is vol


def test_the_epi_loads_scaled_with_separate_validation_slices():
    epi = EXTERNAL_SCANS["epi"]
    test, val, affine = load_external(epi)
    assert test.shape == (3, 1, 128, 96) and val.shape == (1, 1, 128, 96)
    assert set(epi.test).isdisjoint(epi.val)
    assert 0.9 < float(torch.quantile(torch.cat([test, val]).flatten(), 0.99)) < 1.6
    assert affine.shape == (4, 4)


def test_missing_scans_are_skipped_with_a_note(monkeypatch, tmp_path):
    from dataclasses import replace

    from medscore.evaluation import external

    gone = replace(EXTERNAL_SCANS["inia19"], locate=lambda: tmp_path / "none.nii.gz")
    monkeypatch.setitem(external.EXTERNAL_SCANS, "inia19", gone)
    notes: list[str] = []
    found = available_scans(["epi", "inia19"], notes.append)
    assert [s.name for s in found] == ["epi"] and "mricron-data" in notes[0]


@pytest.mark.parametrize("argv, needle", [
    (["--scans", "colin27"], "--scans: unknown"),
    (["--tasks", "mri-1d-16x"], "--tasks: unknown"),
    (["--preset", "fastest"], "unknown preset"),
])
def test_cli_refuses_bad_names_before_any_work(tmp_path, argv, needle):
    from medscore.cli.main import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["benchmark-external", "--out", str(out), *argv])
    assert res.exit_code != 0 and needle in res.output
    assert not out.exists()


def test_calibration_size_is_the_fully_sampled_centre():
    from medscore.baselines.bart import calibration_size

    k = np.zeros((2, 32, 24), dtype=np.complex64)
    k[:, :, 12 - 4:12 + 4] = 1  # 8 centre lines (phase encodes along W), all rows
    k[:, :, ::3] = 1
    assert calibration_size(k) == 8
    k[:, 16, 12] = 0  # a hole at DC
    assert calibration_size(k) == 1
