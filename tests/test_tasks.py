"""The task registry: every registered task through the one generic path (degrade -> solve), and its errors.

Two priors: the tiny untrained NCSN (the real network: shapes, finiteness, measured data kept) and an exact
Gaussian prior N(mu, s^2 I) whose mean is a shrunk copy of the truth, for which the posterior mean must beat
both the degraded input alone and the prior mean alone, so a task that drops its data or its prior fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _synth import phantom, tiny_model
from medscore import metrics as M
from medscore.errors import InputError
from medscore.evaluation.specs import TASKS as SPECS
from medscore.evaluation.specs import degrade, medscore_method, run_method
from medscore.priors.store import load_prior
from medscore.training.noise import geometric_sigmas
from medscore.physics import DataConsistency
from medscore.pipeline.outputs import DERIVED
from medscore.solvers import SamplerOptions
from medscore.tasks import TASKS, InpaintInputs, InpaintTask, TaskSpec, get_task, register_task, task_names


def _reference() -> torch.Tensor:
    """Two copies (N, 1, 24, 28) of a flip-symmetric phantom slice on [0, 1] (symmetric: flip-averaged
    Tweedie stays exact for the Gaussian prior below)."""
    vol = phantom((24, 28, 12), seed=1)[..., 6]
    one = torch.from_numpy(vol / vol.max())[None, None]
    one = (one + one.flip(-1) + one.flip(-2) + one.flip(-2, -1)) / 4
    return one.expand(2, -1, -1, -1).clone()


class ShrunkTruthPrior(nn.Module):
    """Exact score of N(mu, s^2 I) at noise level sigma: -(x - mu) / (s^2 + sigma^2), with ``sigmas``.

    A transposed image is scored against the transposed mean, so the score is equivariant under transposes as
    well as (for the flip-symmetric mean of ``_reference``) flips: Tweedie's 8-transform average stays exact."""

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("sigmas", geometric_sigmas(1.0, 0.01, 20))
        self.s = s

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mu = self.mu if x.shape[-2:] == self.mu.shape[-2:] else self.mu.transpose(-1, -2)
        return -(x - mu) / (self.s**2 + sigma.reshape(-1, 1, 1, 1) ** 2)


def _psnr(ref: torch.Tensor, est: torch.Tensor) -> float:
    return float(np.mean(M.psnr(ref[:, 0].numpy(), est[:, 0].float().numpy())))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_prior(tiny_model(tmp_path_factory.mktemp("tasks") / "tiny"), "cpu").model


def test_every_task_has_a_benchmark_spec_and_every_spec_a_task():
    assert {"mri", "inpaint", "denoise"} <= set(task_names())
    assert {s.kind for s in SPECS.values()} == set(task_names())
    for name in task_names():
        task = get_task(name)
        assert task is TASKS[name] and task.name == name
        assert task.baseline_output in DERIVED and task.output_suffix and task.methods


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_generic_path_on_the_tiny_network(spec, tiny):
    task, ref = get_task(spec.kind), _reference()
    prob = task.degrade(spec, ref, seed=0)
    assert prob.spec is spec and prob.y.shape[0] == len(ref) and prob.baseline.shape == ref.shape
    for method in task.methods:
        res = task.solve_problem(tiny, prob, SamplerOptions(preset="fast", seed=0), method=method)
        assert res.mean.shape == ref.shape and bool(torch.isfinite(res.mean).all()) and res.nfe > 0
        consistency = DataConsistency(prob.op, prob.y, noise_std=prob.noise_std, mode="gradient")
        if consistency.exact:  # noiseless data the task imposes: A x = y (real part of a projection for MRI)
            residual = (prob.op.A(res.mean) - prob.y).abs().norm() / prob.y.abs().norm()
            assert float(residual) < 0.05, (method, float(residual))


# Simulated multi-coil acquisitions carry a random image phase: a real Gaussian prior around the magnitude applied to
# the real and imaginary channels is not their prior, so this check cannot hold there; tests/test_multicoil_task.py
# checks that task against its own ground truth.
REAL_PRIOR_SPECS = {k: s for k, s in SPECS.items() if s.kind != "mri-multicoil"}


@pytest.mark.parametrize("spec", list(REAL_PRIOR_SPECS.values()), ids=list(REAL_PRIOR_SPECS))
def test_posterior_mean_beats_the_data_alone_and_the_prior_alone(spec):
    ref = _reference()
    mu = 0.75 * ref[0, 0] + 0.25 * ref[0, 0].mean()
    prior = ShrunkTruthPrior(mu, float((ref[0, 0] - mu).pow(2).mean().sqrt()))
    prob = degrade(spec, ref, seed=0)
    # predictor-corrector: the fast preset's Langevin step (x12, tuned for the bundled prior) is too long for
    # this stiff Gaussian prior; 8 averaged chains make the estimate the posterior mean to ~0.1 dB
    opts = SamplerOptions(preset="fast", sampler="pc", samples=8, seed=0)
    res = run_method(medscore_method(spec, prior, opts, denoise_method=get_task(spec.kind).methods[0],
                                     batch_size=1), prob)
    data_alone, prior_alone = _psnr(ref, prob.baseline), _psnr(ref, mu.expand_as(ref))
    assert res.psnr.mean() > max(data_alone, prior_alone) + 0.5, (res.psnr.mean(), data_alone, prior_alone)


def test_unknown_task_is_one_error_naming_the_known_tasks():
    with pytest.raises(InputError, match=r"unknown task 'segment': choose from mri, inpaint, denoise"):
        get_task("segment")
    with pytest.raises(InputError, match="unknown task 'segment'"):
        degrade(TaskSpec("seg", "segment", "segmentation"), _reference())


def test_a_taken_or_empty_name_is_refused_and_the_registry_unchanged():
    before = dict(TASKS)
    for taken in ("mri", ""):
        with pytest.raises(ValueError, match="empty or taken"):
            register_task(type("Clash", (InpaintTask,), {"name": taken}))
    assert TASKS == before


def test_a_new_task_is_one_registered_class(tiny):
    """What ``docs/design.md`` promises: one class and its registration, and degrade, the benchmark
    methods and the file-level checks find it by name."""

    class BoxInpaint(InpaintTask):
        name = "test-box-inpaint"

        def degrade(self, spec: TaskSpec, ref: torch.Tensor, seed: int = 0):
            return super().degrade(TaskSpec(spec.name, spec.kind, spec.label, box=0.5), ref, seed)

    register_task(BoxInpaint)
    try:
        spec = TaskSpec("box-half", "test-box-inpaint", "half box")
        prob = degrade(spec, _reference())
        assert int((prob.mask[0, 0] == 0).sum()) == 12 * 12
        est, nfe = medscore_method(spec, tiny, SamplerOptions(preset="fast", seed=0))(prob)
        assert est.shape == prob.ref.shape and nfe > 0
        with pytest.raises(InputError, match="mask"):
            get_task("test-box-inpaint").check_inputs(InpaintInputs())
    finally:
        del TASKS["test-box-inpaint"]
