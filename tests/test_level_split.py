"""Level-split priors: a cheap network above a noise level, a better one below, as one score model and one folder."""

from __future__ import annotations

import json

import pytest
import torch

from _synth import tiny_model
from medscore.priors.checkpoint import save_model
from medscore.config import ModelConfig, TrainConfig
from medscore.errors import CheckpointError, OutputError
from medscore.priors.split_folder import is_level_split
from medscore.priors.store import save_level_split
from medscore.priors.store import bundled_dir, bundled_names, load_prior
from medscore.nets import build_model
from medscore.nets.level_split import LevelSplitScore
from medscore.training.noise import geometric_sigmas
from medscore.physics import SingleCoilMRI, make_mask
from medscore.solvers import SamplerOptions
from medscore.tasks import reconstruct_mri
from medscore.evaluation.tuning import choose_presets, write_presets
from test_tuning import DDIM, _trial

SIGMAS = geometric_sigmas(1.0, 0.01, 6)


def _unet_folder(folder, sigmas=SIGMAS, in_channels=1):
    cfg = TrainConfig(model=ModelConfig(arch="unet", ngf=4, in_channels=in_channels))
    torch.manual_seed(1)
    save_model(folder, *(2 * [build_model(cfg.model, sigmas)]), cfg, step=0)
    return folder


def _pair(tmp_path):
    return load_prior(_unet_folder(tmp_path / "coarse")).model, load_prior(tiny_model(tmp_path / "fine")).model


def test_each_image_goes_to_the_network_of_its_level(tmp_path):
    coarse, fine = _pair(tmp_path)
    split = LevelSplitScore(coarse, fine, switch_sigma=0.1)
    x, sigma = torch.rand(4, 1, 24, 20), torch.tensor([1.0, 0.1, 0.5, 0.01])
    with torch.no_grad():
        out = split(x, sigma)
        high, low = torch.tensor([0, 2]), torch.tensor([1, 3])  # sigma 0.1 itself belongs to the fine network
        assert torch.equal(out[high], coarse(x[high], sigma[high]))
        assert torch.equal(out[low], fine(x[low], sigma[low]))
        assert torch.equal(split(x, torch.tensor(0.5)), coarse(x, torch.tensor(0.5)))
    assert torch.equal(split.sigmas, fine.sigmas) and split.in_channels == 1


def test_a_switch_above_every_level_reconstructs_exactly_like_the_fine_network(tmp_path):
    coarse, fine = _pair(tmp_path)
    ref = torch.rand(1, 1, 32, 32)
    mask = torch.from_numpy(make_mask("random", (32, 32), 4, 0.1, seed=0))
    y = SingleCoilMRI(mask, real_input=True).A(ref)
    opts = SamplerOptions(preset="fast", seed=3)
    alone = reconstruct_mri(fine, y, mask, opts).mean
    assert torch.equal(reconstruct_mri(LevelSplitScore(coarse, fine, 2.0), y, mask, opts).mean, alone)
    mixed = reconstruct_mri(LevelSplitScore(coarse, fine, 0.1), y, mask, opts).mean
    assert not torch.equal(mixed, alone)  # the coarse network did run at the high levels


def test_a_level_split_folder_loads_its_members_and_travels_with_tuned_presets(tmp_path):
    _unet_folder(tmp_path / "split" / "coarse")
    tiny_model(tmp_path / "split" / "fine")
    save_level_split(tmp_path / "split", "coarse", "fine", 0.1, name="tiny-split")
    assert is_level_split(tmp_path / "split") and not is_level_split(tmp_path / "split" / "fine")
    prior = load_prior(tmp_path / "split")
    assert isinstance(prior.model, LevelSplitScore) and prior.model.switch_sigma == 0.1
    assert prior.meta["name"] == "tiny-split" and prior.meta["level_split"]["coarse"] == "coarse"
    assert prior.percentiles == load_prior(tmp_path / "split" / "fine").percentiles
    write_presets(tmp_path / "split", choose_presets([_trial("mri-1d-4x", DDIM, 25.0)]))  # what medscore tune does
    assert load_prior(tmp_path / "split").model.presets["fast"]["sampler"] == "ddim"


@pytest.mark.parametrize("change, message", [
    (lambda d: _unet_folder(d / "coarse", geometric_sigmas(1.0, 0.01, 7)), "noise levels"),
    (lambda d: _unet_folder(d / "coarse", in_channels=2), "in_channels"),
    (lambda d: save_level_split(d, "coarse", "fine", 0.2, overwrite=True).write_text(json.dumps(
        {"format": "medscore-level-split", "coarse": "coarse", "fine": "fine", "switch_sigma": -1})), "switch_sigma"),
    (lambda d: save_level_split(d / "coarse", "fine", "fine", 0.1, verify=False, overwrite=True),
     "itself a level split"),
    (lambda d: (d / "fine" / "model.safetensors").write_bytes(b"\0" * 64), "SHA-256"),
])
def test_incompatible_or_damaged_members_are_refused_at_load(tmp_path, change, message):
    _unet_folder(tmp_path / "coarse")
    tiny_model(tmp_path / "fine")
    save_level_split(tmp_path, "coarse", "fine", 0.1)
    change(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        load_prior(tmp_path)


def test_a_bad_switch_is_refused_when_saving_and_building():
    with pytest.raises(CheckpointError, match="switch_sigma"):
        save_level_split("/nonexistent", "bundled", "bundled", float("nan"))
    with pytest.raises(ValueError, match="switch_sigma"):
        LevelSplitScore(torch.nn.Identity(), torch.nn.Identity(), -0.5)


def test_a_missing_member_is_named(tmp_path):
    tiny_model(tmp_path / "fine")
    save_level_split(tmp_path, "coarse", "fine", 0.1, verify=False)
    with pytest.raises(CheckpointError, match="not found"):
        load_prior(tmp_path)


def test_an_incompatible_pair_is_refused_before_anything_is_written(tmp_path):
    _unet_folder(tmp_path / "coarse", geometric_sigmas(1.0, 0.01, 7))
    tiny_model(tmp_path / "fine")
    with pytest.raises(CheckpointError, match="noise levels"):
        save_level_split(tmp_path, "coarse", "fine", 0.1)
    assert not (tmp_path / "model.json").exists()
    tiny_model(tmp_path / "coarse2")
    save_level_split(tmp_path, "coarse2", "fine", 0.1)
    with pytest.raises(OutputError, match="exists"):
        save_level_split(tmp_path, "coarse2", "fine", 0.2)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        save_level_split(tmp_path / "a_file", "bundled", "bundled", 0.1)


def test_a_level_split_exports_as_a_monai_bundle_of_both_networks(tmp_path):
    """The bundle's config builds the same score model as the split folder, and its models/ loads as --model."""
    from medscore.monai.bundle import build_level_split, export_bundle, load_split_weights

    _unet_folder(tmp_path / "m" / "coarse")
    tiny_model(tmp_path / "m" / "fine")
    save_level_split(tmp_path / "m", "coarse", "fine", 0.1)
    bundle = export_bundle(tmp_path / "bundle", tmp_path / "m")
    cfg = json.loads((bundle / "configs" / "inference.json").read_text())
    assert cfg["score_def"]["_target_"] == "medscore.monai.bundle.build_level_split"
    net = load_split_weights(build_level_split(**{k: v for k, v in cfg["score_def"].items() if k != "_target_"}),
                             bundle / "models")
    ref = load_prior(tmp_path / "m").model
    again = load_prior(bundle / "models").model
    x, sigma = torch.rand(3, 1, 16, 20), torch.tensor([1.0, 0.1, 0.01])
    with torch.inference_mode():
        torch.testing.assert_close(net(x, sigma), ref(x, sigma), rtol=0, atol=0)
        torch.testing.assert_close(again(x, sigma), ref(x, sigma), rtol=0, atol=0)
    assert isinstance(again, LevelSplitScore) and again.switch_sigma == 0.1


@pytest.mark.parametrize("name", [n for n in [None, *bundled_names()] if is_level_split(bundled_dir(n))])
def test_bundled_level_splits_combine_bundled_priors(name):
    prior = load_prior(f"bundled:{name}" if name else None)
    assert isinstance(prior.model, LevelSplitScore)
    assert 0 < prior.model.switch_sigma < float(prior.sigmas[0])
    assert prior.meta["modality"] == "mri" and prior.meta["name"]


def test_the_cli_writes_a_level_split_that_loads_from_anywhere(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from medscore.cli.main import app

    _unet_folder(tmp_path / "runs" / "unet")
    tiny_model(tmp_path / "runs" / "ncsn")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["level-split", "priors/split", "--coarse", "runs/unet", "--fine", "runs/ncsn",
                                   "--switch-sigma", "0.2"])
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(tmp_path / "runs")
    prior = load_prior(tmp_path / "priors" / "split")  # members stored relative to the split's folder
    assert prior.model.switch_sigma == 0.2 and prior.meta["level_split"]["coarse"] == "../../runs/unet"
