"""Synthetic scans written by the tests themselves: NIfTI volumes and DICOM series with known geometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

# Voxel axis i -> world -y (2 mm), j -> world -x (1.5 mm), k -> world +z (3 mm): an LPS-like, axis-permuted
# layout with non-unit spacing and an offset. In RAS the first axis is R (= flipped j), the second A
# (= flipped i), the third S (= k), so ras[a, b, c] == data[ni - 1 - b, nj - 1 - a, c].
ODD_AFFINE = np.array([
    [0.0, -1.5, 0.0, 10.0],
    [-2.0, 0.0, 0.0, 20.0],
    [0.0, 0.0, 3.0, -30.0],
    [0.0, 0.0, 0.0, 1.0],
])
ODD_RAS_SPACING = (1.5, 2.0, 3.0)


def odd_to_ras(data: np.ndarray) -> np.ndarray:
    """Where the voxels of a volume stored with :data:`ODD_AFFINE` land after reorientation to RAS."""
    return np.ascontiguousarray(data[::-1, ::-1, :].transpose(1, 0, 2))


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4) if affine is None else affine), str(path))
    return path


def phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A blob-like positive volume: an ellipsoid of random texture on a zero background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    inside = sum(g**2 for g in grids) < 0.8
    return (inside * (0.5 + rng.uniform(0.0, 1.0, shape))).astype(np.float32)


def write_dicom_series(folder: str | Path, vol: np.ndarray, spacing: tuple[float, float] = (0.8, 0.9),
                       thickness: float = 2.5, origin: tuple[float, float, float] = (-10.0, -20.0, 5.0)) -> Path:
    """Write ``vol`` (slices, rows, cols) as an axial MR series of uint16 files (file names not in slice order).

    Patient (LPS) geometry: columns run along +x with spacing ``spacing[1]``, rows along +y with
    ``spacing[0]``, slice k sits at z = origin_z + k * thickness.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    n = vol.shape[0]
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "MR"
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "0"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * thickness]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = thickness
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(vol[k], dtype=np.uint16).tobytes()
        ds.save_as(folder / f"im{(k * 7 + 3) % n:03d}.dcm", enforce_file_format=True)
    return folder


# MONAI's notices about an optional GPU DICOM decoder and a changed Orientation default: not ours to fix
QUIET_MONAI = [
    pytest.mark.filterwarnings("ignore:.*nvImageCodec.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*Orientationd.*:FutureWarning"),
]


def one_error_line(result) -> str:
    """The CLI failed cleanly: exit code != 0, exactly one ``error:`` line on stderr, no traceback."""
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)[:500]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def ramp_phantom_scan(path: str | Path, shape: tuple[int, int, int], seed: int,
                      affine: np.ndarray | None = None) -> Path:
    """A phantom on a ramp written as NIfTI: no slice is empty (an all-zero slice makes PSNR infinite)."""
    ramp = np.linspace(10.0, 30.0, shape[0], dtype=np.float32)[:, None, None]
    return write_nifti(path, 100.0 * phantom(shape, seed=seed) + ramp, ODD_AFFINE if affine is None else affine)


def tiny_model(folder: str | Path) -> Path:
    """An untrained NCSN (ngf 8, 6 levels) saved as a model folder."""
    from medscore.priors.checkpoint import save_model
    from medscore.config import ModelConfig, TrainConfig
    from medscore.nets import build_model
    from medscore.training.noise import geometric_sigmas

    cfg = TrainConfig(model=ModelConfig(ngf=8))
    torch.manual_seed(0)
    net = build_model(cfg.model, geometric_sigmas(1.0, 0.01, 6))
    save_model(folder, net, net, cfg, step=0)
    return Path(folder)


def line_mask(path: str | Path, width: int, centre: slice) -> Path:
    """Every third phase-encode line plus a fully sampled ``centre``, saved as .npy."""
    mask = np.zeros(width, dtype=np.float32)
    mask[::3] = 1.0
    mask[centre] = 1.0
    np.save(path, mask)
    return Path(path)


def stop_score_networks(monkeypatch, why: str) -> None:
    """Make every RefineNet-family network raise when run: a bad-input case that gets as far as the solve fails."""
    import torch

    from medscore.nets import refinenet

    def boom(self, *args, **kwargs):
        raise AssertionError(f"the score network ran: {why}")

    for cls in vars(refinenet).values():
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and "forward" in vars(cls):
            monkeypatch.setattr(cls, "forward", boom)


def file_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file below ``folder``: equal before and after = nothing written."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def bad_cli_case(argv: list[str], root: Path, tmp_path: Path, monkeypatch):
    """Run a catalogue case (``argv`` with ``{root}`` / ``{out}`` placeholders) and check what every case must hold:
    one error line, an empty output folder, the inputs under ``root`` unchanged. Returns the result and the line."""
    from typer.testing import CliRunner

    from medscore.cli.main import app

    monkeypatch.delenv("MEDSCORE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "60")
    out = tmp_path / "out"
    out.mkdir()
    before = file_snapshot(root)
    res = CliRunner().invoke(app, [a.format(root=root, out=out) for a in argv])
    line = one_error_line(res)
    assert list(out.iterdir()) == [], "a bad input left files in the output folder"
    assert file_snapshot(root) == before, "an input was changed"
    return res, line


def two_ranks(script: str | Path, timeout: float = 180) -> list[tuple[int, str]]:
    """Run ``script`` as ranks 0 and 1 of a two-process gloo group on this machine (the environment ``torchrun``
    sets); (exit code, output) of each. Fails the test if they do not finish in ``timeout`` seconds."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    results = []
    for proc in procs:
        try:
            out = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"the two ranks did not finish in {timeout:.0f} s")
        results.append((proc.returncode, out))
    return results
