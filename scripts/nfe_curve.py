"""Quality-vs-NFE curve of one or more samplers on MRI 1D 4x (the held-out test slices), and its figure.

    python scripts/nfe_curve.py --slices 2,5,8 --samplers pnp --points docs/figures/nfe_curve_points.json

Points of samplers not re-measured are read from ``--points`` (a JSON file this script writes), so a new
sampler can be added to the figure without re-running the others; the classical lines are TV-CS and
zero-filled and TV-CS (tuned on the validation slab), as in ``medscore benchmark``. The ald, ddim and pc points
in the stored file come from ``medscore benchmark --slices 2,5,8`` (same slices, seeds and code for them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from medscore.evaluation.benchmark import embedded_slices
from medscore.evaluation.curves import CURVE_BUDGETS, nfe_curves, plot_curves
from medscore.evaluation.specs import TASKS, classical_methods, degrade, run_method
from medscore.io.embedded import held_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", default="2,5,8")
    ap.add_argument("--samplers", default=",".join(CURVE_BUDGETS))
    ap.add_argument("--points", type=Path, default=Path("docs/figures/nfe_curve_points.json"))
    ap.add_argument("--figure", type=Path, default=Path("docs/figures/nfe_curve_mri4x.png"))
    args = ap.parse_args()
    ref = embedded_slices([int(i) for i in args.slices.split(",")])[0]
    points = json.loads(args.points.read_text()) if args.points.is_file() else {"curves": {}, "baselines": {}}
    names = [s.strip() for s in args.samplers.split(",")]
    measured = nfe_curves("mri-1d-4x", ref, {n: CURVE_BUDGETS[n] for n in names}, log=print)
    points["curves"].update({k: [list(p) for p in v] for k, v in measured.items()})
    if not points["baselines"]:
        spec = TASKS["mri-1d-4x"]
        val = degrade(spec, torch.from_numpy(held_out("val"))[:, None], seed=1)
        prob = degrade(spec, ref, seed=0)
        for name, fn in classical_methods(spec, val, None).items():
            if name == "zero-filled" or name.startswith("TV-CS"):
                points["baselines"][name.split(" (")[0]] = float(run_method(fn, prob).psnr.mean())
    args.points.write_text(json.dumps(points, indent=1) + "\n")
    curves = {k: [tuple(p) for p in v] for k, v in points["curves"].items()}
    plot_curves(curves, points["baselines"], args.figure, "MRI 1D 4x, test slices: PSNR against NFE")
    print(json.dumps(points, indent=1))


if __name__ == "__main__":
    main()
