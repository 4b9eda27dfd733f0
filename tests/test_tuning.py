"""medscore tune: choosing presets from measured trials and storing them with the weights."""

from __future__ import annotations

import json

from _synth import tiny_model

from medscore.checkpoint import load_model
from medscore.sampling import PRESETS
from medscore.tuning import Candidate, Trial, choose_presets, default_candidates, write_presets

ALD = Candidate("ald", 6, 1, 0.3, (("n_steps_each", 3), ("multiplier", 12.0)))
ALD49 = Candidate("ald", 16, 1, 0.3, (("n_steps_each", 3), ("multiplier", 12.0)))
DDIM = Candidate("ddim", 20, 1, 3.0, (("eta", 1.0),))


def _trial(task: str, cand: Candidate, psnr: float) -> Trial:
    return Trial(task, cand, psnr, 0.9, cand.nfe(), 1.0)


def test_grid_respects_the_budgets():
    assert all(c.nfe() <= 50 for c in default_candidates())
    assert {c.sampler for c in default_candidates()} == {"ald", "ddim", "pc"}


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
