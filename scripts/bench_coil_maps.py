"""How much the coil maps cost: medscore and TV-CS with five sets of maps, validation slab, multi-coil tasks.

    python scripts/bench_coil_maps.py --tasks mc-1d-8x mc-1d-4x mc-poisson-vd-8x --preset fast

The maps, each the same for both methods:
  square       ESPIRiT from the fully sampled centre *square* only (what medscore used until run 11 of
               docs/benchmarks.md), with the phase refined as below;
  calibration  ESPIRiT with the phase of the calibration region's image (medscore.physics.estimate_image_maps);
  refined      what medscore uses: that phase refined by a short TV-CS reconstruction (medscore.tasks.coil_phase);
  true-phase   the ESPIRiT maps with the simulated image's exact phase moved into them (an oracle);
  true         the simulated maps and phase (an oracle: the image to reconstruct is the real magnitude).
The oracles use the simulation's ground truth and show the headroom; no method ever gets them in the benchmark.
TV-CS's weight is tuned per row on the same slices (tune_sense). Prints one JSON line per task and set of maps.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from medscore.baselines.sense import magnitude, tune_sense, tv_sense
from medscore.io.embedded import held_out
from medscore.evaluation.specs import TASKS, degrade, medscore_method, run_method
from medscore.metrics import psnr
from medscore.priors.store import load_prior
from medscore.physics import MultiCoilMRI, estimate_image_maps, simulate_multicoil
from medscore.tasks.coil_phase import refine_image_phase
from medscore.physics.coils import calibration_width, estimate_smaps, real_image_phase, sampling_mask_from_kspace
from medscore.solvers import SamplerOptions


def map_sets(prob, ref: np.ndarray, spec) -> dict[str, torch.Tensor]:
    """The five sets of maps (B, K, H, W) for a degraded validation problem (simulated with seed (1, i))."""
    truth = [simulate_multicoil(r, num_coils=spec.coils, noise_std=spec.kspace_noise, mask=prob.mask.numpy(),
                                seed=np.random.default_rng([1, i])) for i, r in enumerate(ref)]
    for t, y in zip(truth, prob.y.numpy()):
        assert np.array_equal(t.kspace, y), "the simulation no longer matches the task's"
    raw = [estimate_smaps(y, crop=0.0) for y in prob.y.numpy()]
    true_phase = [m * np.exp(1j * np.angle((m.conj() * t.smaps * t.image).sum(0))) for m, t in zip(raw, truth)]
    square = np.stack([real_image_phase(y, estimate_smaps(y, calibration_width(sampling_mask_from_kspace(y)), crop=0.0))
                       for y in prob.y.numpy()])
    square = refine_image_phase(prob.y, torch.from_numpy(square), prob.mask).numpy()
    sets = {"square": square, "calibration": np.stack([estimate_image_maps(y) for y in prob.y.numpy()]),
            "refined": prob.op.smaps.numpy(), "true-phase": np.stack(true_phase),
            "true": np.stack([t.smaps * np.exp(1j * np.angle(t.image)) for t in truth])}
    return {k: torch.from_numpy(v.astype(np.complex64)) for k, v in sets.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["mc-1d-8x", "mc-1d-4x", "mc-poisson-vd-8x"])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--maps", nargs="+", default=None, help="only these sets (default: all)")
    args = ap.parse_args()
    ref = torch.from_numpy(held_out("val"))[:, None]
    refs = list(ref[:, 0].numpy())
    net = load_prior(None).model
    for name in args.tasks:
        spec = TASKS[name]
        prob = degrade(spec, ref, seed=1)
        for label, maps in map_sets(prob, np.stack(refs), spec).items():
            if args.maps and label not in args.maps:
                continue
            problems = [(prob.y[i:i + 1], MultiCoilMRI(prob.mask, maps[i:i + 1])) for i in range(len(refs))]
            lam = float(tune_sense("tv", problems, refs)["lam"])
            tv = np.mean([psnr(r, magnitude(tv_sense(y, op, lam=lam))[0]) for (y, op), r in zip(problems, refs)])
            prob.op = MultiCoilMRI(prob.mask, maps)
            t0 = time.perf_counter()
            ours = run_method(medscore_method(spec, net, SamplerOptions(preset=args.preset)), prob).psnr
            print(json.dumps({"task": name, "maps": label, "tv_cs": round(float(tv), 2), "tv_lam": lam,
                              "medscore": round(float(ours.mean()), 2), "per_slice": np.round(ours, 2).tolist(),
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
