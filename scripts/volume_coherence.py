"""Coherent volume solves against slice-by-slice ones on contiguous slabs of the external scans.

Each slab is solved once per weight of the total variation along the slice axis (``z_tv``; 0 = the slices solved
independently, as before); weights are chosen on the validation slabs, reported on the test slabs::

    python scripts/volume_coherence.py --split val --weights 0,0.003,0.01,0.03
    python scripts/volume_coherence.py --split test --weights 0,-1   # -1: each task's tuned volume_z_tv
    python scripts/volume_coherence.py --split test --weights 0,-1 --scans cartesian-3d --preset default --tv
    python scripts/volume_coherence.py --split test --weights 0,-1 --adapt   # --volume with --adapt

Cells: mean PSNR (dB) over the slab / RMS error of the through-plane gradient ``x[i+1] - x[i]`` (x 100, on the
[0, 1] scale), seconds. ``cartesian-3d`` solves the INIA19 volume cut along its first axis (the readout of a 3D
Cartesian scan) with one 2D variable-density Poisson mask over the two phase-encode axes at every readout position.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medscore import metrics as M
from medscore.evaluation.external import EXTERNAL_SCANS, ExternalScan, load_external_volume
from medscore.evaluation.specs import TASKS, degrade
from medscore.priors import load_prior
from medscore.solvers import SamplerOptions
from medscore.solvers.adapt import Adaptation, AdaptedPrior
from medscore.tasks import TaskSpec, get_task

HALF = 3  # a slab: the split's slice +- HALF
#: the 3D Cartesian case: the INIA19 volume sliced along the readout (first) axis
CARTESIAN = ExternalScan("cartesian-3d", "INIA19, readout along x", EXTERNAL_SCANS["inia19"].locate, (40,), (30, 52),
                         axis=0, block=2)
EXTRA_TASKS = {"mri-poisson-vd-8x": TaskSpec("mri-poisson-vd-8x", "mri", "2D variable-density Poisson 8x",
                                             pattern="poisson-vd", accel=8, center=0.08)}


#: test slabs (first, last slice), apart from the validation slabs (the validation slice +- HALF)
TEST_SLABS = {"epi": [(12, 19)], "inia19": [(20, 27), (38, 45)], "inia19-coronal": [(36, 43), (58, 65)],
              "cartesian-3d": [(26, 33), (48, 55)]}


def slabs(scan: ExternalScan, split: str) -> list[torch.Tensor]:
    """The validation slabs (each validation slice +- HALF) or the test slabs of :data:`TEST_SLABS`."""
    vol, _ = load_external_volume(scan)
    if split == "val":
        return [vol[max(0, c - HALF): c + HALF + 1] for c in scan.val]
    return [vol[a: b + 1] for a, b in TEST_SLABS[scan.name]]


def through_plane_error(est: torch.Tensor, ref: torch.Tensor) -> float:
    """RMS error of the forward difference along the slice axis, x 100."""
    d = (est[1:] - est[:-1]) - (ref[1:] - ref[:-1])
    return 100 * float(d.pow(2).mean().sqrt())


def solve_slab(model, spec: TaskSpec, ref: torch.Tensor, z_tv: float, preset: str,
               adapt: bool = False) -> tuple[float, float, float]:
    prob = degrade(spec, ref, seed=0)
    opts = SamplerOptions(preset=preset, z_tv=z_tv, slice_seeds=tuple(range(len(ref))))
    t0 = time.perf_counter()
    net = AdaptedPrior(model, Adaptation.tuned_for(model)) if adapt else model  # a fresh copy for every slab
    est = get_task(spec.kind).solve_problem(net, prob, opts).mean.clamp(0, 1)
    psnr = float(np.mean(M.psnr(ref, est)))
    return psnr, through_plane_error(est, ref), time.perf_counter() - t0


TV_WEIGHTS = (3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 1e-2)  # TV-CS weights on the [0, 1] scale tried on the validation slabs


def tv_slab(spec: TaskSpec, ref: torch.Tensor, lam: float, volume: bool) -> tuple[float, float]:
    """TV-CS of a slab (2D TV per slice, or 3D TV over the slab with ``volume``): mean PSNR, through-plane error."""
    from medscore.baselines import tv_cs

    prob = degrade(spec, ref, seed=0)
    est = tv_cs(prob.y, prob.op, lam=lam, n_iter=300, volume=volume).clamp(0, 1)
    return float(np.mean(M.psnr(ref, est))), through_plane_error(est, ref)


def tv_cells(scan: ExternalScan, spec: TaskSpec, split: str) -> list[str]:
    """2D and 3D TV-CS, each at the weight best on the validation slabs, on the ``split`` slabs."""
    cells = []
    for volume in (False, True):
        lam = max(TV_WEIGHTS, key=lambda w: np.mean([tv_slab(spec, r, w, volume)[0] for r in slabs(scan, "val")]))
        runs = [tv_slab(spec, r, lam, volume) for r in slabs(scan, split)]
        cells.append(f"{np.mean([r[0] for r in runs]):.2f} / {np.mean([r[1] for r in runs]):.2f} (lam {lam:g})")
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--scans", default="epi,inia19,cartesian-3d")
    ap.add_argument("--tasks", default="mri-1d-8x,inpaint-70")
    ap.add_argument("--weights", default="0,0.003,0.01,0.03")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--model", default=None)
    ap.add_argument("--adapt", action="store_true", help="test-time adaptation in every solve (the tuned settings)")
    ap.add_argument("--tv", action="store_true", help="MRI: add TV-CS columns, 2D and 3D, weights tuned on val")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_prior(args.model).model
    weights = [float(w) for w in args.weights.split(",")]
    heads = ["tuned z_tv" if w < 0 else f"z_tv {w:g}" for w in weights] + (["TV-CS 2D", "TV-CS 3D"] if args.tv else [])
    print(f"| scan | task | {' | '.join(heads)} |")
    print("|---|---|" + "---|" * len(heads))
    for name in args.scans.split(","):
        scan = CARTESIAN if name == CARTESIAN.name else EXTERNAL_SCANS[name]
        tasks = ["mri-poisson-vd-8x"] if scan is CARTESIAN else args.tasks.split(",")
        for task in tasks:
            spec = EXTRA_TASKS.get(task) or TASKS[task]
            cells = []
            for w in weights:
                w = get_task(spec.kind).volume_z_tv or 0.0 if w < 0 else w  # -1: the task's tuned weight
                runs = [solve_slab(model, spec, slab, w, args.preset, args.adapt) for slab in slabs(scan, args.split)]
                psnr, grad, secs = (sum(r[k] for r in runs) / len(runs) for k in range(3))
                cells.append(f"{psnr:.2f} / {grad:.2f} ({secs:.0f} s)")
            if args.tv and spec.kind == "mri":
                cells += tv_cells(scan, spec, args.split)
            print(f"| {name} | {task} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
