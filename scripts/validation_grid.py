"""Validation-slab PSNR of models x sampler options x tasks: how presets and level-split switches were chosen.

    python scripts/validation_grid.py --models bundled --options '{"preset": "default"}' \\
        '{"preset": "default", "num_levels": 25, "samples": 2}' --tasks mc-1d-4x mc-1d-8x mc-poisson-vd-8x
    medscore level-split /tmp/s01 --coarse bundled:unet --switch-sigma 0.1
    python scripts/validation_grid.py --models bundled /tmp/s01 bundled:unet --tasks mri-1d-8x mri-1d-4x

Each option set is a JSON object of ``SamplerOptions`` fields; ``--presets`` adds presets to every model's table
before it is tried (a JSON object ``{name: preset fields}``, the form of ``model.json``'s ``"presets"``), e.g.
``--presets '{"two": {"sampler": "pnp", "num_levels": 10, "sigma_start": 0.3, "prepass": {"num_levels": 10,
"sigma_start": 1.0}}}' --options '{"preset": "two"}'``. Every task is degraded once (seed 1) and every
combination solves the same problems with the task's sampler path (denoising: the sampler, not Tweedie). Prints
one JSON line per model and option set with the mean PSNR per task and over tasks. The test slab is never touched.

``--seeds 1 2 3`` averages over several degradations (masks, missing pixels, noise); ``--external`` adds the
validation slice of a real scan the prior never saw (slice 7 of nibabel's example EPI; ``medscore benchmark
--external`` tests on its slices 10, 13, 16) as ``TASK/epi`` columns, so that a setting is not chosen on the one
embedded brain alone. The momentum tables of docs/benchmarks.md:

    python scripts/validation_grid.py --external --seeds 1 2 3 --tasks mri-1d-8x mri-2d-poisson-8x mri-1d-4x \
        mri-1d-4x-noisy inpaint-70 inpaint-box --options '{"preset": "fast", "momentum": 0}' \
        '{"preset": "fast", "momentum": 0.6}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medscore.io.embedded import held_out
from medscore.evaluation.specs import TASKS, degrade, medscore_method, run_method
from medscore.priors.store import load_prior
from medscore.solvers import SamplerOptions


def validation_sets(external: bool) -> dict[str, torch.Tensor]:
    """The embedded validation slab, and with ``external`` the real EPI's validation slice (``epi``)."""
    sets = {"": torch.from_numpy(held_out("val"))[:, None]}
    if external:
        import nibabel

        from medscore.evaluation.benchmark import external_slices

        epi = Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"
        sets["/epi"] = external_slices(epi, [10], [7])[1]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["bundled"], help="'bundled' (the default), bundled:NAME or folders")
    ap.add_argument("--options", nargs="+", default=['{"preset": "default"}'], help="JSON SamplerOptions fields")
    ap.add_argument("--tasks", nargs="+", default=["mri-1d-4x", "mri-1d-8x"])
    ap.add_argument("--presets", default="{}", help="JSON {name: preset fields} added to each model's presets")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1], help="degradation seeds averaged over")
    ap.add_argument("--external", action="store_true", help="also the real EPI's validation slice (TASK/epi)")
    args = ap.parse_args()
    problems = {name + tag: [degrade(TASKS[name], ref, seed=s) for s in args.seeds]
                for name in args.tasks for tag, ref in validation_sets(args.external).items()}
    for model in args.models:
        net = load_prior(None if model == "bundled" else model).model
        net.presets = {**(getattr(net, "presets", None) or {}), **json.loads(args.presets)}
        for text in args.options:
            t0, row = time.perf_counter(), {"model": model, **json.loads(text)}
            for key, probs in problems.items():
                method = medscore_method(TASKS[key.split("/")[0]], net, SamplerOptions(**json.loads(text)), "sampler")
                row[key] = round(float(np.mean([run_method(method, p).psnr.mean() for p in probs])), 2)
            row["mean"] = round(float(np.mean([row[n] for n in args.tasks])), 2)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
