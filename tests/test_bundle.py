"""The MONAI bundle export and ``ScoreInferer``: a bundle run by ``monai.bundle`` matches ``reconstruct_file``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _synth import QUIET_MONAI, line_mask, ramp_phantom_scan, tiny_model
from medscore.monai.bundle import FixedLevelScore, build_network, export_bundle, load_weights
from medscore.priors.checkpoint import load_model
from medscore.priors.store import bundled_names, load_prior
from medscore.cli.main import app
from medscore.errors import InputError
from medscore.monai.inferer import ScoreInferer
from medscore.physics import SingleCoilMRI
from medscore.pipeline.stream import batch_options
from medscore.pipeline import reconstruct_file
from medscore.solvers import SamplerOptions
from medscore.tasks import reconstruct_mri

pytestmark = QUIET_MONAI
SHAPE = (16, 20, 3)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundle")
    scan = ramp_phantom_scan(root / "scans" / "head.nii.gz", SHAPE, seed=3,
                             affine=np.diag([1.2, 1.5, 3.0, 1.0]))  # RAS: reorientation is the identity
    tiny_model(root / "tiny")
    line_mask(root / "lines.npy", SHAPE[1], slice(8, 12))
    bundle = export_bundle(root / "bundle", root / "tiny")
    return {"root": root, "scan": scan, "model": root / "tiny", "mask": root / "lines.npy", "bundle": bundle}


def test_bundle_layout_and_network_from_config(data):
    b = data["bundle"]
    for rel in ("configs/metadata.json", "configs/inference.json", "models/model.safetensors", "models/model.json",
                "docs/README.md"):
        assert (b / rel).is_file(), rel
    cfg = json.loads((b / "configs" / "inference.json").read_text())
    assert cfg["score_def"]["_target_"] == "medscore.monai.bundle.build_network"
    assert cfg["network_def"] == {"_target_": "medscore.monai.bundle.FixedLevelScore", "score": "@score_def",
                                  "sigma": "@score_sigma"}
    net = load_weights(build_network(cfg["score_def"]["model"], cfg["score_def"]["sigmas"]),
                       b / "models" / "model.safetensors")
    ref = load_model(data["model"]).model
    x = torch.rand(2, 1, 16, 20)
    s = torch.tensor([0.5, 0.05])
    fixed = torch.full((2,), cfg["score_sigma"])
    with torch.inference_mode():
        torch.testing.assert_close(net(x, s), ref(x, s), rtol=0, atol=0)
        torch.testing.assert_close(FixedLevelScore(net, cfg["score_sigma"])(x), ref(x, fixed), rtol=0, atol=0)
    meta = json.loads((b / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1


def _bundle_command(data, out: Path) -> list[str]:
    args = ["--config_file", str(data["bundle"] / "configs" / "inference.json"), "--bundle_root", str(data["bundle"]),
            "--dataset_dir", str(data["scan"].parent), "--output_dir", str(out), "--mask_file", str(data["mask"]),
            "--preset", "fast", "--num_levels", "3", "--seed", "4", "--batch_size", "2", "--device", "cpu"]
    if importlib.util.find_spec("fire") is not None:  # `python -m monai.bundle` parses its arguments with fire
        return [sys.executable, "-m", "monai.bundle", "run", *args]
    kwargs = dict(zip((a[2:] for a in args[::2]), args[1::2]))
    code = ("from monai.bundle import run; import sys, json; kw = json.loads(sys.argv[1]); "
            "kw.update(num_levels=int(kw['num_levels']), seed=int(kw['seed']), batch_size=int(kw['batch_size'])); "
            "run(**kw)")
    return [sys.executable, "-c", code, json.dumps(kwargs)]


def test_monai_bundle_run_matches_reconstruct_file(data, tmp_path):
    proc = subprocess.run(_bundle_command(data, tmp_path / "eval"), capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = tmp_path / "eval" / "head_medscore.nii.gz"
    assert written.is_file(), proc.stderr[-2000:]
    ref = reconstruct_file(data["scan"], data["mask"], model=data["model"], out=tmp_path / "ref.nii.gz",
                           opts=SamplerOptions(preset="fast", num_levels=3, seed=4), batch_size=2, device="cpu")
    a, b = nib.load(str(written)), nib.load(str(ref.outputs["output"]))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), rtol=0, atol=1e-4)


def test_export_refuses_a_non_empty_folder_and_the_cli_exports(data, tmp_path):
    with pytest.raises(InputError, match="not an empty folder"):
        export_bundle(data["bundle"], data["model"])
    res = CliRunner().invoke(app, ["export-bundle", str(tmp_path / "b"), "--model", str(data["model"])])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "configs" / "inference.json").is_file()


def test_score_inferer_tasks_on_a_batch_of_slices(data):
    net = load_model(data["model"]).model
    x = torch.rand(3, 1, 16, 20)
    mask = np.load(data["mask"])
    opts = SamplerOptions(preset="fast", num_levels=3, seed=2)
    got = ScoreInferer("mri", mask, opts, batch_size=3)(x, net)
    m = torch.from_numpy(np.broadcast_to(mask, (16, 20)).copy())
    want = reconstruct_mri(net, SingleCoilMRI(m, real_input=True).A(x), m, batch_options(opts, slice(0, 3)),
                           real_image=True)
    torch.testing.assert_close(got, want.mean, rtol=0, atol=0)  # the pipeline's solver call, seeds included
    known = torch.ones(16, 20)
    known[4:8, 5:9] = 0
    filled = ScoreInferer("inpaint", known, opts)(x, net)
    torch.testing.assert_close(filled * known, x * known, atol=0.05, rtol=0)  # known pixels kept (up to sigma_L noise)
    assert ScoreInferer("denoise", noise_std=0.1)(x, net).shape == x.shape
    with pytest.raises(InputError, match="unknown task"):
        ScoreInferer("segment")


def _bundled_ref(name: str | None) -> str | None:
    return None if name is None else f"bundled:{name}"


@pytest.mark.parametrize("name", [None, *bundled_names()])
def test_every_bundled_prior_exports_a_bundle_monai_verifies(name, tmp_path):
    """``monai.bundle verify_net_in_out network_def`` passes on the bundle of every one-channel bundled prior (the
    default level split included); a complex (2-channel) prior is refused before anything is written."""
    from monai.bundle import ConfigParser, verify_net_in_out

    root = tmp_path / "bundle"
    if getattr(load_prior(_bundled_ref(name)).model, "in_channels", 1) != 1:
        with pytest.raises(InputError, match="2-channel"):
            export_bundle(root, _bundled_ref(name))
        assert not root.exists()
        return
    export_bundle(root, _bundled_ref(name))
    meta, config = root / "configs" / "metadata.json", root / "configs" / "inference.json"
    verify_net_in_out(net_id="network_def", meta_file=str(meta), config_file=str(config), device="cpu")
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.read_meta(str(meta))
    parser["bundle_root"], parser["device"] = str(root), "cpu"
    net, network_def = parser.get_parsed_content("network"), parser.get_parsed_content("network_def")
    assert net is network_def.score  # the inferer gets the score network the checked network wraps
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(net(x, torch.full((1,), network_def.sigma)), load_prior(_bundled_ref(name)).model(
            x, torch.full((1,), network_def.sigma)), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:parsing config_file.*:UserWarning")  # MONAI's notice about trusting configs
def test_the_default_prior_bundle_runs_like_reconstruct_file(data, tmp_path):
    """The bundle of the default prior (a level split) runs under ``monai.bundle.run`` and gives what
    ``reconstruct_file`` gives with the bundled prior."""
    from monai.bundle import run

    bundle = export_bundle(tmp_path / "bundle")
    run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
        dataset_dir=str(data["scan"].parent), output_dir=str(tmp_path / "eval"), mask_file=str(data["mask"]),
        preset="fast", num_levels=3, seed=4, batch_size=2, device="cpu")
    ref = reconstruct_file(data["scan"], data["mask"], out=tmp_path / "ref.nii.gz",
                           opts=SamplerOptions(preset="fast", num_levels=3, seed=4), batch_size=2, device="cpu")
    got, want = nib.load(str(tmp_path / "eval" / "head_medscore.nii.gz")), nib.load(str(ref.outputs["output"]))
    np.testing.assert_allclose(got.get_fdata(), want.get_fdata(), rtol=0, atol=1e-4)
