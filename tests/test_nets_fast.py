"""Fused score-network kernels: instance norm++ and max-pool against reference formulas, the bundled
prior against the same network written with those formulas, 3D networks, and ``accelerate``'s clean fallback."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from medscore.config import ModelConfig
from medscore.nets import NCSN, NCSNv2, build_model
from medscore.nets.accelerate import accelerate, autocast_score, is_compiled, resolve_precision, score_inference
from medscore.nets.functional import instance_norm_plus, max_pool_same
from medscore.nets.layers import InstanceNormPlus, NormParams
from medscore.training.noise import geometric_sigmas

SIGMAS = geometric_sigmas(1.0, 0.01, 6)


def _reference_norm(x: torch.Tensor, gamma: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Instance norm++ written out: IN(x) + alpha * standardised channel means, then gamma, beta."""
    dims = tuple(range(2, x.ndim))
    view = (x.shape[0] if gamma.ndim == 2 else 1, x.shape[1]) + (1,) * len(dims)
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    means = mu.flatten(1)
    mn = (means - means.mean(1, keepdim=True)) / torch.sqrt(means.var(1, unbiased=False, keepdim=True) + 1e-5)
    h = (x - mu) / torch.sqrt(var + 1e-5) + alpha.reshape(view) * mn.reshape(x.shape[:2] + (1,) * len(dims))
    return gamma.reshape(view) * h + beta.reshape(view)


@pytest.mark.parametrize("spatial", [(9, 11), (5, 6, 7)])
@pytest.mark.parametrize("cond_dim", [0, 5])
def test_instance_norm_plus_matches_formula(spatial, cond_dim):
    torch.manual_seed(0)
    norm = InstanceNormPlus(6, cond_dim)
    with torch.no_grad():  # non-trivial affine parameters
        for p in norm.parameters():
            p.normal_(0.5, 0.7)
    x = torch.randn(3, 6, *spatial) * 3 + torch.randn(1, 6, *([1] * len(spatial))) * 4
    cond = torch.randn(3, cond_dim) if cond_dim else None
    if cond_dim:
        g, a, b = norm.embed(cond).chunk(3, dim=1)
    else:
        g, a, b = norm.gamma, norm.alpha, norm.beta
    with torch.no_grad():
        expect = _reference_norm(x.double(), g.double(), a.double(), b.double()).float()
        x0 = x.clone()
        fast = norm(x, cond)  # in-place path
        assert torch.equal(x, x0)  # the input is never modified
        if cond_dim:  # the batched embeddings give the same parameters
            torch.testing.assert_close(norm(x, NormParams([norm], cond)), fast)
    torch.testing.assert_close(fast, expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm(x, cond), expect, rtol=1e-5, atol=1e-5)  # autograd path


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["plain", "channels_last"])
def test_half_precision_instance_norm_plus_matches_formula(dtype, layout):
    """The inference path for bf16/fp16 tensors (ATen's group norm on the centred tensor) gives the fp64 formula of
    the same half-precision input to within its own output rounding, keeps dtype and memory layout, and stays exact
    for a channel whose mean is 1,000 times its spread (where a one-pass variance of the uncentred tensor fails)."""
    torch.manual_seed(0)
    offsets = torch.randn(1, 8, 1, 1) * 3
    offsets[0, 3] = 1000.0
    x = (torch.randn(2, 8, 24, 20) + offsets).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    g, a, b = (torch.randn(2, 8) for _ in range(3))
    expect = _reference_norm(x.double(), g.double(), a.double(), b.double())
    with torch.inference_mode():
        out = instance_norm_plus(x, g, a, b)
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    rounding = torch.finfo(dtype).eps  # one ulp relative at 1; the output is rounded to dtype once
    err = (out.double() - expect).abs() / (expect.abs() + 1)
    assert err.max() < 4 * rounding
    assert err[:, 3].max() < 4 * rounding  # the channel at mean 1,000


def test_instance_norm_plus_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    g, a, b = (torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(instance_norm_plus, (x, g, a, b))


@pytest.mark.parametrize("kernel", [3, 5])
def test_separable_max_pool_is_exact(kernel):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 13, 17)
    assert torch.equal(max_pool_same(x, kernel), F.max_pool2d(x, kernel, stride=1, padding=kernel // 2))
    v = torch.randn(1, 2, 6, 9, 7)
    assert torch.equal(max_pool_same(v, kernel), F.max_pool3d(v, kernel, stride=1, padding=kernel // 2))
    x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool_same(x, kernel), F.max_pool2d(x, kernel, stride=1, padding=kernel // 2))
    # same gradient too (random data: no ties)
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    (g_fast,) = torch.autograd.grad(max_pool_same(x, kernel).square().sum(), x)
    (g_ref,) = torch.autograd.grad(F.max_pool2d(x, kernel, 1, kernel // 2).square().sum(), x)
    torch.testing.assert_close(g_fast, g_ref)


def test_bundled_prior_matches_the_formula_forward(monkeypatch):
    """The bundled weights load with strict keys, and the fused forward (channels-last, as loaded) equals the
    same network with instance norm++ and the max-pool written out as their formulas, within 1e-4 relative."""
    from medscore.priors.store import load_prior  # loads the safetensors with strict=True: keys unchanged
    from medscore.nets import layers

    model = load_prior(None).model
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 64, 64, generator=g) + 0.1 * torch.randn(2, 1, 64, 64, generator=g)
    sigma = torch.tensor([0.05, 0.5])
    with torch.no_grad():
        fast = model(x, sigma)
        monkeypatch.setattr(layers, "instance_norm_plus", _reference_norm)
        monkeypatch.setattr(layers, "max_pool_same", lambda t, k: F.max_pool2d(t, k, stride=1, padding=k // 2))
        expect = model(x, sigma)
    rel = float((fast - expect).abs().max() / expect.abs().max())
    assert rel < 1e-4, rel


@pytest.mark.parametrize("arch", ["ncsn", "ncsnv2"])
def test_3d_network(arch):
    torch.manual_seed(0)
    net = NCSN(1, 4, SIGMAS, conditioning="continuous", spatial_dims=3) if arch == "ncsn" else \
        NCSNv2(1, 4, SIGMAS, spatial_dims=3)
    assert isinstance(net.begin, torch.nn.Conv3d)
    for shape in [(1, 1, 16, 16, 16), (2, 1, 10, 9, 7)]:
        x = torch.rand(shape)
        with torch.no_grad():
            out = net(x, SIGMAS[: shape[0]])
        assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        net(torch.rand(1, 1, 16, 16), SIGMAS[:1])
    with pytest.raises(ValueError):
        NCSN(1, 4, SIGMAS, spatial_dims=4)
    x = torch.rand(2, 1, 8, 12, 8)  # channels-last-3d gives the same output
    expect = score_inference(net, x, SIGMAS[:2])
    torch.testing.assert_close(score_inference(accelerate(net, compile=False), x, SIGMAS[:2]), expect,
                               rtol=1e-4, atol=1e-5 * float(expect.abs().max()))


def test_build_model_spatial_dims_default_and_state_dict():
    m2 = build_model(ModelConfig(ngf=4), SIGMAS)
    assert m2.spatial_dims == 2 and isinstance(m2.begin, torch.nn.Conv2d)
    m3 = NCSN(1, 4, SIGMAS, conditioning="continuous", scale_by_sigma=True, spatial_dims=3)
    assert m2.state_dict().keys() == m3.state_dict().keys()  # same names, only kernel shapes differ
    assert not any(k.startswith("_norms") for k in m2.state_dict())  # the norm list is no submodule


def test_training_path_and_deepcopy():
    torch.manual_seed(0)
    net = NCSN(1, 4, SIGMAS, conditioning="index")
    x, sigma = torch.rand(2, 1, 12, 12), SIGMAS[[0, 3]]
    out = net(x, sigma)  # grad-enabled path: no in-place op may break backward
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        torch.testing.assert_close(net(x, sigma), out.detach())
        twin = copy.deepcopy(net)  # e.g. the EMA copy: its norm list points at its own modules
        assert all(a is not b for a, b in zip(twin._norms, net._norms))
        twin.end_norm.embed.bias.add_(1.0)
        assert not torch.allclose(twin(x, sigma), net(x, sigma))


def test_accelerate_falls_back_cleanly(monkeypatch):
    torch.manual_seed(0)
    net = NCSN(1, 4, SIGMAS, conditioning="continuous").eval()
    x, sigma = torch.rand(2, 1, 12, 12), SIGMAS[[1, 2]]
    expect = score_inference(net, x, sigma)
    keys = set(net.state_dict())

    def broken_compiled(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken_compiled)
    fast = accelerate(net, compile=True, channels_last=True)
    assert fast is net and set(net.state_dict()) == keys
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        out = score_inference(net, x, sigma)
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-5)
    assert not is_compiled(net)
    with pytest.raises(ValueError):  # input errors still surface as themselves
        net(x[0], sigma)

    def refuse(fn, **kw):
        raise RuntimeError("Dynamo is not supported on this Python")

    other = NCSN(1, 4, SIGMAS, conditioning="continuous").eval()
    monkeypatch.setattr(torch, "compile", refuse)
    with pytest.warns(RuntimeWarning, match="unavailable"):
        assert accelerate(other, compile=True) is other
    assert accelerate(other) is other and not is_compiled(other)  # "auto" on CPU: no compile
    assert score_inference(other, x, 0.1).dtype == torch.float32


def test_inference_layout_is_channels_last_for_2d_networks_only():
    """Loaded models run channels-last in 2D (measured faster); 3D networks keep their layout (no gain measured)."""
    from medscore.nets.accelerate import inference_layout

    two = inference_layout(NCSN(1, 4, SIGMAS, conditioning="continuous"))
    three = inference_layout(NCSN(1, 4, SIGMAS, conditioning="continuous", spatial_dims=3))
    w2 = next(p for p in two.parameters() if p.ndim == 4 and p.shape[1] > 1)
    w3 = next(p for p in three.parameters() if p.ndim == 5 and p.shape[1] > 1)
    assert w2.is_contiguous(memory_format=torch.channels_last) and not w2.is_contiguous()
    assert w3.is_contiguous()


def test_bf16_precision_of_a_score_network_is_close_to_fp32():
    """``autocast_score``: fp32 and ``auto`` on CPU are the network itself; bf16 returns fp32 output within bf16's
    rounding of the fp32 one (and not equal to it: the convolutions did run in bf16)."""
    torch.manual_seed(0)
    net = NCSN(1, 8, SIGMAS, conditioning="continuous").eval()
    x, sigma = torch.rand(2, 1, 16, 16), SIGMAS[[0, 3]]
    assert autocast_score(net, "fp32", "cpu") is net
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # CPUs without native bf16: "emulated, slower"
        expect, out = net(x, sigma), autocast_score(net, "bf16", "cpu")(x, sigma)
    rel = float((out - expect).norm() / expect.norm())
    assert out.dtype == torch.float32 and 1e-5 < rel < 3e-2, rel
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_auto_precision_is_bf16_on_cuda_gpus_with_bf16_only(monkeypatch):
    """``auto``: bf16 on a CUDA GPU that has it, fp32 on one that does not (no GPU needed: the resolution only reads
    the device type and the GPU's capability)."""
    assert resolve_precision("auto", "cpu") is None and resolve_precision("fp32", "cuda") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda:0") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") is None and resolve_precision("bf16", "cuda") is torch.bfloat16


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_on_cpu_is_bf16_only_for_measured_2d_networks_on_native_bf16(monkeypatch, native):
    """``auto`` on CPU: bf16 for medscore's 2D networks (and a level split of them) where the CPU computes bf16
    natively; fp32 (the score itself, untouched) for 3D networks, plain functions and on CPUs without bf16."""
    from medscore.nets import accelerate as acc
    from medscore.nets.level_split import LevelSplitScore

    monkeypatch.setattr(acc, "cpu_has_native_bf16", lambda: native)
    two = NCSN(1, 4, SIGMAS, conditioning="continuous")
    three = NCSN(1, 4, SIGMAS, conditioning="continuous", spatial_dims=3)
    split = LevelSplitScore(two, NCSN(1, 4, SIGMAS, conditioning="continuous"), 0.1)

    def analytic(x, sigma):
        return -x

    want = torch.bfloat16 if native else None
    assert resolve_precision("auto", "cpu", two) is want and resolve_precision("auto", "cpu", split) is want
    assert resolve_precision("auto", "cpu", two, (256, 256)) is want
    assert resolve_precision("auto", "cpu", two, (120, 120)) is None  # small images: fp32 is faster
    assert resolve_precision("auto", "cpu", three) is None and resolve_precision("auto", "cpu", analytic) is None
    assert autocast_score(analytic, "auto", "cpu") is analytic
    assert (autocast_score(two, "auto", "cpu") is two) is not native
    small, big = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        run = autocast_score(two.eval(), "auto", "cpu")
        assert torch.equal(run(small, SIGMAS[:1]), two(small, SIGMAS[:1]))  # below the size: the fp32 network
        assert torch.equal(run(big, SIGMAS[:1]), two(big, SIGMAS[:1])) is not native


def test_images_per_call_keeps_cpu_calls_cache_sized_and_chunks_exactly():
    """On CPU a call holds ``CPU_PIXELS_PER_CALL`` pixels (at least one image); on a GPU the whole batch. The
    chunked network gives the unchunked result."""
    from medscore.nets.accelerate import CPU_PIXELS_PER_CALL, chunked_score, images_per_call

    assert images_per_call((128, 128), "cpu") == CPU_PIXELS_PER_CALL // (128 * 128)
    assert images_per_call((512, 512), "cpu") == 1 and images_per_call((256, 256), "cuda") is None
    torch.manual_seed(0)
    net = NCSN(1, 4, SIGMAS, conditioning="continuous").eval()
    x, sigma = torch.rand(5, 1, 16, 16), SIGMAS[[0, 1, 2, 3, 4]]
    with torch.no_grad():
        torch.testing.assert_close(chunked_score(net, 2)(x, sigma), net(x, sigma), rtol=1e-5, atol=1e-6)
