"""Compare priors (without adaptation) on the external scans' validation or test slices and the embedded slabs.

Used to decide whether a newly trained prior replaces the bundled one (choices on ``--split val`` only)::

    python scripts/compare_priors.py --models default,runs/heads-split --split val
    python scripts/compare_priors.py --models default,runs/heads-split --split test --preset default
    python scripts/compare_priors.py --precisions fp32,bf16 --split test   # one prior, the network in fp32 and bf16

``default`` is the bundled prior. Each cell: mean PSNR (dB) over the slices, then HFEN. Tasks are
:data:`medscore.evaluation.specs.TASKS` names; every model sees the same degraded inputs.
"""

from __future__ import annotations

import argparse
import time

import torch

from medscore import metrics as M
from medscore.evaluation.benchmark import embedded_slices
from medscore.evaluation.external import EXTERNAL_SCANS, available_scans, load_external
from medscore.evaluation.specs import TASKS, degrade, medscore_method
from medscore.io.embedded import held_out
from medscore.priors import load_prior
from medscore.solvers import SamplerOptions


def slices(name: str, split: str) -> torch.Tensor:
    """The ``split`` slices of an external scan, or of the embedded brain (``embedded``)."""
    if name == "embedded":
        return torch.from_numpy(held_out("val"))[:, None] if split == "val" else embedded_slices(None)[0]
    test, val, _ = load_external(EXTERNAL_SCANS[name])
    return val if split == "val" else test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--scans", default="epi,inia19,inia19-coronal,embedded")
    ap.add_argument("--tasks", default="mri-1d-8x,mri-1d-4x,inpaint-70,denoise-0.1")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", default="auto", help="comma-separated: auto, fp32, bf16 (a column each)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    priors = {m: load_prior(None if m == "default" else m).model for m in models}
    names = [s for s in args.scans.split(",") if s == "embedded"]
    names += [s.name for s in available_scans([s for s in args.scans.split(",") if s != "embedded"], print)]
    columns = [(m, p) for m in models for p in args.precisions.split(",")]
    print(f"| scan | task | {' | '.join(m if p == 'auto' else f'{m} {p}' for m, p in columns)} |")
    print("|---|---|" + "---|" * len(columns))
    for scan in names:
        ref = slices(scan, args.split)
        for task in args.tasks.split(","):
            prob = degrade(TASKS[task], ref, seed=0)
            cells = []
            for m, precision in columns:
                t0 = time.perf_counter()
                opts = SamplerOptions(preset=args.preset, seed=0, precision=precision)
                est, _ = medscore_method(TASKS[task], priors[m], opts, denoise_method="tweedie")(prob)
                r, e = ref[:, 0].numpy(), est[:, 0].float().numpy()
                cells.append(f"{M.psnr(r, e).mean():.2f} / {M.hfen(r, e).mean():.3f} "
                             f"({time.perf_counter() - t0:.0f} s)")
            print(f"| {scan} x{len(ref)} | {task} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
