"""The prior shipped inside the package: loads, matches its SHA-256, and beats zero-filled on held-out data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from medscore import metrics
from medscore.priors.checkpoint import sha256
from medscore.io.embedded import held_out
from medscore.errors import CheckpointError
from medscore.priors.split_folder import is_level_split
from medscore.priors.store import (COMPLEX_PRIOR, RAW_PHASE_PRIOR, bundled_dir, bundled_info, bundled_label,
                                   bundled_names, default_prior_name, load_prior)
from medscore.physics import SingleCoilMRI, make_mask
from medscore.solvers import SamplerOptions
from medscore.tasks import reconstruct_mri


@pytest.mark.parametrize("name", [n for n in [None, *bundled_names()] if not is_level_split(bundled_dir(n))])
def test_bundled_weights_match_their_sha256_and_size(name):
    info = bundled_info(name)
    weights = bundled_dir(name) / "model.safetensors"
    assert weights.stat().st_size <= 25e6
    assert sha256(weights) == info["sha256"]
    prior = load_prior(f"bundled:{name}" if name else None)
    assert prior.meta["modality"] == "mri"
    assert len(prior.sigmas) == len(info["sigmas"])
    assert bundled_label(bundled_dir(name)) == info["name"]


def test_a_bundled_complex_prior_is_chosen_for_complex_data(tmp_path, monkeypatch):
    """Without --model: complex data with their scanner phase (single coil) take ``bundled:ncsn-complex``, nearly
    real ones (multi coil, phase in the maps) the default prior on both parts (docs/model-card.md); a prior
    installed as pretrained/complex is picked for all complex data, and only for them."""
    assert default_prior_name() is None and default_prior_name(complex_data=True) is None
    assert default_prior_name(complex_data=True, raw_phase=True) == RAW_PHASE_PRIOR
    assert load_prior(None, complex_data=True, raw_phase=True).model.pair_channels
    from medscore.priors.checkpoint import save_model
    from medscore.config import ModelConfig, NoiseConfig, TrainConfig
    from medscore.nets import build_model

    fake = tmp_path / "pretrained"
    shutil.copytree(bundled_dir(), fake)
    cfg = TrainConfig(model=ModelConfig(arch="unet", ngf=4, in_channels=2), noise=NoiseConfig(sigma_max=1.0,
                                                                                             num_levels=3))
    save_model(fake / COMPLEX_PRIOR, *(2 * [build_model(cfg.model, torch.tensor([1.0, 0.1, 0.01]))]), cfg, step=1)
    meta = json.loads((fake / COMPLEX_PRIOR / "model.json").read_text())
    (fake / COMPLEX_PRIOR / "model.json").write_text(json.dumps({**meta, "sha256": sha256(fake / COMPLEX_PRIOR /
                                                                                           "model.safetensors")}))
    monkeypatch.setattr("medscore.priors.store.bundled_dir", lambda name=None: fake / name if name else fake)
    assert COMPLEX_PRIOR in bundled_names()
    assert load_prior(None, complex_data=True).model.in_channels == 2
    assert default_prior_name(complex_data=True, raw_phase=True) == COMPLEX_PRIOR
    assert load_prior(None).model.in_channels == 1
    assert load_prior(f"bundled:{COMPLEX_PRIOR}").model.in_channels == 2
    with pytest.raises(CheckpointError, match="bundled:complex"):
        load_prior("bundled:nonexistent")


def test_the_shipped_complex_prior_reconstructs_multicoil_k_space_like_the_magnitude_prior():
    """One held-out test slice, simulated 8-coil 1D 4x acquisition with realistic phase and ESPIRiT maps
    (:mod:`medscore.tasks.multicoil`): ``bundled:ncsn-complex`` (a channel-pair prior) is far above zero-filled RSS
    and within 1 dB of the default magnitude prior applied to the real and imaginary parts, which the maps' refined
    phase helps more (this slice: -0.52 dB; the validation slab at ``default``: -0.7 to +0.55 dB per task,
    docs/benchmarks.md run 7)."""
    pytest.importorskip("sigpy")
    from medscore.evaluation.specs import TASKS, degrade, medscore_method, run_method

    ref = torch.from_numpy(held_out("test")[5:6].copy())[:, None]  # one whole 151 x 187 slice
    prob = degrade(TASKS["mc-1d-4x"], ref, seed=2)
    opts = SamplerOptions(preset="fast", seed=0)
    priors = {"complex": load_prior("bundled:ncsn-complex"), "magnitude": load_prior(None, complex_data=True)}
    assert priors["complex"].model.pair_channels and priors["magnitude"].model.in_channels == 1
    psnr = {name: float(run_method(medscore_method(TASKS["mc-1d-4x"], prior.model, opts, "sampler"), prob).psnr[0])
            for name, prior in priors.items()}
    zero_filled = metrics.psnr(ref[0, 0].numpy(), prob.baseline[0, 0].numpy())
    assert psnr["complex"] > zero_filled + 5.0, (psnr, zero_filled)
    assert abs(psnr["complex"] - psnr["magnitude"]) < 1.0, psnr


def test_single_coil_complex_k_space_gains_from_the_phase_moved_into_a_one_coil_map():
    """One held-out test slice with a simulated scanner phase, single-coil 1D 4x k-space with noise: the API's
    default for complex k-space (the magnitude prior, the image's smooth phase moved into a one-coil map, the
    multi-coil passes) is well above the channel-pair prior on the raw image, the previous default (validation
    slab at ``fast``: 31.72 against 28.65 dB, docs/benchmarks.md), and above the magnitude prior on the raw parts."""
    from medscore import api
    from medscore.physics import fft2c, random_phase
    from medscore.solvers import SamplerOptions
    from medscore.tasks import reconstruct_mri

    ref = held_out("test")[5]
    image = torch.from_numpy((ref * np.exp(1j * random_phase(ref.shape, 3))).astype(np.complex64))
    mask = make_mask("random", ref.shape, 4, 0.08, seed=3)
    g = torch.Generator().manual_seed(0)
    noise = torch.complex(torch.randn(ref.shape, generator=g), torch.randn(ref.shape, generator=g)) * 0.005 / 2**0.5
    kspace = (fft2c(image) + noise) * torch.from_numpy(mask)
    est = {"default": api.reconstruct_mri(kspace.numpy(), mask, preset="fast", noise_std=0.005).mean}
    for name, model in (("raw pair", load_prior(f"bundled:{RAW_PHASE_PRIOR}")), ("raw magnitude", load_prior(None))):
        res = reconstruct_mri(model.model, kspace[None, None], torch.from_numpy(mask), SamplerOptions(preset="fast"),
                              real_image=False, noise_std=0.005)
        est[name] = torch.linalg.vector_norm(res.mean, dim=1)[0].numpy()
    psnr = {name: metrics.psnr(ref, e) for name, e in est.items()}
    assert psnr["default"] > psnr["raw pair"] + 1.0 and psnr["default"] > psnr["raw magnitude"] + 3.0, psnr


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    """The default prior is a level split of two bundled networks: damage to either member's weights is caught."""
    fake = tmp_path / "pretrained"
    shutil.copytree(bundled_dir(), fake)
    default = bundled_info(None)
    member = default["fine"].split(":", 1)[1] if is_level_split(bundled_dir()) else ""
    weights = fake / member / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr("medscore.priors.store.bundled_dir", lambda name=None: fake / name if name else fake)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_prior(None)


def test_bundled_prior_reconstructs_a_held_out_slice_better_than_zero_filled():
    torch.manual_seed(0)
    ref = torch.from_numpy(held_out("test")[5:6].copy())[:, None]  # one whole 151 x 187 test slice
    mask = torch.from_numpy(make_mask("random", tuple(ref.shape[-2:]), 4, 0.08, seed=3))
    op = SingleCoilMRI(mask, real_input=True)
    y = op.A(ref)
    zf = op.A_dagger(y).abs()
    res = reconstruct_mri(load_prior(None).model, y, mask, SamplerOptions(preset="fast", seed=0))
    p_zf = metrics.psnr(ref[0, 0].numpy(), zf[0, 0].numpy())
    p_ms = metrics.psnr(ref[0, 0].numpy(), res.mean[0, 0].numpy())
    assert p_ms > p_zf + 3.0, (p_ms, p_zf)
    assert np.isfinite(p_ms) and res.nfe <= 100



def test_the_default_priors_stored_presets_are_the_built_in_ones():
    """The bundled prior's model.json carries the presets it was tuned with; they must not drift from the
    built-in table (``medscore.sampling.PRESETS``) that the docs and benchmarks describe."""
    from medscore.sampling import PRESETS
    from medscore.sampling.presets import presets_to_json

    stored = bundled_info(None)["presets"]
    assert stored == presets_to_json({name: PRESETS[name] for name in stored})
