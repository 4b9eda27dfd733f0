"""The channel-pair complex prior (``model.pair_channels``): it starts as the magnitude prior on the real and the
imaginary part, is equivariant to swapping them, learns a complex Gaussian score, and trains and reloads."""

from __future__ import annotations

import pytest
import torch

from _synth import QUIET_MONAI, phantom, write_nifti
from medscore.priors.checkpoint import load_model, save_model
from medscore.config import DataConfig, ModelConfig, NoiseConfig, TrainConfig
from medscore.errors import CheckpointError, ConfigError
from medscore.priors.checks import estimate_parameters
from medscore.nets import NCSN, build_model, count_parameters
from medscore.training.noise import geometric_sigmas
from medscore.training.loop import train
from medscore.training.init_from import init_weights_from
from test_dsm import _gen, _rel_errors, _train

SIGMAS = geometric_sigmas(1.0, 0.01, 5)
PAIR = ModelConfig(arch="ncsn", ngf=4, in_channels=2, pair_channels=True)
pytestmark = QUIET_MONAI


def _magnitude_source(tmp_path) -> tuple:
    cfg = TrainConfig(model=ModelConfig(arch="ncsn", ngf=4), noise=NoiseConfig(sigma_max=1.0, num_levels=5))
    torch.manual_seed(1)
    net = build_model(cfg.model, SIGMAS)
    with torch.no_grad():  # non-trivial weights everywhere, the noise-level embeddings included
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    save_model(tmp_path / "mag", net, net, cfg, step=1)
    return tmp_path / "mag", net.eval()


def test_a_pair_prior_warm_started_from_a_magnitude_prior_is_that_prior_on_each_channel(tmp_path):
    src, mag = _magnitude_source(tmp_path)
    pair = build_model(PAIR, SIGMAS)
    init_weights_from(pair, src)
    pair.eval()
    x, sigma = torch.randn(3, 2, 20, 24), SIGMAS[[0, 2, 4]]
    with torch.no_grad():
        both = pair(x, sigma)
        for c in (0, 1):  # equal up to float rounding (the zero partner still enters the convolution's sums)
            ref = mag(x[:, c:c + 1], sigma)
            assert float((both[:, c:c + 1] - ref).abs().max() / ref.abs().max()) < 1e-4
        pair.begin.weight[:, 1].normal_()  # once the partner weights move, each channel sees the other
        assert (pair(x, sigma) - both).abs().max() > 1e-3
    plain = build_model(ModelConfig(arch="ncsn", ngf=4, in_channels=2), SIGMAS)
    with pytest.raises(CheckpointError, match="channel count"):
        init_weights_from(plain, src)  # only the channel pair widens a magnitude network


def test_a_pair_prior_is_equivariant_to_swapping_the_channels():
    torch.manual_seed(0)
    pair = build_model(PAIR, SIGMAS).eval()
    x, sigma = torch.randn(2, 2, 17, 23), SIGMAS[[1, 3]]
    with torch.no_grad():
        out = pair(x, sigma)
        torch.testing.assert_close(pair(x.flip(1), sigma), out.flip(1))
        assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4  # the two channels get their own scores
    with pytest.raises(ValueError, match="B, 2"):
        pair(torch.randn(1, 1, 8, 8), sigma[:1])


def test_a_pair_prior_learns_a_complex_gaussian_score():
    """ngf 8 on 16x16 complex Gaussian images (a circular complex Gaussian around a mean with a phase ramp, the
    score the same closed form on both channels), 300 steps: relative L2 error < 0.3 at every level."""
    torch.manual_seed(0)
    s = 0.1
    mag = 0.5 + 0.2 * torch.randn(1, 1, 16, 16, generator=_gen(0))
    ramp = torch.linspace(0, 3.0, 16).view(1, 1, 1, 16)
    mu = torch.cat([mag * torch.cos(ramp), mag * torch.sin(ramp)], dim=1)
    sigmas = geometric_sigmas(1.0, 0.1, 4)
    model = NCSN(2, 8, sigmas, conditioning="continuous", scale_by_sigma=True, pair_channels=True)
    assert min(_rel_errors(model, mu, s, sigmas)) > 0.8
    _train(model, mu, s, sigmas, steps=300, batch=16, lr=1e-2, seed=0)
    errs = _rel_errors(model, mu, s, sigmas)
    assert max(errs) < 0.3, errs


def test_the_config_refuses_a_pair_without_two_channels_or_on_the_unet():
    with pytest.raises(ConfigError, match="pair_channels"):
        ModelConfig(arch="ncsn", pair_channels=True)
    with pytest.raises(ConfigError, match="pair_channels"):
        ModelConfig(arch="unet", in_channels=2, pair_channels=True)
    net = build_model(PAIR, SIGMAS)
    assert net.end.out_channels == 1 and net.begin.in_channels == 2
    assert estimate_parameters(PAIR, len(SIGMAS)) == count_parameters(net)


def test_a_pair_run_starts_from_a_magnitude_prior_and_reloads(tmp_path):
    root = tmp_path / "scans"
    root.mkdir()
    for i in range(2):
        write_nifti(root / f"s{i}.nii.gz", phantom((20, 22, 8), seed=i))
    src, mag = _magnitude_source(tmp_path)
    cfg = TrainConfig(model=PAIR, noise=NoiseConfig(sigma_max=1.0, sigma_min=0.01, num_levels=5),
                      data=DataConfig(path=str(root), image_size=16, phase="random"), init_from=str(src),
                      steps=2, batch_size=2, device="cpu", amp=False, warmup_steps=1, log_every=1,
                      checkpoint_every=2, sample_every=1000, num_samples=0, val_images=2)
    train(cfg, tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert loaded.model.pair_channels and loaded.meta["model"]["pair_channels"] is True
    weight = loaded.model.begin.weight
    assert weight.shape[1] == 2 and 0 < float(weight[:, 1].detach().abs().max()) < 1e-2  # the partner input has moved
    with torch.no_grad():
        assert loaded.model(torch.rand(1, 2, 16, 16), torch.tensor([0.1])).shape == (1, 2, 16, 16)
