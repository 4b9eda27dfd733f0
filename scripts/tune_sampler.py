"""Tune medscore's sampler (step-size multiplier, warm-start level) on the VALIDATION slab only.

    python scripts/tune_sampler.py --model runs/prior --preset fast --tasks mri-1d-4x inpaint-70 denoise-0.1

Prints mean PSNR on the validation slices for every grid point; the chosen values go into
``medscore/sampling/presets.py`` (multipliers) and ``medscore/solvers.py`` (warm-start levels).
"""

from __future__ import annotations

import argparse
import itertools

import torch

from medscore.embedded import held_out
from medscore.evaluation import TASKS, degrade, medscore_method, run_method
from medscore.models import load_prior
from medscore.solvers import SamplerOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: bundled prior)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--tasks", nargs="+", default=["mri-1d-4x", "mri-1d-8x", "inpaint-70", "denoise-0.1"])
    ap.add_argument("--multipliers", nargs="+", type=float, default=[0.5, 1.0, 2.5, 5.0])
    ap.add_argument("--starts", nargs="+", type=float, default=[0.5, 1.0, 2.0])
    args = ap.parse_args()
    torch.manual_seed(0)
    prior = load_prior(args.model)
    ref = torch.from_numpy(held_out("val"))[:, None]
    for name in args.tasks:
        spec = TASKS[name]
        prob = degrade(spec, ref, seed=1)
        starts = [None] if spec.kind == "denoise" else args.starts
        for mult, start in itertools.product(args.multipliers, starts):
            opts = SamplerOptions(preset=args.preset, multiplier=mult, sigma_start=start)
            res = run_method(medscore_method(spec, prior.model, opts), prob)
            print(f"{name:20s} mult {mult:4.1f} start {start}  PSNR {res.psnr.mean():6.2f}  SSIM {res.ssim.mean():.3f}  "
                  f"NFE {res.nfe}  {res.seconds_per_slice:.1f} s/slice", flush=True)


if __name__ == "__main__":
    main()
