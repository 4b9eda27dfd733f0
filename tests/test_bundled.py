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
from medscore.models import bundled_dir, bundled_info, load_prior
from medscore.physics import SingleCoilMRI, make_mask
from medscore.solvers import SamplerOptions, reconstruct_mri


def test_bundled_weights_match_their_sha256_and_size():
    info = bundled_info()
    weights = bundled_dir() / "model.safetensors"
    assert weights.stat().st_size <= 25e6
    assert sha256(weights) == info["sha256"]
    prior = load_prior(None)
    assert prior.meta["modality"] == "mri"
    assert len(prior.sigmas) == len(info["sigmas"])


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    fake = tmp_path / "pretrained"
    shutil.copytree(bundled_dir(), fake)
    data = bytearray((fake / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (fake / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr("medscore.models.bundled_dir", lambda: fake)
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
