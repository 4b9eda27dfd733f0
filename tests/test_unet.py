"""The U-Net score network (MONAI BasicUNet, conditional instance norm++, output / sigma): shapes, conditioning,
files, learning a Gaussian score (also complex); warm starts; complex training images with simulated phase."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _synth import QUIET_MONAI, phantom, write_nifti
from medscore.priors.checkpoint import WEIGHTS, load_model, save_model, sha256
from medscore.config import DataConfig, ModelConfig, NoiseConfig, TrainConfig
from medscore.errors import CheckpointError, ConfigError
from medscore.priors.checks import estimate_parameters
from medscore.nets import UNetScore, build_model, count_parameters
from medscore.training.noise import geometric_sigmas
from medscore.training.loop import train
from medscore.training.batches import with_random_phase
from medscore.training.init_from import init_weights_from
from test_dsm import _gen, _rel_errors, _train

SIGMAS = geometric_sigmas(1.0, 0.01, 5)
pytestmark = QUIET_MONAI


def _unet(in_channels: int = 1, ngf: int = 4, spatial_dims: int = 2) -> UNetScore:
    torch.manual_seed(0)
    return UNetScore(in_channels, ngf, SIGMAS, spatial_dims=spatial_dims).eval()


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 37, 21), (1, 2, 16, 48)])
def test_output_shape_equals_input_shape(shape):
    net = _unet(in_channels=shape[1])
    with torch.no_grad():
        assert net(torch.rand(shape), torch.tensor(0.3)).shape == shape


def test_volumes():
    net = _unet(spatial_dims=3)
    with torch.no_grad():
        assert net(torch.rand(1, 1, 9, 17, 16), torch.tensor([0.5])).shape == (1, 1, 9, 17, 16)
    with pytest.raises(ValueError, match="D, H, W"):
        net(torch.rand(1, 1, 16, 16), torch.tensor([0.5]))


def test_conditioning_on_sigma_and_independent_samples():
    net = _unet()
    with torch.no_grad():  # a random embedding, so that the conditioning shows at initialisation
        for norm in net._norms:
            norm.embed.weight.normal_()
    x = torch.rand(1, 1, 20, 20).repeat(3, 1, 1, 1)
    sigma = torch.tensor([1.0, 0.05, 1.0])
    with torch.no_grad():
        out = net(x, sigma)
        prod = out * sigma.view(-1, 1, 1, 1)
        torch.testing.assert_close(out[2], out[0])  # same image, same sigma
        assert (prod[1] - prod[0]).abs().max() > 1e-3  # the level changes the output beyond the 1/sigma factor
        y = x.clone()
        y[1] = torch.rand(1, 20, 20)  # changing one image leaves the others' scores alone (instance norm)
        torch.testing.assert_close(net(y, sigma)[0], out[0])
    with pytest.raises(RuntimeError, match="conditional"):
        net.unet(x)


def test_build_from_config_and_parameter_estimate():
    cfg = ModelConfig(arch="unet", ngf=8, in_channels=2)
    net = build_model(cfg, SIGMAS)
    assert isinstance(net, UNetScore) and net.in_channels == 2 and torch.equal(net.sigmas, SIGMAS)
    assert estimate_parameters(cfg, len(SIGMAS)) == count_parameters(net)


def test_file_round_trip(tmp_path):
    cfg = TrainConfig(model=ModelConfig(arch="unet", ngf=4), noise=NoiseConfig(sigma_max=1.0, num_levels=5))
    net = _unet()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    save_model(tmp_path, net, net, cfg, step=3)
    loaded = load_model(tmp_path, expected_sha256=sha256(tmp_path / WEIGHTS))
    assert isinstance(loaded.model, UNetScore)
    x = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        same_layout = net.to(memory_format=torch.channels_last)  # loaded models run channels-last
        torch.testing.assert_close(loaded.model(x, SIGMAS[[0, 2]]), same_layout(x, SIGMAS[[0, 2]]), rtol=0, atol=0)


@pytest.mark.parametrize("in_channels", [1, 2])
def test_unet_learns_gaussian_score(in_channels):
    """ngf 8 on 16x16 Gaussian images, 300 steps: relative L2 error of the score < 0.3 at every level. With 2
    channels the images are complex (real, imaginary): a circular complex Gaussian around a mean with a phase
    ramp, whose score is the same closed form on both channels; the complex prior is checked the same way.

    The network reads the noise off the image's variance s^2 + sigma^2 as well as off its sigma input, so the
    image spread s is kept below the levels."""
    torch.manual_seed(0)
    s = 0.1
    mag = 0.5 + 0.2 * torch.randn(1, 1, 16, 16, generator=_gen(0))
    ramp = torch.linspace(0, 3.0, 16).view(1, 1, 1, 16)
    mu = mag if in_channels == 1 else torch.cat([mag * torch.cos(ramp), mag * torch.sin(ramp)], dim=1)
    sigmas = geometric_sigmas(1.0, 0.1, 4)
    model = UNetScore(in_channels, 8, sigmas)
    assert min(_rel_errors(model, mu, s, sigmas)) > 0.8
    _train(model, mu, s, sigmas, steps=300, batch=64, lr=1e-2, seed=0)
    errs = _rel_errors(model, mu, s, sigmas)
    assert max(errs) < 0.3, errs


# --- warm starts ---------------------------------------------------------------------------------------------

def _saved(tmp_path, arch: str = "unet", in_channels: int = 1) -> tuple:
    cfg = TrainConfig(model=ModelConfig(arch=arch, ngf=4, in_channels=in_channels),
                      noise=NoiseConfig(sigma_max=1.0, num_levels=5))
    torch.manual_seed(1)
    net = build_model(cfg.model, SIGMAS)
    save_model(tmp_path / "src", net, net, cfg, step=1)
    return tmp_path / "src", net


def test_warm_start_copies_weights_but_not_levels(tmp_path):
    src, net = _saved(tmp_path)
    same = build_model(ModelConfig(arch="unet", ngf=4), geometric_sigmas(2.0, 0.01, 7))
    init_weights_from(same, src)
    for name, tensor in net.state_dict().items():
        if name != "sigmas":
            assert torch.equal(same.state_dict()[name], tensor), name
    assert len(same.sigmas) == 7  # the new run's own levels


def test_warm_start_refuses_another_architecture(tmp_path):
    src, _ = _saved(tmp_path, arch="ncsn")
    with pytest.raises(CheckpointError, match="architecture"):
        init_weights_from(build_model(ModelConfig(arch="unet", ngf=4), SIGMAS), src)
    with pytest.raises(CheckpointError, match="shape"):
        init_weights_from(build_model(ModelConfig(arch="ncsn", ngf=8), SIGMAS), src)
    unet_src, _ = _saved(tmp_path / "u")
    with pytest.raises(CheckpointError, match="channel count"):
        init_weights_from(build_model(ModelConfig(arch="unet", ngf=4, in_channels=2), SIGMAS), unet_src)


def test_warm_start_from_a_bundled_prior_and_a_level_split_names_its_two_networks():
    """The default prior is one network: ``init_from: bundled`` loads it. A level split (``bundled:brain-split``,
    the default until 2026-12-07) has two: it asks for one of them by name; each loads into the architecture."""
    from medscore.priors.store import bundled_info, load_prior

    net = build_model(ModelConfig(arch="ncsn", ngf=32, conditioning="continuous"), geometric_sigmas(2.0, 0.01, 7))
    init_weights_from(net, "bundled")
    default = load_prior(None).model
    assert torch.equal(net.state_dict()["begin.weight"], default.state_dict()["begin.weight"])
    split = bundled_info("brain-split")
    with pytest.raises(CheckpointError, match=split["fine"]):
        init_weights_from(net, "bundled:brain-split")
    init_weights_from(net, split["fine"])
    fine = load_prior(split["fine"]).model
    assert torch.equal(net.state_dict()["begin.weight"], fine.state_dict()["begin.weight"])


# --- complex training images -------------------------------------------------------------------------------

def test_random_phase_keeps_the_magnitude_and_is_seeded():
    mag = torch.rand(1, 32, 32)
    a, b, c = with_random_phase(mag, 5), with_random_phase(mag, 5), with_random_phase(mag, 6)
    assert a.shape == (2, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a.norm(dim=0), mag[0], rtol=1e-5, atol=1e-6)
    phases = [torch.atan2(*with_random_phase(torch.ones(1, 32, 32), s).flip(0)) for s in range(40)]
    spread = [float(p.std()) for p in phases]
    assert sum(sp < 1e-5 for sp in spread) >= 2  # some images keep a constant phase (nearly real inputs)
    assert sum(sp > 0.3 for sp in spread) >= 20  # most vary across the patch


def test_phase_needs_two_channels():
    with pytest.raises(ConfigError, match="in_channels"):
        TrainConfig(data=DataConfig(phase="random"))


def test_complex_run_continues_a_complex_model(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    for i in range(2):
        write_nifti(root / f"s{i}.nii.gz", phantom((20, 22, 8), seed=i))
    src, _ = _saved(tmp_path, in_channels=2)
    cfg = TrainConfig(model=ModelConfig(arch="unet", ngf=4, in_channels=2),
                      noise=NoiseConfig(sigma_max=1.0, sigma_min=0.01, num_levels=5),
                      data=DataConfig(path=str(root), image_size=16, phase="random"), init_from=str(src),
                      steps=3, batch_size=2, device="cpu", amp=False, warmup_steps=1, log_every=1,
                      checkpoint_every=3, sample_every=1000, num_samples=0, val_images=2)
    train(cfg, tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert loaded.model.in_channels == 2 and loaded.meta["train_config"]["init_from"] == str(src)
    with torch.no_grad():
        assert loaded.model(torch.rand(1, 2, 16, 16), torch.tensor([0.1])).shape == (1, 2, 16, 16)
    again = dataclasses.replace(cfg, steps=3)
    train(again, tmp_path / "run2")
    assert torch.equal(load_model(tmp_path / "run2").model.unet.conv_0.conv_0.conv.weight,
                       loaded.model.unet.conv_0.conv_0.conv.weight)  # seeded: the same run twice
