"""Model files: safetensors + JSON round trip, folder/weights/JSON paths, corruption -> CheckpointError."""

from __future__ import annotations

import copy

import json

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from medscore.priors.checkpoint import (META, RAW_WEIGHTS, RESUME, WEIGHTS, load_model, load_resume, resolve_model_path,
                                        save_model, save_resume, sha256)
from medscore.config import ModelConfig, NoiseConfig, TrainConfig, config_to_dict
from medscore.errors import CheckpointError
from medscore.nets import NCSN, NCSNv2, build_model
from medscore.training.noise import geometric_sigmas

SIGMAS = geometric_sigmas(1.0, 0.01, 5)


def _cfg(**model) -> TrainConfig:
    cfg = TrainConfig(model=ModelConfig(ngf=8, **model), noise=NoiseConfig(sigma_max=1.0, num_levels=5))
    cfg.data.image_size = 16
    return cfg


def _randomised(cfg: TrainConfig, seed: int):
    torch.manual_seed(seed)
    net = build_model(cfg.model, SIGMAS)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    return net


@pytest.fixture()
def saved(tmp_path):
    cfg = _cfg(conditioning="index", scale_by_sigma=False)
    raw, ema = _randomised(cfg, 0), _randomised(cfg, 1)
    path = save_model(tmp_path / "run", raw, ema, cfg, step=7, extra={"parameters": 123})
    return tmp_path / "run", cfg, raw, ema, path


def _assert_bitwise(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k].cpu(), sb[k].cpu()), k


def test_round_trip(saved):
    out, cfg, raw, ema, path = saved
    assert path == out / WEIGHTS
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, RAW_WEIGHTS, META])  # no temporary files left
    loaded = load_model(out)
    assert isinstance(loaded.model, NCSN) and not loaded.model.training
    _assert_bitwise(loaded.model, ema)  # model.safetensors holds the EMA weights
    assert torch.equal(loaded.sigmas, SIGMAS)
    meta = loaded.meta
    assert meta["model"] == config_to_dict(cfg.model)
    assert meta["train_config"] == config_to_dict(cfg)
    assert meta["step"] == 7 and meta["parameters"] == 123 and meta["image_size"] == 16
    assert loaded.image_size == 16 and loaded.percentiles == (0.0, 99.5)
    assert loaded.path == out / WEIGHTS
    # the raw weights and the same model through the weights path and the JSON path
    _assert_bitwise(load_model(out / RAW_WEIGHTS).model, raw)
    _assert_bitwise(load_model(out / WEIGHTS).model, ema)
    _assert_bitwise(load_model(out / META).model, ema)
    # the rebuilt model computes the same function: bit for bit in the channels-last layout loaded models use,
    # to float rounding in the layout it was trained in
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        ref = ema.eval()(x, SIGMAS[[0, 3]])
        same_layout = copy.deepcopy(ema).to(memory_format=torch.channels_last)(x, SIGMAS[[0, 3]])
        torch.testing.assert_close(loaded.model(x, SIGMAS[[0, 3]]), same_layout, rtol=0, atol=0)
        torch.testing.assert_close(loaded.model(x, SIGMAS[[0, 3]]), ref, rtol=0, atol=1e-5 * float(ref.abs().max()))


def test_round_trip_ncsnv2(tmp_path):
    cfg = _cfg(arch="ncsnv2", downsample3=False)
    net = _randomised(cfg, 2)
    save_model(tmp_path, net, net, cfg, step=1)
    loaded = load_model(tmp_path, expected_sha256=sha256(tmp_path / WEIGHTS))
    assert isinstance(loaded.model, NCSNv2) and loaded.model.size_multiple == 2
    _assert_bitwise(loaded.model, net)


def test_resolve_model_path(saved, tmp_path):
    out = saved[0]
    assert resolve_model_path(out) == (out / WEIGHTS, out / META)
    assert resolve_model_path(out / WEIGHTS) == (out / WEIGHTS, out / META)
    assert resolve_model_path(out / META) == (out / WEIGHTS, out / META)
    with pytest.raises(CheckpointError):
        resolve_model_path(out / "model.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nowhere")
    (out / META).unlink()
    with pytest.raises(CheckpointError, match="model.json"):
        load_model(out)


def test_missing_weights(saved):
    out = saved[0]
    (out / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(out)


def test_sha256(saved):
    out = saved[0]
    good = sha256(out / WEIGHTS)
    import hashlib

    assert good == hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()
    load_model(out, expected_sha256=good)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(out, expected_sha256="0" * 64)


@pytest.mark.parametrize("text", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'{"format": "something-else"}',
                                  b'{"format": "medscore-score-model"}'])
def test_corrupt_json(saved, text):
    out = saved[0]
    (out / META).write_bytes(text)
    with pytest.raises(CheckpointError):
        load_model(out)


def test_inconsistent_json(saved):
    out = saved[0]
    meta = json.loads((out / META).read_text())
    meta["model"]["ngf"] = 16  # weights no longer fit
    (out / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_model(out)
    meta["model"]["ngf"] = 8
    meta["model"]["bogus"] = 1
    (out / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_model(out)


def test_corrupt_weights(saved):
    out = saved[0]
    data = (out / WEIGHTS).read_bytes()
    (out / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="SHA-256 differs"):  # caught by the recorded hash first
        load_model(out)
    meta = json.loads((out / META).read_text())
    del meta["sha256"], meta["sha256_raw"]  # a model.json written before hashes were recorded: refused, unless
    (out / META).write_text(json.dumps(meta))  # the caller opts in, and then the truncated file does not load
    with pytest.raises(CheckpointError, match="cannot be verified"):
        load_model(out)
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_model(out, allow_unverified=True)
    (out / WEIGHTS).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_model(out)


def test_resume_state_weights_only(tmp_path):
    cfg = _cfg()
    model = build_model(cfg.model, SIGMAS)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 8, 8)
    model(x, SIGMAS[:2]).pow(2).mean().backward()
    opt.step()
    ema.update_parameters(model)
    save_resume(tmp_path, {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                           "step": 3})
    assert [p.name for p in tmp_path.iterdir()] == [RESUME]
    raw = torch.load(tmp_path / RESUME, map_location="cpu", weights_only=True)  # no arbitrary unpickling needed
    state = load_resume(tmp_path)
    assert state["step"] == raw["step"] == 3
    model2 = build_model(cfg.model, SIGMAS)
    model2.load_state_dict(state["model"])
    _assert_bitwise(model2, model)
    ema2 = AveragedModel(model2, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema2.load_state_dict(state["ema"])
    assert int(ema2.n_averaged) == 1
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    with pytest.raises(CheckpointError, match="resume.pt"):
        load_resume(tmp_path / "other")


def test_save_model_records_sha256_of_both_weights(saved):
    out = saved[0]
    meta = json.loads((out / META).read_text())
    assert meta["sha256"] == sha256(out / WEIGHTS) and meta["sha256_raw"] == sha256(out / RAW_WEIGHTS)


def test_altered_user_weights_are_refused(saved):
    """Same size, one byte changed: the weights still load, but the recorded SHA-256 says they were altered."""
    out = saved[0]
    for name in (WEIGHTS, RAW_WEIGHTS):
        data = bytearray((out / name).read_bytes())
        data[-1] ^= 1
        (out / name).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="SHA-256 differs"):
            load_model(out / name)
