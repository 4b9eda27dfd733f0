"""Test-time adaptation: a prior with a known mismatch moves toward the truth, the data stay imposed, the pretrained
weights never change, runs are deterministic, and an adapted prior saved to disk reloads to the same estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from _synth import one_error_line, phantom, tiny_model, write_nifti
from medscore import tasks
from medscore.cli.main import app
from medscore.errors import InputError, OutputError
from medscore.io.scans import load_scan
from medscore.physics import SingleCoilMRI, make_mask
from medscore.pipeline import inpaint_file
from medscore.priors import load_prior
from medscore.solvers import SamplerOptions
from medscore.solvers.adapt import Adaptation, AdaptedPrior

OPTS = SamplerOptions(preset="default", sampler="pnp", num_levels=30, samples=1, momentum=0.0, flips=False)
TRUE_MEAN, WRONG_MEAN, SPREAD = 0.7, 0.2, 0.1


class ScalarMeanGaussian(nn.Module):
    """Exact score of N(mu T, s^2 I), a template ``T`` (default: ones) times one learnable scale ``mu``: a prior
    whose only error is the scale of its mean."""

    def __init__(self, mu: float, s: float, template: torch.Tensor | None = None) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(float(mu)))
        self.s = s
        self.register_buffer("template", torch.ones(16, 16) if template is None else template)
        self.register_buffer("sigmas", torch.logspace(0, -2, 30))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return -(x - self.mu * self.template) / (self.s**2 + sigma.reshape(-1, 1, 1, 1) ** 2)


def _truth(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return TRUE_MEAN + SPREAD * torch.randn(2, 1, 16, 16, generator=g)


def _adapted(base: nn.Module, lr: float = 0.03) -> AdaptedPrior:
    return AdaptedPrior(base, Adaptation(lr=lr, parameters="all", anchor=0.0, renoise=False))


def _rmse(est: torch.Tensor, truth: torch.Tensor, where: torch.Tensor) -> float:
    return float((((est - truth) ** 2) * where).sum() / where.sum()) ** 0.5


def test_inpainting_adapts_a_wrong_mean_toward_the_truth_and_keeps_the_known_pixels():
    truth = _truth()
    known = (torch.rand(truth.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    base = ScalarMeanGaussian(WRONG_MEAN, SPREAD)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    plain = tasks.inpaint(base, truth * known, known, OPTS).mean
    adapted = _adapted(base)
    est = tasks.inpaint(adapted, truth * known, known, OPTS).mean
    # the posterior mean under the true prior fills the holes with TRUE_MEAN: the adapted mean moved most of the way
    assert abs(float(adapted.net.mu.detach()) - TRUE_MEAN) < 0.25 * abs(WRONG_MEAN - TRUE_MEAN)
    assert _rmse(est, truth, 1 - known) < 0.5 * _rmse(plain, truth, 1 - known)
    torch.testing.assert_close(est * known, truth * known, rtol=0, atol=0)  # measurements imposed exactly
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # pretrained weights untouched
    assert adapted.forward_passes == adapted.backward_passes == OPTS.num_levels


def test_mri_adapts_and_keeps_the_measured_kspace():
    """The mean's template spans measured and unmeasured frequencies: the measured ones tell its scale, which the
    adapted prior then carries into the unmeasured ones (an unadapted prior fills them with the wrong scale)."""
    r2 = (torch.arange(16.0)[:, None] - 7.5) ** 2 + (torch.arange(16.0)[None, :] - 5.0) ** 2
    template = torch.exp(-r2 / 20.0) + torch.linspace(0, 1, 16)[None, :]
    noise = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    truth = TRUE_MEAN * template + 0.02 * noise
    mask = torch.from_numpy(make_mask("random", (16, 16), 4, 0.125, seed=0))
    op = SingleCoilMRI(mask, real_input=True)
    y = op.A(truth)
    base = ScalarMeanGaussian(WRONG_MEAN, 0.02, template)
    plain = tasks.reconstruct_mri(base, y, mask, OPTS).mean
    est = tasks.reconstruct_mri(_adapted(base), y, mask, OPTS).mean
    everywhere = torch.ones_like(truth)
    assert _rmse(est, truth, everywhere) < 0.8 * _rmse(plain, truth, everywhere)
    torch.testing.assert_close(op.A(est), y, rtol=0, atol=1e-5)


def test_adaptation_is_deterministic_for_a_seed():
    truth = _truth()
    known = (torch.rand(truth.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    settings = Adaptation(lr=0.03, parameters="all", anchor=0.1, renoise=True, seed=3)
    runs = [tasks.inpaint(AdaptedPrior(ScalarMeanGaussian(WRONG_MEAN, SPREAD), settings), truth * known, known,
                          OPTS).mean for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_the_anchor_keeps_the_parameters_near_the_pretrained_ones():
    truth = _truth()
    known = (torch.rand(truth.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    moved = {}
    for anchor in (0.0, 100.0):
        adapted = AdaptedPrior(ScalarMeanGaussian(WRONG_MEAN, SPREAD),
                               Adaptation(lr=0.03, parameters="all", anchor=anchor, renoise=False))
        tasks.inpaint(adapted, truth * known, known, OPTS)
        moved[anchor] = abs(float(adapted.net.mu.detach()) - WRONG_MEAN)
    assert moved[100.0] < 0.5 * moved[0.0]


@pytest.mark.parametrize("method", ["tweedie", "sampler"])
def test_denoising_adapts_by_sure_toward_the_truth(method):
    """No operator: Stein's unbiased risk estimate of the denoiser's error is what adapts the wrong mean."""
    truth = _truth()
    noisy = truth + 0.2 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(3))
    base = ScalarMeanGaussian(WRONG_MEAN, SPREAD)
    plain = tasks.denoise(base, noisy, 0.2, OPTS, method=method).mean
    adapted = AdaptedPrior(base, Adaptation(denoise_lr=0.1, parameters="all", anchor=0.0, denoise_steps=30))
    est = tasks.denoise(adapted, noisy, 0.2, OPTS, method=method).mean
    assert abs(float(adapted.net.mu.detach()) - TRUE_MEAN) < 0.25 * abs(WRONG_MEAN - TRUE_MEAN)
    everywhere = torch.ones_like(truth)
    assert _rmse(est, truth, everywhere) < 0.8 * _rmse(plain, truth, everywhere)
    assert adapted.backward_passes == 60 and base.mu.item() == torch.tensor(WRONG_MEAN).item()  # base untouched


def test_settings_are_checked():
    with pytest.raises(InputError, match="adapt lr"):
        Adaptation(lr=float("nan"))
    with pytest.raises(InputError, match="parameters"):
        Adaptation(parameters="everything")


@pytest.fixture(scope="module")
def scan_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    vol = phantom((24, 24, 12), seed=4)[..., 4:7]  # three slices through the object
    return write_nifti(root / "scan.nii.gz", vol), tiny_model(root / "tiny")


def test_an_adapted_prior_saved_and_reloaded_gives_the_same_estimate(scan_and_model, tmp_path):
    scan, model = scan_and_model
    opts = SamplerOptions(preset="fast", num_levels=4, seed=0)
    report = inpaint_file(scan, missing=0.5, model=model, out=tmp_path / "a.nii.gz", opts=opts, batch_size=2,
                          device="cpu", adapt=Adaptation(lr=0.05), save_adapted=tmp_path / "adapted")
    assert report.info["adaptation"]["backward_passes"] > 0
    base = load_prior(model)
    saved = load_prior(tmp_path / "adapted")
    meta = json.loads((tmp_path / "adapted" / "model.json").read_text())
    assert meta["adapted_from"]["sha256"] == base.meta["sha256"] and meta["adaptation"]["lr"] == 0.05
    changed = [k for k, v in saved.model.state_dict().items() if not torch.equal(v, base.model.state_dict()[k])]
    assert changed and all("embed.bias" in k for k in changed)  # only the norms' biases adapted
    again = inpaint_file(scan, missing=0.5, model=tmp_path / "adapted", out=tmp_path / "b.nii.gz", opts=opts,
                         batch_size=2, device="cpu")
    assert "adaptation" not in again.info
    # the saved weights are the adapted ones: solving with them equals solving with the adapted network, frozen
    x = torch.from_numpy(load_scan(scan).data[None, None, :, :, 0] / 255.0).float()
    known = torch.ones_like(x)
    known[..., ::2, :] = 0
    frozen = AdaptedPrior(base.model, Adaptation())
    frozen.net.load_state_dict(saved.model.state_dict())
    torch.testing.assert_close(tasks.inpaint(saved.model, x * known, known, opts).mean,
                               tasks.inpaint(frozen.net, x * known, known, opts).mean, rtol=0, atol=0)


def test_save_adapted_needs_adapt_and_a_new_folder(scan_and_model, tmp_path):
    scan, model = scan_and_model
    with pytest.raises(InputError, match="needs --adapt"):
        inpaint_file(scan, missing=0.5, model=model, out=tmp_path / "a.nii.gz", save_adapted=tmp_path / "x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(OutputError, match="not an empty folder"):
        inpaint_file(scan, missing=0.5, model=model, out=tmp_path / "a.nii.gz", adapt=True,
                     save_adapted=tmp_path / "taken")
    assert not (tmp_path / "a.nii.gz").exists()


def test_cli_adapt_on_inpaint_and_its_errors(scan_and_model, tmp_path):
    scan, model = scan_and_model
    runner = CliRunner()
    common = ["--model", str(model), "--device", "cpu", "--preset", "fast"]
    res = runner.invoke(app, ["inpaint", str(scan), "--missing", "0.5", "-o", str(tmp_path / "o.nii.gz"), "--adapt",
                              "--save-adapted", str(tmp_path / "ad"), *common])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ad" / "model.json").is_file() and np.isfinite(load_scan(tmp_path / "o.nii.gz").data).all()
    res = runner.invoke(app, ["inpaint", str(scan), "--missing", "0.5", "-o", str(tmp_path / "p.nii.gz"),
                              "--save-adapted", str(tmp_path / "ad2"), *common])
    assert "needs --adapt" in one_error_line(res)
    assert not (tmp_path / "p.nii.gz").exists() and not (tmp_path / "ad2").exists()


def _with_adaptation(folder, entry) -> None:
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["adaptation"] = entry
    meta_path.write_text(json.dumps(meta))


def test_a_models_tuned_adaptation_settings_travel_from_model_json(scan_and_model, tmp_path):
    folder = tiny_model(tmp_path / "m")
    _with_adaptation(folder, {"lr": 0.005, "min_sigma": 0.02})
    model = load_prior(folder).model
    tuned = Adaptation.of(True, model)
    assert (tuned.lr, tuned.min_sigma, tuned.parameters) == (0.005, 0.02, "norm-bias")
    assert Adaptation.of(True).lr == Adaptation().lr  # no model: the defaults
    assert Adaptation.of(Adaptation(lr=0.1), model).lr == 0.1  # the caller's own settings win
    report = inpaint_file(scan_and_model[0], missing=0.5, out=tmp_path / "out.nii.gz", model=folder, device="cpu",
                          opts=SamplerOptions(preset="fast", num_levels=4), adapt=True)
    assert report.info["adaptation"]["lr"] == 0.005  # the file driver used the model's settings


@pytest.mark.parametrize("entry, needle", [
    ({"lr": "fast"}, "adaptation.lr"), ({"rate": 0.1}, "adaptation.rate is not a setting"),
    ({"steps": True}, "adaptation.steps"), ({"anchor": -1.0}, "adaptation.anchor"), ([0.1], "must be an object"),
])
def test_a_malformed_adaptation_entry_is_refused_at_load(tmp_path, entry, needle):
    from medscore.errors import CheckpointError

    folder = tiny_model(tmp_path / "m")
    _with_adaptation(folder, entry)
    with pytest.raises(CheckpointError, match=needle):
        load_prior(folder)
