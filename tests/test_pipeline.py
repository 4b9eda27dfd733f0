"""The streaming volume pipeline: output naming, pre-flight checks, NaN refusal, batching, auto batch size.

A tiny untrained checkpoint (ngf 8, six noise levels) keeps each run well under a second.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from _synth import line_mask, ramp_phantom_scan, tiny_model
from medscore.errors import InputError, MedscoreError
from medscore.pipeline import DERIVED, OutputPlan, auto_batch_size, plan_outputs, resolve_batch_size, stream
from medscore.pipeline.memory import MAX_AUTO_BATCH, MAX_AUTO_BATCH_CPU, slice_bytes
from medscore.pipeline import denoise_file, inpaint_file, reconstruct_file
from medscore.solvers import SamplerOptions, SolverResult
from medscore.tasks import get_task

SHAPE = (20, 24, 5)
FAST = SamplerOptions(preset="fast", num_levels=3, seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    scan = ramp_phantom_scan(root / "scan.nii.gz", SHAPE, seed=2)
    tiny_model(root / "tiny")
    line_mask(root / "lines.npy", SHAPE[1], slice(10, 14))
    return {"scan": scan, "model": root / "tiny", "mask": root / "lines.npy"}


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_output_names_come_from_one_plan(data, tmp_path):
    out = tmp_path / "res.nii.gz"
    plan = OutputPlan(out)
    assert plan.all_paths() == {"output": out, **{n: tmp_path / f"res_{n}.nii.gz" for n in DERIVED},
                                "panel": tmp_path / "res_panel.png"}
    opts = dataclasses.replace(FAST, samples=2)
    rep = reconstruct_file(data["scan"], data["mask"], model=data["model"], out=out, opts=opts, batch_size=2,
                           device="cpu")
    assert rep.outputs == {k: plan.path(k) for k in ("output", "zerofilled", "std", "panel")}
    assert _files(tmp_path) == {p.name for p in rep.outputs.values()}  # no temporary files left behind
    rep = inpaint_file(data["scan"], missing=0.3, model=data["model"], out=tmp_path / "inp.nii", opts=FAST,
                       device="cpu")
    assert list(rep.outputs) == ["output", "masked", "panel"]
    assert (rep.outputs["masked"] == tmp_path / "inp_masked.nii.gz"
            and rep.outputs["panel"] == tmp_path / "inp_panel.png")


def test_outputs_keep_the_input_geometry_and_units(data, tmp_path):
    rep = denoise_file(data["scan"], add_noise=0.05, model=data["model"], out=tmp_path / "d.nii.gz", opts=FAST,
                       batch_size="auto", device="cpu")
    src, res = nib.load(str(data["scan"])), nib.load(str(rep.outputs["output"]))
    np.testing.assert_array_equal(res.affine, src.affine)
    assert res.shape == src.shape
    noisy = nib.load(str(rep.outputs["noisy"])).get_fdata()
    assert abs(np.median(noisy - src.get_fdata())) < 2.0  # scanner units: noise of std 0.05 x ~130 around the scan


def test_an_output_that_would_overwrite_an_input_is_refused_before_any_compute(data, tmp_path, monkeypatch):
    monkeypatch.setattr(get_task("mri"), "solve", _must_not_run)
    victim = tmp_path / "x_zerofilled.nii.gz"
    victim.write_bytes(data["scan"].read_bytes())
    with pytest.raises(InputError, match="overwrite the input"):
        reconstruct_file(victim, data["mask"], model=data["model"], out=tmp_path / "x.nii.gz", opts=FAST, device="cpu")
    assert _files(tmp_path) == {"x_zerofilled.nii.gz"}


def _must_not_run(*args, **kwargs):
    raise AssertionError("the solver ran before the pre-flight checks")


def test_unwritable_output_folder_is_refused_before_any_compute(data, tmp_path, monkeypatch):
    monkeypatch.setattr(get_task("mri"), "solve", _must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")  # refuses writes even for root, unlike chmod
    with pytest.raises(InputError, match="cannot write to the output folder"):
        reconstruct_file(data["scan"], data["mask"], model=data["model"], out=blocker / "sub" / "r.nii.gz",
                         opts=FAST, device="cpu")
    with pytest.raises(InputError, match="cannot write"):
        plan_outputs(blocker / "r.nii.gz")


def test_non_finite_solver_output_is_refused_and_nothing_is_written(data, tmp_path, monkeypatch):
    def nan_solver(model, y, mask, opts, **kwargs):
        mean = torch.zeros(y.shape[0], 1, *y.shape[-2:])
        mean[-1, 0, 3, 4] = float("nan")
        return SolverResult(mean, None, 1, 0.0)

    monkeypatch.setattr(get_task("mri"), "solve", nan_solver)
    with pytest.raises(MedscoreError, match=r"NaN/inf values in the estimate of slice 1 .*nothing was written"):
        reconstruct_file(data["scan"], data["mask"], model=data["model"], out=tmp_path / "r.nii.gz", opts=FAST,
                         batch_size=2, device="cpu")
    assert _files(tmp_path) == set()


def test_a_noise_level_that_cannot_be_estimated_is_refused(data, tmp_path, monkeypatch):
    monkeypatch.setattr("medscore.physics.estimate_noise_std", lambda x: float("nan"))
    with pytest.raises(InputError, match="could not be estimated"):
        denoise_file(data["scan"], model=data["model"], out=tmp_path / "d.nii.gz", opts=FAST, device="cpu")
    assert _files(tmp_path) == set()


def test_stream_fills_batches_in_order_and_reports_slices():
    calls, seen = [], []

    def solve(sl: slice, cb) -> SolverResult:
        calls.append((sl.start, sl.stop))
        for i in range(3):
            cb(i, 3)
        idx = torch.arange(sl.start, sl.stop, dtype=torch.float32)
        return SolverResult(idx[:, None, None, None].expand(-1, 1, 4, 5).clone(), None, 7, 0.5, samples=2)

    res = stream(5, (4, 5), solve, 2, progress=lambda done, total: seen.append((done, total)))
    assert calls == [(0, 2), (2, 4), (4, 5)]
    np.testing.assert_array_equal(res.mean[:, 0, 0], np.arange(5))
    assert res.mean.dtype == np.float32 and res.std is None and res.nfe == 14 and res.seconds == pytest.approx(1.5)
    assert all(t == 5 for _, t in seen) and seen[-1][0] == 5
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[0][0] == pytest.approx(2 / 3)  # a third of the first batch's two slices


def test_auto_batch_size_is_sane():
    per = slice_bytes((64, 64), ngf=32, chains=2)
    gpu = torch.device("cuda")  # a descriptor only: free memory is given, nothing runs there
    assert auto_batch_size(100, (64, 64), gpu, 32, 2, free=10 * per) == 5  # half the free memory
    assert auto_batch_size(100, (64, 64), gpu, 32, 2, free=1) == 1
    assert auto_batch_size(100, (64, 64), gpu, 32, 2, free=1 << 50) == MAX_AUTO_BATCH
    assert auto_batch_size(3, (64, 64), gpu, 32, 2, free=1 << 50) == 3
    # on CPU small batches are faster per slice: capped, and still bounded by memory
    assert auto_batch_size(100, (64, 64), torch.device("cpu"), 32, 2, free=1 << 50) == MAX_AUTO_BATCH_CPU
    assert auto_batch_size(100, (64, 64), torch.device("cpu"), 32, 2, free=1) == 1
    b = resolve_batch_size("auto", 50, (256, 256), torch.device("cpu"), 32, 2)
    assert isinstance(b, int) and 1 <= b <= MAX_AUTO_BATCH_CPU
    assert resolve_batch_size("3", 50, (8, 8), torch.device("cpu"), 8, 1) == 3
    for bad in (0, "0", "many", 2.5):
        with pytest.raises(InputError, match="batch_size"):
            resolve_batch_size(bad, 50, (8, 8), torch.device("cpu"), 8, 1)


def _slice_seeds_supported() -> bool:
    return "slice_seeds" in {f.name for f in dataclasses.fields(SamplerOptions)}


@pytest.mark.xfail(not _slice_seeds_supported(), strict=False,
                   reason="the solvers draw one noise stream per batch; per-slice seeds need "
                          "SamplerOptions.slice_seeds")
def test_batch_size_invariance(data, tmp_path):
    """Each slice gets its own noise stream, so batching changes nothing but the float rounding of batched
    convolutions (~1e-6 of the intensity range on CPU); a batch-dependent stream differs by O(1)."""
    opts = dataclasses.replace(FAST, samples=2)
    a = reconstruct_file(data["scan"], data["mask"], model=data["model"], out=tmp_path / "a.nii.gz", opts=opts,
                         batch_size=1, device="cpu")
    b = reconstruct_file(data["scan"], data["mask"], model=data["model"], out=tmp_path / "b.nii.gz", opts=opts,
                         batch_size=SHAPE[2], device="cpu")
    for name in ("output", "std"):
        va, vb = (nib.load(str(r.outputs[name])).get_fdata() for r in (a, b))
        np.testing.assert_allclose(va, vb, rtol=0, atol=1e-5 * np.ptp(va) + 1e-6)
