"""Model selection on the VALIDATION slab: score every saved checkpoint on validation tasks.

    python scripts/select_checkpoint.py runs/prior/checkpoints/* --tasks mri-1d-4x inpaint-70 denoise-0.1

Each argument is a model folder (model.safetensors + model.json). Prints mean validation PSNR per task
and the folder with the best average; the test slab is never touched.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from medscore.io.embedded import held_out
from medscore.evaluation.specs import TASKS, degrade, medscore_method, run_method
from medscore.priors.store import load_prior
from medscore.solvers import SamplerOptions
from medscore.tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--tasks", nargs="+", default=["mri-1d-4x", "inpaint-70", "denoise-0.1"])
    ap.add_argument("--preset", default="fast")
    args = ap.parse_args()
    ref = torch.from_numpy(held_out("val"))[:, None]
    rows = []
    for path in args.models:
        prior = load_prior(path)
        scores = {}
        for name in args.tasks:
            spec = TASKS[name]
            method = get_task(spec.kind).methods[0]  # the task's default: tweedie for denoising
            res = run_method(medscore_method(spec, prior.model, SamplerOptions(preset=args.preset), method),
                             degrade(spec, ref, seed=1))
            scores[name] = float(res.psnr.mean())
        rows.append((path, prior.meta["step"], scores))
        print(json.dumps({"model": path, "step": prior.meta["step"], **{k: round(v, 2) for k, v in scores.items()}}),
              flush=True)
    best = max(rows, key=lambda r: np.mean(list(r[2].values())))
    print(f"best: {best[0]} (step {best[1]}, mean validation PSNR {np.mean(list(best[2].values())):.2f} dB)")


if __name__ == "__main__":
    main()
