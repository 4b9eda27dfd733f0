"""3D Cartesian acquisitions and coherent volume solves through the file driver, the API and the CLI.

Ground truth: the readout transform against numpy's 3D FFT; a 3D scan undersampled over (ky, kz) with a
hand-made asymmetric mask gives numpy's zero-filled image (the mask's orientation checked: its flip does not); with
the full mask the scan comes back; a measured 3D k-space file comes back in the file's axis order. A tiny untrained
prior keeps each run near a second: these tests check geometry and plumbing, not quality.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from _synth import one_error_line, phantom, tiny_model, write_nifti
from medscore.cli.main import app
from medscore.errors import InputError
from medscore.pipeline import denoise_file, reconstruct_file, reconstruct_kspace_file
from medscore.pipeline.kspace3d import readout_planes
from medscore.solvers import SamplerOptions

SHAPE = (10, 24, 16)  # x (readout), y, z: every axis a different length
FAST = SamplerOptions(preset="fast", num_levels=3, seed=1)


def fft3c(vol: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(vol), norm="ortho"))


def ifft3c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k), norm="ortho"))


def fft2c_np(img: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=axes), norm="ortho"), axes=axes)


def asymmetric_mask(ny: int, nz: int) -> np.ndarray:
    """A (NY, NZ) mask no flip or transpose maps onto itself: the centre, a block in one corner, every third ky."""
    m = np.zeros((ny, nz), dtype=np.float32)
    m[ny // 2 - 3: ny // 2 + 3, nz // 2 - 3: nz // 2 + 3] = 1
    m[:4, :6] = 1
    m[::3, 2] = 1
    return m


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cartesian3d")
    vol = 100 * phantom(SHAPE, seed=4)  # zero background: the intensity scaling has no offset
    return {"root": root, "vol": vol, "scan": write_nifti(root / "scan.nii.gz", vol), "model": tiny_model(root / "t")}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_readout_planes_are_the_2d_kspace_of_each_plane(axis):
    rng = np.random.default_rng(0)
    vol = (rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)).astype(np.complex64)
    planes = readout_planes(fft3c(vol).astype(np.complex64), axis)
    np.testing.assert_allclose(planes, fft2c_np(np.moveaxis(vol, axis, 0)), atol=1e-4)
    coils = np.stack([vol, 2 * vol])
    planes_mc = readout_planes(fft3c_axes(coils), axis)
    assert planes_mc.shape == (SHAPE[axis], 2, *[n for i, n in enumerate(SHAPE) if i != axis])
    np.testing.assert_allclose(planes_mc[:, 1], 2 * planes, atol=1e-3)


def fft3c_axes(coils: np.ndarray) -> np.ndarray:
    return np.stack([fft3c(c) for c in coils]).astype(np.complex64)


def test_retrospective_3d_undersampling_matches_numpy_and_the_mask_orientation(data, tmp_path):
    vol, mask = data["vol"], asymmetric_mask(SHAPE[1], SHAPE[2])
    np.save(tmp_path / "m.npy", mask)
    reconstruct_file(data["scan"], tmp_path / "m.npy", axis=0, model=data["model"], out=tmp_path / "o.nii.gz",
                     opts=FAST, device="cpu")
    zf = np.asarray(nib.load(str(tmp_path / "o_zerofilled.nii.gz")).dataobj)
    expected = np.abs(ifft3c(fft3c(vol) * mask[None]))  # 3D k-space, the mask broadcast over the readout
    np.testing.assert_allclose(zf, expected, atol=1e-3 * vol.max())
    flipped = np.abs(ifft3c(fft3c(vol) * mask[::-1][None]))
    assert np.abs(zf - flipped).max() > 0.05 * vol.max()


def test_full_mask_gives_the_3d_scan_back_and_the_geometry_is_kept(data, tmp_path):
    np.save(tmp_path / "full.npy", np.ones(SHAPE[1:], dtype=np.float32))
    reconstruct_file(data["scan"], tmp_path / "full.npy", axis=0, model=data["model"], out=tmp_path / "o.nii.gz",
                     opts=FAST, device="cpu", volume=True)
    out = nib.load(str(tmp_path / "o.nii.gz"))
    assert out.shape == SHAPE
    np.testing.assert_allclose(out.affine, nib.load(str(data["scan"])).affine)
    np.testing.assert_allclose(np.asarray(out.dataobj), data["vol"], atol=1e-3 * data["vol"].max())


@pytest.mark.parametrize("readout_axis", [0, 2])
def test_measured_3d_kspace_comes_back_in_the_files_axis_order(data, tmp_path, readout_axis):
    k = fft3c(data["vol"]).astype(np.complex64)
    np.save(tmp_path / "k3d.npy", k)
    rep = reconstruct_kspace_file(tmp_path / "k3d.npy", np.ones([n for i, n in enumerate(SHAPE) if i != readout_axis],
                                                                  dtype=np.float32),
                                  readout_axis=readout_axis, model=data["model"], out=tmp_path / "o.nii.gz",
                                  opts=FAST, device="cpu", volume=True)
    assert rep.slices == SHAPE[readout_axis]
    out = np.asarray(nib.load(str(tmp_path / "o.nii.gz")).dataobj)
    assert out.shape == SHAPE
    vol = data["vol"]
    assert np.abs(out - vol).max() < 0.05 * vol.max()  # fully sampled, solved with the file's estimated noise level
    info = json.loads((tmp_path / "o.json").read_text())
    assert info["input"] == {"file": "k3d.npy", "shape": list(SHAPE), "readout_axis": readout_axis}


def test_cli_readout_axis_and_volume_on_a_scan(data, tmp_path):
    np.save(tmp_path / "m.npy", asymmetric_mask(SHAPE[1], SHAPE[2]))
    runner = CliRunner()
    args = ["reconstruct", str(data["scan"]), "--mask", str(tmp_path / "m.npy"), "--readout-axis", "0", "--volume",
            "--model", str(data["model"]), "--preset", "fast", "--device", "cpu",
            "-o", str(tmp_path / "out.nii.gz")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert nib.load(str(tmp_path / "out.nii.gz")).shape == SHAPE
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "out2.nii.gz"), "--axis", "1"])
    assert "disagree" in one_error_line(bad)
    assert not (tmp_path / "out2.nii.gz").exists()


def test_coherent_denoising_and_adapted_volume_solves_run_on_files(data, tmp_path):
    """Every task takes --volume now: denoising (TV along z on the denoised slices) and MRI with --adapt (the
    adaptation's backward pass in network batches) write their outputs with the scan's geometry."""
    denoise_file(data["scan"], add_noise=0.1, model=data["model"], out=tmp_path / "d.nii.gz", opts=FAST, device="cpu",
                 volume=True, batch_size=2)
    np.save(tmp_path / "m.npy", asymmetric_mask(SHAPE[1], SHAPE[2]))
    rep = reconstruct_file(data["scan"], tmp_path / "m.npy", axis=0, model=data["model"], out=tmp_path / "o.nii.gz",
                           opts=FAST, device="cpu", volume=True, adapt=True, batch_size=2)
    for name in ("d.nii.gz", "o.nii.gz"):
        img = nib.load(str(tmp_path / name))
        assert img.shape == SHAPE and np.allclose(img.affine, nib.load(str(data["scan"])).affine)
    assert rep.info["adaptation"]["backward_passes"] > 0
    with pytest.raises(InputError, match="add --volume"):  # a weight without --volume: slices are not coupled
        reconstruct_file(data["scan"], tmp_path / "m.npy", axis=0, model=data["model"], out=tmp_path / "z.nii.gz",
                         opts=SamplerOptions(preset="fast", z_tv=0.01), device="cpu")
    assert not (tmp_path / "z.nii.gz").exists()


def test_a_coherent_file_solve_runs_the_network_in_bounded_batches(data, tmp_path, monkeypatch):
    from medscore.priors.store import load_prior

    seen: list[int] = []
    original = load_prior

    def spy(*args, **kwargs):
        prior = original(*args, **kwargs)
        forward = prior.model.forward

        def counted(x, sigma):
            seen.append(x.shape[0])
            return forward(x, sigma)

        prior.model.forward = counted
        return prior

    monkeypatch.setattr("medscore.pipeline.driver.load_prior", spy)
    np.save(tmp_path / "m.npy", asymmetric_mask(SHAPE[1], SHAPE[2]))
    reconstruct_file(data["scan"], tmp_path / "m.npy", axis=0, model=data["model"], out=tmp_path / "o.nii.gz",
                     opts=FAST, device="cpu", volume=True, batch_size=4)
    assert seen and max(seen) <= 4 and sum(seen) % SHAPE[0] == 0


def test_a_coherent_solve_that_would_not_fit_is_refused_before_solving(data, tmp_path, monkeypatch):
    """Free memory for one slice but not for the whole volume's solver state: --volume is refused with one line
    naming the volume, nothing is written; slice by slice the same scan solves."""
    import medscore.checks
    from medscore.pipeline.memory import slice_bytes
    from medscore.tasks import get_task

    np.save(tmp_path / "m.npy", asymmetric_mask(SHAPE[1], SHAPE[2]))
    chains = get_task("mri").chains(FAST)
    monkeypatch.setattr(medscore.checks, "available_memory", lambda: int(1.6 * slice_bytes(SHAPE[1:], 8, chains)))
    with pytest.raises(InputError, match="coherent solve of 10 slices"):
        reconstruct_file(data["scan"], tmp_path / "m.npy", axis=0, model=data["model"], out=tmp_path / "o.nii.gz",
                         opts=FAST, device="cpu", volume=True, batch_size=1)
    assert not list(tmp_path.glob("*.nii.gz"))
    reconstruct_file(data["scan"], tmp_path / "m.npy", axis=0, model=data["model"], out=tmp_path / "o.nii.gz",
                     opts=FAST, device="cpu", batch_size=1)
