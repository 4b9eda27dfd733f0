"""Benchmark plumbing: identical degraded inputs for every method, honest target reporting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscore.evaluation.benchmark import TaskTable
from medscore.evaluation.report import write_markdown
from medscore.cli.evaluate import _targets
from medscore.evaluation.specs import TASKS, MethodResult, classical_methods, degrade, run_method


def _phantom(n: int = 2, h: int = 32, w: int = 40) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    base = ((xx**2 / 0.7 + yy**2 / 0.9) < 0.8).float() * 0.8 + ((xx**2 + (yy - 0.2) ** 2) < 0.1).float() * 0.2
    return torch.stack([base * (1 + 0.1 * i) for i in range(n)])[:, None]


@pytest.mark.parametrize("name", list(TASKS))
def test_degrade_is_deterministic_and_matches_its_spec(name):
    spec = TASKS[name]
    ref = _phantom()
    a, b = degrade(spec, ref, seed=3), degrade(spec, ref, seed=3)
    assert torch.equal(a.y, b.y) and torch.equal(a.baseline, b.baseline)
    assert not torch.equal(a.y, degrade(spec, ref, seed=4).y) or spec.box > 0
    if spec.kind == "denoise":
        assert float((a.y - ref).std()) == pytest.approx(spec.noise, rel=0.15)
    if spec.kind == "inpaint" and spec.missing:
        assert float(1 - a.mask.mean()) == pytest.approx(spec.missing, abs=0.05)
    if spec.kind == "inpaint" and spec.box:
        side = round(spec.box * 32)
        assert int((a.mask[0, 0] == 0).sum()) == side * side
    if spec.kind == "mri":
        assert torch.allclose(a.baseline, a.op.zero_filled_magnitude(a.y))


def test_classical_inpainting_beats_the_masked_input():
    spec = TASKS["inpaint-70"]
    ref = _phantom()
    prob, val = degrade(spec, ref, seed=0), degrade(spec, ref, seed=1)
    methods = classical_methods(spec, val, train_slices=_phantom(5))
    scores = {k: run_method(fn, prob).psnr.mean() for k, fn in methods.items()}
    assert scores["biharmonic"] > scores["masked input"] + 10


def test_targets_report_misses_plainly(tmp_path):
    def res(p: float, nfe: int = 0) -> MethodResult:
        return MethodResult(np.array([p, p]), np.array([0.9, 0.9]), np.array([0.01, 0.01]), 0.1, nfe)

    t = TaskTable("mri-1d-8x", "MRI 8x", {"zero-filled": res(20), "TV-CS (lam 0.01)": res(25),
                                          "medscore fast": res(24, 100), "medscore default": res(26, 301)})
    text = _targets([t])
    assert "NO (+1.00 dB)" in text  # default: +1 dB where +2 dB is required
    assert "NO (-1.00 dB)" in text  # fast below TV-CS
    md = write_markdown([t], tmp_path / "b.md", "medscore benchmark")
    body = md.read_text()
    assert "TV-CS (lam 0.01) (best classical)" in body and "Command: `medscore benchmark`" in body
