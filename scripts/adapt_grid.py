"""Test-time adaptation on real external scans: PSNR without and with ``--adapt`` settings, per task and preset.

Scans: those of the external benchmark (``medscore.evaluation.external.EXTERNAL_SCANS``: nibabel's example EPI and the
INIA19 macaque T1 brain of Debian's ``mricron-data`` in two planes; Colin27, used until 2026-12-07, is now training
data). Each has validation slices (for choosing settings) and test slices (never used for a choice)::

    python scripts/adapt_grid.py --split val --presets fast,default --settings "1e-2;3e-3;norms:1e-3"
    python scripts/adapt_grid.py --split test --presets fast,default --settings "1e-2"

A setting is ``LR`` (norm biases) or ``PARAMS:LR`` (``norms``, ``all``); ``x2`` after it takes two steps per level.
"""

from __future__ import annotations

import argparse
import time

import torch

from medscore import metrics as M
from medscore import tasks
from medscore.evaluation.external import EXTERNAL_SCANS, load_external
from medscore.physics import SingleCoilMRI, make_mask
from medscore.priors import load_prior
from medscore.solvers import SamplerOptions
from medscore.solvers.adapt import Adaptation, AdaptedPrior



def scan_slices(name: str, split: str) -> torch.Tensor:
    """(N, 1, H, W) slices of the external scan ``name`` (:data:`EXTERNAL_SCANS`) on the [0, 1] scale."""
    test, val, _ = load_external(EXTERNAL_SCANS[name])
    return val if split == "val" else test


def parse_setting(text: str) -> Adaptation:
    steps = 2 if text.endswith("x2") else 1
    text = text.removesuffix("x2")
    params, _, lr = text.rpartition(":")
    return Adaptation(lr=float(lr), parameters=params or "norm-bias", steps=steps)


def solve(task: str, model, ref: torch.Tensor, opts: SamplerOptions) -> torch.Tensor:
    h, w = ref.shape[-2:]
    if task.startswith("mri"):
        accel = 8 if task.endswith("8x") else 4
        m = torch.from_numpy(make_mask("random", (h, w), accel, 0.08, seed=0))
        return tasks.reconstruct_mri(model, SingleCoilMRI(m, real_input=True).A(ref), m, opts).mean
    known = (torch.rand(ref.shape, generator=torch.Generator().manual_seed(0)) >= 0.7).float()
    return tasks.inpaint(model, ref * known, known, opts).mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--scans", default="epi,inia19,inia19-coronal")
    ap.add_argument("--model", default=None, help="model folder; default: the bundled prior")
    ap.add_argument("--tasks", default="mri-1d-8x,mri-1d-4x,inpaint-70")
    ap.add_argument("--presets", default="fast")
    ap.add_argument("--settings", default="1e-2", help="';'-separated adaptation settings")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prior = load_prior(args.model)
    settings = [s for s in args.settings.split(";") if s]
    print(f"| scan | task | preset | plain | {' | '.join(settings)} |")
    print("|---|---|---|---|" + "---|" * len(settings))
    for scan in args.scans.split(","):
        ref = scan_slices(scan, args.split)
        for task in args.tasks.split(","):
            for preset in args.presets.split(","):
                opts = SamplerOptions(preset=preset, seed=0)
                cells, t0 = [], time.perf_counter()
                plain = solve(task, prior.model, ref, opts)
                secs = [time.perf_counter() - t0]
                cells.append(float(M.psnr(ref[:, 0].numpy(), plain[:, 0].numpy()).mean()))
                for s in settings:
                    t0 = time.perf_counter()
                    est = solve(task, AdaptedPrior(prior.model, parse_setting(s)), ref, opts)
                    secs.append(time.perf_counter() - t0)
                    cells.append(float(M.psnr(ref[:, 0].numpy(), est[:, 0].numpy()).mean()))
                row = " | ".join(f"{c:.2f} ({t:.0f} s)" for c, t in zip(cells, secs))
                print(f"| {scan} {tuple(ref.shape[-2:])} x{len(ref)} | {task} | {preset} | {row} |", flush=True)


if __name__ == "__main__":
    main()
