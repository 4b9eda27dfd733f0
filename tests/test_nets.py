"""Score networks: shapes on any image size, noise-level conditioning, NCSNv2's 1/sigma output, model building."""

from __future__ import annotations

import pytest
import torch

from medscore.config import ModelConfig
from medscore.nets import NCSN, NCSNv2, build_model, count_parameters
from medscore.nets.layers import InstanceNormPlus
from medscore.training.noise import geometric_sigmas

SIGMAS = geometric_sigmas(1.0, 0.01, 6)


def _nets(downsample3: bool = True):
    torch.manual_seed(0)
    return {
        "ncsn-index": NCSN(1, 8, SIGMAS, conditioning="index", downsample3=downsample3),
        "ncsn-continuous": NCSN(1, 8, SIGMAS, conditioning="continuous", scale_by_sigma=True, downsample3=downsample3),
        "ncsnv2": NCSNv2(1, 8, SIGMAS, downsample3=downsample3),
    }


@pytest.mark.parametrize("downsample3", [True, False])
@pytest.mark.parametrize("hw", [(32, 32), (28, 36), (30, 30), (17, 23)])
def test_output_shape_equals_input_shape(hw, downsample3):
    x = torch.rand(2, 1, *hw)
    sigma = SIGMAS[[0, 3]]
    for name, net in _nets(downsample3).items():
        with torch.no_grad():
            out = net(x, sigma)
        assert out.shape == x.shape, name
        assert torch.isfinite(out).all(), name


def test_multichannel_and_scalar_sigma():
    torch.manual_seed(0)
    net = NCSN(2, 8, SIGMAS, conditioning="continuous")
    x = torch.rand(3, 2, 16, 20)
    with torch.no_grad():
        a = net(x, torch.tensor(0.1))  # one sigma for the whole batch
        b = net(x, torch.full((3,), 0.1))
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        net(x[0], torch.tensor(0.1))


def test_samples_are_independent_within_a_batch():
    # instance norm is per sample: each row of a batch equals the same row run alone with its own sigma
    x = torch.rand(3, 1, 16, 16)
    sigma = SIGMAS[[0, 2, 5]]
    for name, net in _nets().items():
        with torch.no_grad():
            full = net(x, sigma)
            for i in range(3):
                one = net(x[i : i + 1], sigma[i : i + 1])
                tol = 1e-5 * float(full[i].abs().max())
                torch.testing.assert_close(one, full[i : i + 1], rtol=1e-4, atol=tol, msg=name)


def test_ncsn_conditioning_changes_output():
    x = torch.rand(1, 1, 16, 16).repeat(2, 1, 1, 1)
    nets = _nets()
    for name in ("ncsn-index", "ncsn-continuous"):
        net = nets[name]
        with torch.no_grad():
            out = net(x, SIGMAS[[1, 4]])
        # compare the unscaled network outputs: any difference comes from the conditioning alone
        raw = out * SIGMAS[[1, 4]].view(-1, 1, 1, 1) if net.scale_by_sigma else out
        rel = (raw[0] - raw[1]).norm() / raw[0].norm()
        assert rel > 1e-3, (name, float(rel))
    # index conditioning: sigmas between two trained levels snap to the nearest one (same output)
    net = nets["ncsn-index"]
    with torch.no_grad():
        a = net(x[:1], SIGMAS[2:3])
        b = net(x[:1], SIGMAS[2:3] * 1.05)
    torch.testing.assert_close(a, b)
    # continuous conditioning: an untrained sigma in between gives its own output
    net = nets["ncsn-continuous"]
    with torch.no_grad():
        a = net(x[:1], SIGMAS[2:3]) * SIGMAS[2]
        b = net(x[:1], SIGMAS[2:3] * 1.05) * SIGMAS[2] * 1.05
    assert not torch.allclose(a, b)


def test_ncsn_scale_by_sigma_exact():
    torch.manual_seed(0)
    plain = NCSN(1, 8, SIGMAS, conditioning="continuous", scale_by_sigma=False)
    scaled = NCSN(1, 8, SIGMAS, conditioning="continuous", scale_by_sigma=True)
    scaled.load_state_dict(plain.state_dict())
    x, sigma = torch.rand(2, 1, 16, 16), SIGMAS[[0, 4]]
    with torch.no_grad():
        torch.testing.assert_close(scaled(x, sigma), plain(x, sigma) / sigma.view(-1, 1, 1, 1))


def test_ncsnv2_output_scales_as_one_over_sigma():
    net = _nets()["ncsnv2"]
    x = torch.rand(1, 1, 20, 20).repeat(4, 1, 1, 1)
    sigma = torch.tensor([1.0, 0.3, 0.05, 2.5])  # also outside the trained range: NCSNv2 ignores the level
    with torch.no_grad():
        out = net(x, sigma)
    prod = out * sigma.view(-1, 1, 1, 1)
    for i in range(1, 4):
        torch.testing.assert_close(prod[i], prod[0], rtol=1e-5, atol=1e-6)
    assert prod.abs().max() > 0


def test_level_index():
    for net in _nets().values():
        torch.testing.assert_close(net.level_index(net.sigmas), torch.arange(len(SIGMAS)))
        # nearest in log space: a bit above / below each level still maps to it
        torch.testing.assert_close(net.level_index(net.sigmas * 1.1), torch.arange(len(SIGMAS)))
        torch.testing.assert_close(net.level_index(net.sigmas * 0.9), torch.arange(len(SIGMAS)))
        # outside the range: clamped to the ends
        assert net.level_index(torch.tensor([100.0, 1e-5])).tolist() == [0, len(SIGMAS) - 1]
    # the geometric midpoint in log space between levels 1 and 2 is equidistant; slightly above it -> level 1
    mid = torch.sqrt(SIGMAS[1] * SIGMAS[2])
    net = _nets()["ncsn-index"]
    assert net.level_index(torch.stack([mid * 1.01, mid * 0.99])).tolist() == [1, 2]


def test_build_model_from_config():
    m = build_model(ModelConfig(arch="ncsn", ngf=8, conditioning="index", scale_by_sigma=False), SIGMAS)
    assert isinstance(m, NCSN) and m.conditioning == "index" and not m.scale_by_sigma
    assert m.begin.out_channels == 8 and m.res2[0].conv1.out_channels == 16
    torch.testing.assert_close(m.sigmas, SIGMAS)
    m = build_model(ModelConfig(arch="ncsn", ngf=8, in_channels=2), SIGMAS)
    assert m.conditioning == "continuous" and m.scale_by_sigma and m.begin.in_channels == 2 and m.end.out_channels == 2
    m = build_model(ModelConfig(arch="ncsnv2", ngf=8, downsample3=False), SIGMAS)
    assert isinstance(m, NCSNv2) and m.conditioning == "none" and m.scale_by_sigma and m.size_multiple == 2
    # index conditioning has one embedding input per level: its size grows with L, continuous does not
    idx5 = count_parameters(build_model(ModelConfig(ngf=8, conditioning="index"), SIGMAS[:5]))
    idx6 = count_parameters(build_model(ModelConfig(ngf=8, conditioning="index"), SIGMAS))
    n_norms = sum(isinstance(mod, InstanceNormPlus) for mod in m.modules())
    n_channels = sum(mod.channels for mod in m.modules() if isinstance(mod, InstanceNormPlus))
    assert n_norms > 0 and idx6 - idx5 == 3 * n_channels
    c5 = count_parameters(build_model(ModelConfig(ngf=8), SIGMAS[:5]))
    assert c5 == count_parameters(build_model(ModelConfig(ngf=8), SIGMAS))


def test_bad_arguments():
    with pytest.raises(ValueError):
        NCSN(1, 8, None)
    with pytest.raises(ValueError):
        NCSN(1, 8, torch.tensor([1.0, -0.1]))
    with pytest.raises(ValueError):
        NCSN(1, 8, SIGMAS, conditioning="none")
    with pytest.raises(ValueError):
        NCSNv2(1, 2, SIGMAS)


def test_instance_norm_plus_keeps_channel_mean_spread():
    # with gamma = alpha = 1, beta = 0: IN(x) + standardised channel means, so channel means are not lost
    norm = InstanceNormPlus(4)
    x = torch.randn(2, 4, 8, 8) + torch.tensor([0.0, 1.0, 2.0, 5.0]).view(1, 4, 1, 1)
    out = norm(x)
    mu = x.mean(dim=(2, 3))
    expect = (mu - mu.mean(1, keepdim=True)) / torch.sqrt(mu.var(1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(out.mean(dim=(2, 3)), expect, rtol=1e-4, atol=1e-5)
    cond = InstanceNormPlus(4, cond_dim=3)
    with pytest.raises(ValueError):
        cond(x)


ARCHS = [("ncsn", "continuous"), ("ncsn", "index"), ("ncsnv2", "continuous")]


def test_parameter_count_table(capsys):
    """Parameter counts for the docs (index conditioning with L = 10 levels; continuous/NCSNv2 do not depend on L)."""
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    rows = []
    for ngf in (32, 64, 128):
        counts = [count_parameters(build_model(ModelConfig(arch=a, ngf=ngf, conditioning=c), sigmas)) for a, c in ARCHS]
        rows.append((ngf, *counts))
    # widths double -> about 4x the parameters
    for (_, *a), (_, *b) in zip(rows, rows[1:]):
        for x, y in zip(a, b):
            assert 3.4 < y / x < 4.1
    with capsys.disabled():
        print("\n| ngf | NCSN (continuous) | NCSN (index, L=10) | NCSNv2 |")
        print("|----:|------------------:|-------------------:|-------:|")
        for ngf, *c in rows:
            print(f"| {ngf} | " + " | ".join(f"{n / 1e6:.2f} M ({n:,})" for n in c) + " |")
