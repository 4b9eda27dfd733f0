"""Catalogue of model files that lie (issue 29): each is refused at load with one line naming the file and field.

Weights under another name, a model.json that records no SHA-256, a model.json too large or nested too deep, presets
out of range (per-task overrides and first passes included), weights that hold NaN, noise levels that disagree, and
a tampered ``init_from`` in training. CLI cases: exit code 1, exactly one ``error:`` line, no traceback, nothing
written. API cases: the CheckpointError and a one-line message. The score networks' ``forward`` is a tripwire.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from _synth import QUIET_MONAI, bad_cli_case, file_snapshot, phantom, stop_score_networks, tiny_model, write_nifti
from medscore import api
from medscore.config import DataConfig, ModelConfig, NoiseConfig, TrainConfig
from medscore.errors import CheckpointError, InputError
from medscore.priors.checkpoint import load_model, sha256
from medscore.priors.checks import MAX_NESTING, check_presets, read_description
from medscore.priors.store import load_prior, save_level_split
from medscore.sampling import PRESETS, presets_to_json
from medscore.training.loop import train

pytestmark = QUIET_MONAI
S = 16
NAN = float("nan")


def _preset(**fields) -> dict:
    return {"presets": {"fast": {"sampler": "pnp", "num_levels": 10, **fields}}}


def _flipped(folder: Path, name: str = "model.safetensors") -> None:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / name).write_bytes(bytes(data))


def _altered_copy(meta: dict, folder: Path) -> None:
    _flipped(folder, "other.safetensors")  # model.safetensors and model.json stay as they were


def _nan_weights(meta: dict, folder: Path) -> None:
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: torch.full_like(v, NAN) for k, v in state.items()}, str(folder / "model.safetensors"))
    meta["sha256"] = sha256(folder / "model.safetensors")  # the hash re-recorded: only the values tell


EDITS = {
    "renamed": _altered_copy,
    "altered": lambda m, f: _flipped(f),
    "unhashed": lambda m, f: (m.pop("sha256"), m.pop("sha256_raw")),
    "hash-not-hex": lambda m, f: m.update(sha256="abc"),
    "big": lambda m, f: m.update(card={"text": "x" * (1 << 20)}),
    "levels-1e9": lambda m, f: m.update(_preset(num_levels=1e9)),
    "levels-nan": lambda m, f: m.update(_preset(num_levels=NAN)),
    "task-step-nan": lambda m, f: m.update(_preset(tasks={"denoise": {"sampler": "ald",
                                                                      "settings": {"multiplier": NAN}}})),
    "prepass-sigma-inf": lambda m, f: m.update(_preset(prepass={"num_levels": 5, "sigma_start": float("inf")})),
    "prepass-of-prepass-momentum": lambda m, f: m.update(_preset(prepass={"prepass": {"settings": {"momentum": 1.0}}})),
    "eta-2": lambda m, f: m.update(_preset(sampler="ddim", settings={"eta": 2.0})),
    "renoise-inf": lambda m, f: m.update(_preset(settings={"renoise": float("inf")})),
    "snr-0": lambda m, f: m.update(_preset(sampler="pc", settings={"snr": 0.0})),
    "steps-huge": lambda m, f: m.update(_preset(sampler="ald", settings={"n_steps_each": 10**6})),
    "samples-huge": lambda m, f: m.update(_preset(samples=10**6)),
    "setting-the-sampler-lacks": lambda m, f: m.update(_preset(tasks={"mri": {"sampler": "ald",
                                                                              "settings": {"momentum": 0.5}}})),
    "nan-weights": _nan_weights,
    "sigmas-lie": lambda m, f: m.update(sigmas=[2 * s for s in m["sigmas"]]),
}


def _variant(root: Path, name: str, edit) -> Path:
    folder = root / name
    shutil.copytree(root / "tiny", folder)
    meta = json.loads((folder / "model.json").read_text())
    edit(meta, folder)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _deep(root: Path, depth: int, name: str) -> Path:
    """The tiny model with a card nested ``depth`` levels deep inside model.json (which adds one level)."""
    folder = root / name
    shutil.copytree(root / "tiny", folder)
    text = (folder / "model.json").read_text().rstrip()
    (folder / "model.json").write_text(text[:-1] + ', "card": ' + "[" * depth + "]" * depth + "}")
    return folder


def _yaml(root: Path, name: str, init_from: str, ngf: int = 8) -> Path:
    cfg = {"model": {"ngf": ngf}, "noise": {"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 6},
           "data": {"image_size": S}, "batch_size": 2, "device": "cpu", "amp": False, "num_samples": 0,
           "init_from": str(root / init_from)}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return root / f"{name}.yaml"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_models")
    write_nifti(root / "scan.nii.gz", 100.0 * phantom((S, S, 3), seed=1) + 10.0)
    tiny_model(root / "tiny")
    for name, edit in EDITS.items():
        _variant(root, name, edit)
    _deep(root, 5000, "deep")
    _deep(root, MAX_NESTING - 1, "nested-to-the-limit")
    tiny = root / "tiny"
    shutil.copy(tiny / "model.safetensors", root / "renamed" / "ema_copy.safetensors")
    shutil.copy(tiny / "model_raw.safetensors", root / "renamed" / "raw_copy.safetensors")
    save_level_split(root / "split", "../tiny", "../tiny", 0.1, verify=False)
    meta = json.loads((root / "split" / "model.json").read_text())
    (root / "split" / "model.json").write_text(json.dumps({**meta, **_preset(samples=0)}))
    for name, source in (("init-altered", "altered"), ("init-renamed", "renamed/other.safetensors"),
                         ("init-nan", "nan-weights"), ("init-unhashed", "unhashed")):
        _yaml(root, name, source)
    _yaml(root, "init-wider", "tiny", ngf=16)
    return {"root": root, "tiny": tiny, "scan": root / "scan.nii.gz"}


@pytest.fixture(autouse=True)
def tripwire(monkeypatch):
    """No case may get as far as running a score network."""
    stop_score_networks(monkeypatch, "the bad model was not caught at load")


_snapshot = file_snapshot


def _den(model: str) -> list[str]:
    return ["denoise", "{root}/scan.nii.gz", "-o", "{out}/d.nii.gz", "--model", model, "--device", "cpu",
            "--preset", "fast"]


TRAIN = ["train", "--data", "{root}/scan.nii.gz", "--out", "{out}/run", "--steps", "1", "--config"]
CLI_CASES = {
    "weights-under-another-name-altered": (_den("{root}/renamed/other.safetensors"), "SHA-256 differs"),
    "no-sha256-recorded": (_den("{root}/unhashed"), "cannot be verified"),
    "sha256-not-hex": (_den("{root}/hash-not-hex"), "'sha256' must be a SHA-256"),
    "model-json-over-1-mib": (_den("{root}/big"), "KiB"),
    "model-json-nested-5000-deep": (_den("{root}/deep"), "nested 5001 levels deep"),
    "preset-num-levels-1e9": (_den("{root}/levels-1e9"), "presets.fast.num_levels must be an integer"),
    "preset-num-levels-nan": (_den("{root}/levels-nan"), "presets.fast.num_levels"),
    "task-override-step-nan": (_den("{root}/task-step-nan"), "presets.fast.tasks.denoise.settings.multiplier"),
    "prepass-sigma-start-inf": (_den("{root}/prepass-sigma-inf"), "presets.fast.prepass.sigma_start"),
    "prepass-of-a-prepass-momentum-1": (_den("{root}/prepass-of-prepass-momentum"),
                                        "presets.fast.prepass.prepass.settings.momentum must be in [0, 1)"),
    "preset-eta-2": (_den("{root}/eta-2"), "presets.fast.settings.eta must be in [0, 1]"),
    "preset-renoise-inf": (_den("{root}/renoise-inf"), "presets.fast.settings.renoise"),
    "preset-snr-0": (_den("{root}/snr-0"), "presets.fast.settings.snr"),
    "preset-steps-huge": (_den("{root}/steps-huge"), "presets.fast.settings.n_steps_each"),
    "preset-samples-huge": (_den("{root}/samples-huge"), "presets.fast.samples must be >= 1 and <= 1000"),
    "preset-setting-the-sampler-lacks": (_den("{root}/setting-the-sampler-lacks"), "no setting momentum"),
    "level-split-presets-samples-0": (_den("{root}/split"), "presets.fast.samples"),
    "weights-all-nan": (_den("{root}/nan-weights"), "the model's weights hold NaN/inf"),
    "weights-noise-levels-differ": (_den("{root}/sigmas-lie"), "noise levels differ"),
    "train-init-from-altered-weights": (TRAIN + ["{root}/init-altered.yaml"], "init_from: "),
    "train-init-from-altered-weights-renamed": (TRAIN + ["{root}/init-renamed.yaml"], "SHA-256 differs"),
    "train-init-from-nan-weights": (TRAIN + ["{root}/init-nan.yaml"], "NaN/inf"),
    "train-init-from-unverified": (TRAIN + ["{root}/init-unhashed.yaml"], "cannot be verified"),
    "train-init-from-another-width": (TRAIN + ["{root}/init-wider.yaml"], "has shape"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_model(case, env, tmp_path, monkeypatch):
    argv, expected = CLI_CASES[case]
    res, line = bad_cli_case(argv, env["root"], tmp_path, monkeypatch)  # for training: no progress bar before it
    assert res.exit_code == 1 and expected in line, line


IMG = np.random.default_rng(1).random((S, S)).astype(np.float32)


def _api_train(env: dict, tmp_path: Path) -> None:
    """``train()`` checks init_from first: the data path names no file, so any later check would say so instead."""
    cfg = TrainConfig(model=ModelConfig(ngf=8), noise=NoiseConfig(sigma_max=1.0, num_levels=6),
                      data=DataConfig(path=str(tmp_path / "no-such-scan.nii.gz"), image_size=S), steps=1,
                      batch_size=2, device="cpu", init_from=str(env["root"] / "altered"))
    train(cfg, tmp_path / "run")


API_CASES = {
    "load-model-renamed-altered": (lambda e, t: load_model(e["root"] / "renamed" / "other.safetensors"),
                                   "other.safetensors: SHA-256 differs"),
    "load-model-unhashed": (lambda e, t: load_model(e["root"] / "unhashed"), "allow_unverified=True"),
    "load-prior-unhashed": (lambda e, t: load_prior(e["root"] / "unhashed"), "cannot be verified"),
    "load-model-big-json": (lambda e, t: load_model(e["root"] / "big"), "big/model.json: larger than"),
    "load-model-deep-json": (lambda e, t: load_model(e["root"] / "deep"), "deep/model.json: nested"),
    "read-description-deep": (lambda e, t: read_description(e["root"] / "deep" / "model.json"), "nested"),
    "load-model-levels-1e9": (lambda e, t: load_model(e["root"] / "levels-1e9"), "presets.fast.num_levels"),
    "load-model-task-step-nan": (lambda e, t: load_model(e["root"] / "task-step-nan"), "multiplier"),
    "load-model-prepass-inf": (lambda e, t: load_model(e["root"] / "prepass-sigma-inf"), "prepass.sigma_start"),
    "load-prior-split-presets": (lambda e, t: load_prior(e["root"] / "split"), "split/model.json: presets.fast"),
    "load-model-nan-weights": (lambda e, t: load_model(e["root"] / "nan-weights"), "NaN/inf"),
    "denoise-nan-weights": (lambda e, t: api.denoise(IMG, 0.1, model=e["root"] / "nan-weights"), "NaN/inf"),
    "load-model-sigmas-lie": (lambda e, t: load_model(e["root"] / "sigmas-lie"), "noise levels differ"),
    "check-presets-not-a-table": (lambda e, t: check_presets([1], "x.json"), "x.json: 'presets' must be"),
    "train-init-from-altered": (_api_train, "init_from: .*SHA-256 differs"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_bad_model(case, env, tmp_path):
    fn, match = API_CASES[case]
    before = _snapshot(env["root"])
    with pytest.raises(CheckpointError, match=match) as info:
        fn(env, tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [] and _snapshot(env["root"]) == before


def test_weights_under_other_names_load_when_they_match_a_recorded_hash(env):
    """A copy of model.safetensors or of model_raw.safetensors under any name matches sha256 / sha256_raw."""
    ref = load_model(env["tiny"]).model.state_dict()
    for name in ("ema_copy", "raw_copy"):
        got = load_model(env["root"] / "renamed" / f"{name}.safetensors").model.state_dict()
        assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_allow_unverified_is_the_explicit_opt_in(env):
    assert load_model(env["root"] / "unhashed", allow_unverified=True).model.sigmas.shape == (6,)
    assert load_prior(env["root"] / "unhashed", allow_unverified=True).meta.get("sha256") is None


def test_nesting_is_counted_outside_strings_and_the_limit_itself_is_fine(env, tmp_path):
    assert load_model(env["root"] / "nested-to-the-limit").meta["card"]  # MAX_NESTING levels, brackets included
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"note": "[" * 10_000 + '\\"{', "a": [[1]]}))
    assert read_description(path)["a"] == [[1]]


def test_built_in_presets_pass_the_model_json_checks():
    assert check_presets(presets_to_json(PRESETS), "built-in") is not None


def test_a_complex_prior_on_a_scan_is_one_line(tmp_path):
    """A 2-channel (complex) prior cannot solve a magnitude scan: refused with one line, nothing written."""
    from medscore.pipeline import reconstruct_file

    scan = write_nifti(tmp_path / "scan.nii.gz", phantom((24, 24, 3), seed=1))
    mask = np.zeros(24, np.float32)
    mask[::2] = 1
    before = file_snapshot(tmp_path)
    with pytest.raises(InputError, match="2-channel"):
        reconstruct_file(scan, mask, model="bundled:ncsn-complex", out=tmp_path / "o.nii.gz", device="cpu")
    assert file_snapshot(tmp_path) == before
