"""medscore tune: choosing presets from measured trials and storing them with the weights."""

from __future__ import annotations

import json

from _synth import tiny_model

from medscore.priors.checkpoint import load_model
from medscore.sampling import PRESETS
from medscore.evaluation.tuning import Candidate, Trial, choose_presets, default_candidates, write_presets

ALD = Candidate("ald", 6, 1, 0.3, (("n_steps_each", 3), ("multiplier", 12.0)))
ALD49 = Candidate("ald", 16, 1, 0.3, (("n_steps_each", 3), ("multiplier", 12.0)))
DDIM = Candidate("ddim", 20, 1, 3.0, (("eta", 1.0),))


PNP = Candidate("pnp", 20, 1, 1.0, (("renoise", 0.0),))
HOLE = Candidate("pnp", 20, 1, 10.0, (("renoise", 1.0),))


def _trial(task: str, cand: Candidate, psnr: float, key: str = "") -> Trial:
    return Trial(task, cand, psnr, 0.9, cand.nfe(), 1.0, key)


def test_grid_respects_the_budgets():
    assert all(c.nfe() <= 50 for c in default_candidates())
    assert {c.sampler for c in default_candidates()} == {"ald", "pnp"}
    assert {k for c in default_candidates() for k in c.kinds} == {"mri", "mri-dense", "inpaint", "inpaint-hole"}


def test_large_holes_get_their_own_override_and_scattered_pixels_fall_back():
    """Box inpainting solves under ``inpaint-hole`` (its mask has a large hole), 70 % missing pixels under
    ``inpaint``; each gets its own best setting, and a preset without a hole override falls back to inpaint's."""
    import torch

    from medscore.evaluation.specs import TASKS, degrade
    from medscore.evaluation.tuning import preset_key

    ref = torch.rand(1, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    assert preset_key(TASKS["inpaint-box"], degrade(TASKS["inpaint-box"], ref)) == "inpaint-hole"
    assert preset_key(TASKS["inpaint-70"], degrade(TASKS["inpaint-70"], ref)) == "inpaint"
    assert preset_key(TASKS["mri-1d-4x"], degrade(TASKS["mri-1d-4x"], ref)) == "mri-dense"
    assert preset_key(TASKS["mri-1d-8x"], degrade(TASKS["mri-1d-8x"], ref)) == "mri"
    trials = [_trial("mri-1d-4x", PNP, 33.0, "mri"), _trial("mri-1d-4x", ALD, 27.6, "mri"),
              _trial("inpaint-70", PNP, 31.0, "inpaint"), _trial("inpaint-70", ALD, 27.0, "inpaint"),
              _trial("inpaint-box", PNP, 19.0, "inpaint-hole"), _trial("inpaint-box", HOLE, 28.6, "inpaint-hole")]
    fast = choose_presets(trials)["fast"]
    assert fast.sampler == "pnp" and "inpaint" not in fast.tasks  # scattered pixels: same as MRI, no override
    assert fast.for_task("inpaint-hole").sigma_start == 10.0 and fast.for_task("inpaint-hole").settings["renoise"] == 1
    assert fast.for_task("inpaint").sigma_start == 1.0


def test_dense_masks_get_their_own_override_and_the_base_comes_from_sparse_ones():
    """4x masks solve under ``mri-dense``, 8x under ``mri``: the preset's own setting is the best on ``mri`` even
    when dense trials come first, and ``mri-dense`` gets an override only where its best differs."""
    low = Candidate("pnp", 20, 1, 0.3, (("renoise", 0.0),))
    trials = [_trial("mri-1d-4x", low, 33.8, "mri-dense"), _trial("mri-1d-4x", PNP, 33.1, "mri-dense"),
              _trial("mri-1d-8x", low, 23.6, "mri"), _trial("mri-1d-8x", PNP, 26.0, "mri")]
    fast = choose_presets(trials)["fast"]
    assert fast.sigma_start == 1.0 and fast.for_task("mri").sigma_start == 1.0
    assert fast.for_task("mri-dense").sigma_start == 0.3
    same = choose_presets([_trial("mri-1d-4x", PNP, 33.8, "mri-dense"), _trial("mri-1d-8x", PNP, 26.0, "mri")])
    assert "mri-dense" not in same["fast"].tasks


def test_best_within_budget_per_kind_with_inpainting_override():
    trials = [_trial("mri-1d-4x", ALD, 27.6), _trial("mri-1d-4x", DDIM, 27.0), _trial("mri-1d-4x", ALD49, 30.2),
              _trial("inpaint-box", ALD, 18.6), _trial("inpaint-box", DDIM, 26.0), _trial("inpaint-box", ALD49, 15.2)]
    chosen = choose_presets(trials)
    fast, default = chosen["fast"], chosen["default"]
    assert (fast.sampler, fast.num_levels) == ("ald", 6)  # 49 NFE is over the fast budget of 20
    assert (default.sampler, default.num_levels) == ("ald", 16)
    assert fast.tasks["inpaint"]["sampler"] == "ddim" and fast.tasks["inpaint"]["sigma_start"] == 3.0
    assert fast.tasks["sample"] == PRESETS["fast"].tasks["sample"]  # untuned tasks keep the built-in override
    assert fast.for_task("inpaint").nfe() <= 20 and default.nfe() * default.samples <= 50


def test_written_presets_travel_with_the_weights(tmp_path):
    folder = tiny_model(tmp_path / "m")
    chosen = choose_presets([_trial("mri-1d-4x", DDIM, 25.0), _trial("mri-1d-4x", ALD, 24.0)])
    write_presets(folder, chosen)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["presets"]["fast"]["sampler"] == "ddim"
    model = load_model(folder).model  # the SHA-256 of the weights still matches: only model.json changed
    assert model.presets["fast"]["num_levels"] == 20


def test_cli_refuses_a_folder_without_model_json_before_any_compute(tmp_path):
    from typer.testing import CliRunner

    from _synth import one_error_line
    from medscore.cli.main import app

    res = CliRunner().invoke(app, ["tune", str(tmp_path)])
    assert res.exit_code == 1 and "model.json" in one_error_line(res)
    res = CliRunner().invoke(app, ["tune", str(tmp_path), "--tasks", "mri-16x"])
    assert res.exit_code == 1 and "--tasks" in one_error_line(res)


def test_mri_masks_choose_their_regime():
    """``mri-dense`` for masks measuring >= 20 % of k-space, ``mri`` below, ``mri-multicoil`` with coil maps; the
    dense regime of the built-in presets starts lower and, at ``default``, costs fewer levels."""
    import torch

    from medscore.physics import make_mask
    from medscore.tasks import get_task

    task = get_task("mri")
    four, eight = (torch.from_numpy(make_mask("random", (64, 64), a, c, seed=0)) for a, c in ((4, 0.08), (8, 0.04)))
    assert task.preset_key(four) == "mri-dense" and task.preset_key(eight) == "mri"
    assert task.preset_key(four, smaps=torch.ones(1, 2, 64, 64)) == "mri-multicoil"
    for name in ("fast", "default"):
        dense, sparse = PRESETS[name].for_task("mri-dense"), PRESETS[name].for_task("mri")
        assert dense.sigma_start < sparse.sigma_start and dense.num_levels <= sparse.num_levels
        assert dense.settings["flips"] and sparse.settings["flips"]


def test_multicoil_problems_tune_under_their_own_key():
    """The tuner asks a task for its key with the mask alone: multi-coil problems stay ``mri-multicoil`` at any
    acceleration (not the single-coil ``mri-dense`` / ``mri``)."""
    import torch

    from medscore.physics import make_mask
    from medscore.tasks import get_task

    four = torch.from_numpy(make_mask("random", (64, 64), 4, 0.08, seed=0))
    assert get_task("mri-multicoil").preset_key(four) == "mri-multicoil"
