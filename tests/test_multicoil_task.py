"""The multi-coil MRI task: registered, degrade -> solve through the generic path, maps from measured data only.

Small simulated acquisitions (48 px, 4 coils). The real ESPIRiT path runs in two tests (and checks that the
maps came from the undersampled k-space); the others inject the true maps to stay fast. An exact zero-mean
Gaussian prior has a closed-form posterior mean (ridge-regularised SENSE), which the solver must approach.
(The plug-and-play presets take one likelihood step per level, so on this ill-conditioned 4-coil problem they
land near that mean, about 15 % off, not on it; posterior sampling averages too few chains to do better.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from _synth import tiny_model
from medscore import metrics as M
from medscore.baselines.sense import magnitude, sense_cg
from medscore.evaluation.benchmark import BENCHMARK_TASKS
from medscore.evaluation.specs import MULTICOIL_TASKS, TASKS, degrade, medscore_method, run_method
from medscore.priors.store import load_prior
from medscore.physics import make_mask
from medscore.physics.coils import MIN_CALIB, calibration_width
from medscore.physics.masks import expand_mask
from medscore.solvers import SamplerOptions
from medscore.tasks import ImageStack, MultiCoilInputs, MultiCoilSpec, MultiCoilTask, get_task
from medscore.tasks.multicoil import root_sum_of_squares
from test_solvers import GaussianPrior

pytest.importorskip("sigpy")

N = 48
SPEC = MultiCoilSpec("mc-test", "mri-multicoil", "test: 4 coils, 1D 4x", accel=4, center=0.17, kspace_noise=0.005,
                     coils=4)


def _reference(n: int = 2) -> torch.Tensor:
    """``n`` (N, 1, 48, 48) Shepp-Logan slices on [0, 1], every other one flipped left-right."""
    img = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)
    img = torch.from_numpy((img / img.max()).astype(np.float32))
    return torch.stack([img if i % 2 == 0 else img.flip(-1) for i in range(n)])[:, None]


def _psnr(ref: torch.Tensor, est: torch.Tensor) -> float:
    return float(np.mean(M.psnr(ref[:, 0].numpy(), est[:, 0].float().numpy())))


@pytest.fixture
def true_maps(monkeypatch: pytest.MonkeyPatch) -> MultiCoilTask:
    """The registered task with the simulation's own birdcage maps in place of ESPIRiT (fast tests)."""
    from medscore.physics import birdcage_smaps

    task = get_task("mri-multicoil")
    monkeypatch.setattr(task, "coil_maps", lambda k, mask: torch.from_numpy(
        np.broadcast_to(birdcage_smaps(k.shape[1], k.shape[2:]), k.shape).astype(np.complex64)))
    return task


def test_registered_with_benchmark_specs_outside_all():
    task = get_task("mri-multicoil")
    assert isinstance(task, MultiCoilTask) and task.report_fastmri and task.baseline_method == "zero-filled RSS"
    assert set(MULTICOIL_TASKS) == {"mc-1d-4x", "mc-1d-8x", "mc-poisson-vd-8x"}
    for name, spec in MULTICOIL_TASKS.items():
        assert TASKS[name] is spec and spec.kind == "mri-multicoil" and spec.coils == 8
        assert spec.kspace_noise == 0.005 and name not in BENCHMARK_TASKS


def test_specs_keep_their_masks_on_the_benchmark_slices_and_small_images_get_a_calibration_block():
    task = get_task("mri-multicoil")
    for name in ("mc-1d-4x", "mc-1d-8x"):
        spec = TASKS[name]
        got = task.calibrated_mask(spec.pattern, (151, 187), spec.accel, spec.center, 0)
        assert np.array_equal(got, make_mask(spec.pattern, (151, 187), spec.accel, spec.center, 0))
        assert calibration_width(expand_mask(got, (151, 187))) >= MIN_CALIB
    # 4 % of 48 lines is 2: widened to ESPIRiT's minimum, and the acceleration lowered to fit
    small = task.calibrated_mask("random", (N, N), 8, 0.04, 0)
    assert calibration_width(expand_mask(small, (N, N))) >= MIN_CALIB and small.mean() < 0.5


def test_generic_path_with_espirit_maps_from_the_undersampled_data(tmp_path, monkeypatch: pytest.MonkeyPatch):
    task, ref = get_task("mri-multicoil"), _reference()
    seen: list[np.ndarray] = []
    estimate = task.coil_maps

    def recording(kspace: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        seen.extend(kspace.copy())
        return estimate(kspace, mask)

    monkeypatch.setattr(task, "coil_maps", recording)
    prob = degrade(SPEC, ref, seed=0)
    unsampled = expand_mask(prob.mask.numpy(), (N, N)) == 0
    assert prob.y.shape == (2, 4, N, N) and prob.op.smaps.shape == (2, 4, N, N) and unsampled.any()
    for i, k in enumerate(seen):  # ESPIRiT saw exactly the measured, undersampled k-space of each slice
        assert np.array_equal(k, prob.y[i].numpy()) and not k[:, unsampled].any()
    assert torch.allclose(prob.baseline, root_sum_of_squares(prob.y))
    assert (prob.map_correlations() > 0.95).all(), prob.map_correlations()
    zero_filled = prob.op.A_adjoint(prob.y)  # the maps' phase leaves a nearly real image
    assert float(zero_filled[:, 1].pow(2).sum() / zero_filled[:, 0].pow(2).sum()) < 0.2
    tiny = load_prior(tiny_model(tmp_path / "tiny"), "cpu").model
    res = task.solve_problem(tiny, prob, SamplerOptions(preset="fast", seed=0))
    assert res.mean.shape == ref.shape and bool(torch.isfinite(res.mean).all()) and bool((res.mean >= 0).all())
    assert res.nfe > 0


def test_exact_gaussian_prior_beats_zero_filled_towards_its_posterior_mean(true_maps: MultiCoilTask):
    ref = _reference()
    prob = degrade(SPEC, ref, seed=0)
    s = 0.2
    prior = GaussianPrior(0.0, s)  # N(0, s^2) on the real and on the imaginary channel: exact score
    # its posterior mean in closed form: ridge-regularised SENSE with weight noise^2 / s^2
    exact = torch.from_numpy(magnitude(sense_cg(prob.y, prob.op, lam=SPEC.kspace_noise**2 / s**2, n_iter=500,
                                                tol=1e-10)))[:, None]
    res = run_method(medscore_method(SPEC, prior, SamplerOptions(preset="fast", seed=0), batch_size=2), prob)
    zero_filled = _psnr(ref, prob.baseline)
    assert res.psnr.mean() > zero_filled + 1, (res.psnr.mean(), zero_filled, _psnr(ref, exact))

    def dist(x: torch.Tensor) -> float:
        return float((x - exact).norm() / exact.norm())

    # the proximal data step (CG) gets within 0.23 of the zero-filled distance; one gradient step only 0.70
    assert dist(res.estimate) < 0.4 * dist(prob.baseline), (dist(res.estimate), dist(prob.baseline))


def test_classical_methods_beat_zero_filled_rss(true_maps: MultiCoilTask):
    prob, val = degrade(SPEC, _reference(), seed=0), degrade(SPEC, _reference(1).flip(-2), seed=1)
    methods = true_maps.classical_methods(SPEC, val, None)
    scores = {k: run_method(fn, prob, fastmri=True) for k, fn in methods.items()}
    base = scores.pop("zero-filled RSS")
    assert [k.split(" (")[0] for k in scores] == ["SENSE-CG", "L1-wavelet CS", "TV-CS"]
    for name, r in scores.items():
        assert r.psnr.mean() > base.psnr.mean() + 1, (name, r.psnr.mean(), base.psnr.mean())
        assert r.fastmri is not None and r.fastmri["psnr"] > base.fastmri["psnr"] + 1


def test_prepare_stack_simulates_solves_and_fills_the_baseline(tmp_path):
    task, ref = get_task("mri-multicoil"), _reference()[:, 0].numpy()
    tiny = load_prior(tiny_model(tmp_path / "tiny"), "cpu").model
    opts = SamplerOptions(preset="fast", seed=0)
    inputs = MultiCoilInputs(mask_pattern="random", accel=4, center=0.17, coils=4, kspace_noise=0.005)
    stack = task.prepare_stack(ImageStack(ref), torch.device("cpu"), opts, inputs)
    res = stack.solve(tiny, slice(0, 2), opts, None)
    assert res.mean.shape == (2, 1, N, N) and bool(torch.isfinite(res.mean).all())
    assert np.isfinite(stack.baseline).all() and M.psnr(ref, stack.baseline).mean() > 15
