"""The prior shipped inside the package: loads, matches its SHA-256, and beats zero-filled on held-out data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from medscore import metrics
from medscore.checkpoint import sha256
from medscore.embedded import held_out
from medscore.errors import CheckpointError
from medscore.models import COMPLEX_PRIOR, bundled_dir, bundled_info, bundled_label, bundled_names, load_prior
from medscore.physics import SingleCoilMRI, make_mask
from medscore.solvers import SamplerOptions, reconstruct_mri


@pytest.mark.parametrize("name", [None, *bundled_names()])
def test_bundled_weights_match_their_sha256_and_size(name):
    info = bundled_info(name)
    weights = bundled_dir(name) / "model.safetensors"
    assert weights.stat().st_size <= 25e6
    assert sha256(weights) == info["sha256"]
    prior = load_prior(f"bundled:{name}" if name else None)
    assert prior.meta["modality"] == "mri"
    assert len(prior.sigmas) == len(info["sigmas"])
    assert bundled_label(bundled_dir(name)) == info["name"]


def test_the_complex_prior_is_chosen_for_complex_data():
    assert COMPLEX_PRIOR in bundled_names()
    assert load_prior(None, complex_data=True).model.in_channels == 2
    assert load_prior(None).model.in_channels == 1
    with pytest.raises(CheckpointError, match="bundled:complex"):
        load_prior("bundled:nonexistent")


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    fake = tmp_path / "pretrained"
    shutil.copytree(bundled_dir(), fake)
    data = bytearray((fake / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (fake / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr("medscore.models.bundled_dir", lambda name=None: fake / name if name else fake)
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


def test_bundled_complex_prior_reconstructs_complex_kspace_better_than_zero_filled():
    """A held-out slice given a scanner-like phase, measured as single-coil k-space (4x): the API picks the
    bundled complex prior for complex data, and its magnitude beats the zero-filled one by 3 dB."""
    from medscore import api
    from medscore.physics import fft2c, ifft2c, random_phase

    mag = held_out("test")[5].astype(np.float32)
    image = mag * np.exp(1j * random_phase(mag.shape, seed=4))
    mask = make_mask("random", mag.shape, 4, 0.08, seed=3)
    kspace = (fft2c(torch.from_numpy(image.astype(np.complex64))).numpy() * mask).astype(np.complex64)
    est = api.reconstruct_mri(kspace, mask, preset="fast", seed=0)
    zf = np.abs(ifft2c(torch.from_numpy(kspace)).numpy())
    p_zf, p_ms = metrics.psnr(mag, zf), metrics.psnr(mag, est.mean)
    assert p_ms > p_zf + 3.0, (p_ms, p_zf)

