"""train() on tiny synthetic scans: output files, exact resume, DDP on two CPU processes, sample PNGs."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from _synth import QUIET_MONAI, phantom, two_ranks, write_nifti
from medscore.priors.checkpoint import load_model
from medscore.config import DataConfig, ModelConfig, NoiseConfig, TrainConfig
from medscore.training.noise import geometric_sigmas, max_pairwise_distance, ncsnv2_num_levels
from medscore.training.loop import make_sigmas, train
from medscore.devices import resolve_device
from medscore.errors import ConfigError

TESTS = Path(__file__).resolve().parent
pytestmark = QUIET_MONAI


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    for i in range(3):
        write_nifti(root / f"s{i}.nii.gz", phantom((20, 22, 8), seed=i))
    return root


def tiny_cfg(data: Path, steps: int, **kw) -> TrainConfig:
    base = dict(
        model=ModelConfig(ngf=8),
        noise=NoiseConfig(sigma_max=1.0, sigma_min=0.01, num_levels=5),
        data=DataConfig(path=str(data), image_size=16, augment=True),
        steps=steps, batch_size=4, device="cpu", amp=False, warmup_steps=2,
        log_every=1, checkpoint_every=3, sample_every=1000, num_samples=0, val_images=4,
    )
    base.update(kw)
    return TrainConfig(**base)


def _weights(run: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(run / name))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_train_writes_outputs(data_dir, tmp_path):
    run = tmp_path / "run"
    seen = []
    cfg = tiny_cfg(data_dir, 6, num_samples=2, sample_levels=3, sample_steps_each=1)
    out = train(cfg, run, callback=seen.append)
    assert out == run / "model.safetensors"
    for name in ("model.safetensors", "model_raw.safetensors", "model.json", "train_log.csv", "resume.pt"):
        assert (run / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left behind
    meta = json.loads((run / "model.json").read_text())
    assert meta["step"] == 6 and meta["image_size"] == 16
    assert meta["sigmas"] == pytest.approx(geometric_sigmas(1.0, 0.01, 5).tolist())
    assert meta["train_config"]["steps"] == 6 and meta["parameters"] > 0
    with open(run / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [bool(r["val_loss"]) for r in rows] == [False, False, True, False, False, True]  # every checkpoint
    assert all(float(r["loss"]) > 0 for r in rows)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5, 6] and seen[-1].val_loss is not None
    # the sample grid (only at the last step here): 2 samples of 16 px side by side with 2 px padding
    pngs = sorted(run.glob("samples_*.png"))
    assert [p.name for p in pngs] == ["samples_0000006.png"]
    with Image.open(pngs[0]) as im:
        assert im.size == (2 * 18 + 2, 18 + 2)
    loaded = load_model(run)
    _assert_same({k: v for k, v in loaded.model.state_dict().items()}, _weights(run))


def test_resume_matches_uninterrupted_run(data_dir, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg(data_dir, 6), full)
    train(tiny_cfg(data_dir, 3), part)
    first = _weights(part, "model_raw.safetensors")
    train(tiny_cfg(data_dir, 6), part, resume=True)
    for name in ("model.safetensors", "model_raw.safetensors"):  # EMA and raw weights, bitwise
        _assert_same(_weights(full, name), _weights(part, name))
    assert not all(torch.equal(first[k], v) for k, v in _weights(part, "model_raw.safetensors").items())
    a, b = (list(csv.DictReader(open(r / "train_log.csv"))) for r in (full, part))
    assert [(r["step"], r["loss"], r["val_loss"]) for r in a] == [(r["step"], r["loss"], r["val_loss"]) for r in b]
    assert json.loads((part / "model.json").read_text())["step"] == 6


class _Stop(Exception):
    pass


def test_resume_after_interruption(data_dir, tmp_path):
    """Killed at step 5 of 6 (last checkpoint at 3): resuming repeats steps 4-5 and ends where the full run ends."""
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg(data_dir, 6), full)

    def stop_at_5(p):
        if p.step == 5:
            raise _Stop

    with pytest.raises(_Stop):
        train(tiny_cfg(data_dir, 6), part, callback=stop_at_5)
    assert json.loads((part / "model.json").read_text())["step"] == 3
    train(tiny_cfg(data_dir, 6), part, resume=True)
    for name in ("model.safetensors", "model_raw.safetensors"):
        _assert_same(_weights(full, name), _weights(part, name))
    # the log reads like the uninterrupted one: the rows after the checkpoint are not duplicated
    a, b = (list(csv.DictReader(open(r / "train_log.csv"))) for r in (full, part))
    assert [(r["step"], r["loss"], r["val_loss"]) for r in a] == [(r["step"], r["loss"], r["val_loss"]) for r in b]


def test_cosine_schedule_is_followed_and_resumes_exactly(data_dir, tmp_path):
    """The logged rate is the schedule's at each step, and a run resumed mid-decay ends bitwise like a whole one."""
    from medscore.training.lr_schedule import learning_rate

    kw = dict(lr_schedule="cosine", lr_final=1e-5)
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg(data_dir, 6, **kw), full)
    rows = list(csv.DictReader(open(full / "train_log.csv")))
    want = [learning_rate(s, lr=2e-4, steps=6, warmup_steps=2, schedule="cosine", lr_final=1e-5) for s in range(6)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(want, rel=5e-3)  # logged to 3 significant digits
    assert float(rows[-1]["lr"]) == pytest.approx(1e-5)

    def stop_at_5(p):
        if p.step == 5:
            raise _Stop

    with pytest.raises(_Stop):  # interrupted mid-decay, after the checkpoint of step 3
        train(tiny_cfg(data_dir, 6, **kw), part, callback=stop_at_5)
    train(tiny_cfg(data_dir, 6, **kw), part, resume=True)
    for name in ("model.safetensors", "model_raw.safetensors"):
        _assert_same(_weights(full, name), _weights(part, name))


def test_resume_without_state_is_an_error(data_dir, tmp_path):
    from medscore.errors import CheckpointError

    with pytest.raises(CheckpointError, match="resume.pt"):
        train(tiny_cfg(data_dir, 2), tmp_path / "none", resume=True)


def test_fine_level_expert_trains_on_the_low_levels_only(data_dir, tmp_path, monkeypatch):
    """``noise.train_sigma_max`` restricts the levels drawn for the loss; the saved table stays the full one."""
    import medscore.training.loop as train_module

    seen: list[torch.Tensor] = []
    real_loss = train_module.dsm_loss

    def spy(net, x, sigma, generator=None):
        seen.append(sigma.detach().reshape(-1).clone())
        return real_loss(net, x, sigma, generator=generator)

    monkeypatch.setattr(train_module, "dsm_loss", spy)
    noise = NoiseConfig(sigma_max=1.0, sigma_min=0.01, num_levels=5, train_sigma_max=0.1)
    train(tiny_cfg(data_dir, 6, noise=noise), tmp_path / "fine")
    drawn = torch.cat(seen)
    assert len(drawn) == 6 * 4 and float(drawn.max()) <= 0.1 + 1e-6
    assert len(set(drawn.tolist())) == 3  # all three of the levels 0.1, 0.0316, 0.01 are trained
    torch.testing.assert_close(load_model(tmp_path / "fine").sigmas, geometric_sigmas(1.0, 0.01, 5))
    with pytest.raises(ConfigError, match="train_sigma_max"):
        NoiseConfig(sigma_max=1.0, sigma_min=0.01, num_levels=5, train_sigma_max=0.001)


def test_no_validation_images(data_dir, tmp_path):
    train(tiny_cfg(data_dir, 2, val_images=0, log_every=1), tmp_path / "run")
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert [r["val_loss"] for r in rows] == ["", ""]


def test_make_sigmas(data_dir):
    imgs = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    d = max_pairwise_distance(imgs)
    cfg = tiny_cfg(data_dir, 1)
    torch.testing.assert_close(make_sigmas(cfg, imgs), geometric_sigmas(1.0, 0.01, 5))
    cfg.noise = NoiseConfig(sigma_max="auto", sigma_min=0.01, num_levels="auto")
    sig = make_sigmas(cfg, imgs)
    assert float(sig[0]) == pytest.approx(d, rel=1e-6) and len(sig) == ncsnv2_num_levels(d, 0.01, 64)
    cfg.noise = NoiseConfig(sigma_max="auto", sigma_min=0.01, num_levels=7)
    assert len(make_sigmas(cfg, imgs)) == 7
    # a fixed sigma_max with automatic L: technique 2's ratio for *that* range
    cfg.noise = NoiseConfig(sigma_max=50.0, sigma_min=0.01, num_levels="auto")
    assert len(make_sigmas(cfg, imgs)) == ncsnv2_num_levels(50.0, 0.01, 64)
    cfg.noise = NoiseConfig(sigma_max=50.0, sigma_min=0.01, num_levels="auto", max_levels=9)
    assert len(make_sigmas(cfg, imgs)) == 9


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            resolve_device("cuda")


_DDP_WORKER = textwrap.dedent("""
    import sys
    import torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    import medscore.training.loop as T
    from test_train import tiny_cfg

    captured = {{}}
    build, avg = T.build_model, T.AveragedModel

    def build_and_keep(cfg, sigmas):
        captured["model"] = build(cfg, sigmas)
        return captured["model"]

    def avg_and_keep(*args, **kwargs):
        captured["ema"] = avg(*args, **kwargs)
        return captured["ema"]

    T.build_model, T.AveragedModel = build_and_keep, avg_and_keep
    T.train(tiny_cfg({data!r}, 4), {run!r})
    rank = T.os.environ["RANK"]
    torch.save({{"model": captured["model"].state_dict(), "ema": captured["ema"].module.state_dict()}},
               {out!r} + f"/rank{{rank}}.pt")
""")


def test_ddp_two_cpu_processes(data_dir, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER.format(tests=str(TESTS), data=str(data_dir), run=str(run), out=str(tmp_path)))
    results = two_ranks(script, timeout=120)
    for code, out in results:
        assert code == 0, out[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in ("model", "ema"):
        _assert_same(r0[key], r1[key])  # gradients are all-reduced: both replicas stay identical
    # only rank 0 wrote the run, and what it wrote is that common state
    _assert_same(_weights(run, "model_raw.safetensors"), {k: v.contiguous() for k, v in r0["model"].items()})
    _assert_same(_weights(run), {k: v.contiguous() for k, v in r0["ema"].items()})
    # the two ranks trained on different data: the result is not what one process alone would get
    solo = tmp_path / "solo"
    train(tiny_cfg(data_dir, 4), solo)
    assert not all(torch.equal(v, r0["model"][k]) for k, v in _weights(solo, "model_raw.safetensors").items())
