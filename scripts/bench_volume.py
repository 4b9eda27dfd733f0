"""Volume-scale speed: one 128x128 slice at a preset, and synthetic 256x256xN slabs through the file pipeline.

    python scripts/bench_volume.py --presets default,fast --slabs 4,8 --json /tmp/volume.json
    python scripts/bench_volume.py --models default,bundled:ncsn --slabs 32    # two priors in one run
    python scripts/bench_volume.py --models default,bundled:split --slabs "" --repeat 3   # best of 3 per slice
    python scripts/bench_volume.py --precisions fp32,bf16 --skip-slice --slabs 32   # the network in fp32, then bf16
    python scripts/bench_volume.py --skip-slice --slabs 16 --volume   # one coherent solve of the slab (--volume)
    python scripts/bench_volume.py --skip-slice --slabs 176 --slab-preset default   # a whole 176 x 256 x 256 volume

For each slab size it runs ``medscore.pipeline.reconstruct_file`` (4x random lines, ``--slab-preset``,
``batch_size="auto"``) in a fresh process and reports wall seconds, seconds per slice and the process's peak
resident memory, so time linear in slices and flat peak memory can be read off the table. The slab is the
embedded T1 resampled to 256x256 in-plane (a realistic image, not noise). Check ``uptime`` first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _slab(n: int, path: Path) -> Path:
    """The embedded T1's middle axial slices, bilinearly resized to 256x256, n of them, as NIfTI (more than its 158:
    all of them, some twice)."""
    import nibabel as nib
    import torch.nn.functional as F

    from medscore.io.embedded import load_embedded

    vol, affine = load_embedded()
    depth = vol.shape[-1]  # 158: a longer slab (176, a whole MPRAGE) repeats slices, evenly spread
    z = np.arange(n) + depth // 2 - n // 2 if n <= depth else np.linspace(0, depth - 1, n).round().astype(int)
    t1 = torch.from_numpy(np.moveaxis(vol[0][:, :, z], -1, 0).copy())[:, None]
    out = F.interpolate(t1, size=(256, 256), mode="bilinear", align_corners=False)[:, 0].numpy()
    nib.save(nib.Nifti1Image(np.moveaxis(out, 0, -1).astype(np.float32), affine), str(path))
    return path


def _model(name: str) -> str | None:
    return None if name == "default" else name


def one_slice(preset: str, model: str = "default", repeat: int = 1, precision: str = "auto") -> dict:
    """Seconds for one 128x128 slice (4x random lines) at ``preset``, after a warm-up call: the best of
    ``repeat`` runs (the minimum resists other load on shared cores), with every run's time."""
    from medscore.io.embedded import held_out
    from medscore.priors.store import load_prior
    from medscore.physics import SingleCoilMRI, make_mask
    from medscore.solvers import SamplerOptions
    from medscore.tasks import reconstruct_mri

    net = load_prior(_model(model)).model
    ref = torch.from_numpy(held_out("test")[5:6, 11:139, 29:157].copy())[:, None]
    mask = torch.from_numpy(make_mask("random", (128, 128), 4, 0.08, seed=0))
    y = SingleCoilMRI(mask).A(ref)
    reconstruct_mri(net, y, mask, SamplerOptions(preset="fast", num_levels=2))  # warm-up
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = reconstruct_mri(net, y, mask, SamplerOptions(preset=preset, precision=precision))
        runs.append(time.perf_counter() - t0)
    return {"model": model, "preset": preset, "precision": precision, "seconds": min(runs), "runs": runs,
            "nfe": res.total_nfe}


def slab(n: int, preset: str, batch_size: int | str = "auto", model: str = "default", precision: str = "auto",
         volume: bool = False) -> dict:
    """Run the file pipeline on an n-slice 256x256 slab in this process; wall time and peak RSS."""
    from medscore.pipeline import reconstruct_file
    from medscore.solvers import SamplerOptions

    with tempfile.TemporaryDirectory() as tmp:
        scan = _slab(n, Path(tmp) / "slab.nii.gz")
        mask = np.zeros(256, dtype=np.float32)
        mask[np.random.default_rng(0).random(256) < 0.25] = 1
        mask[128 - 10:128 + 10] = 1
        t0 = time.perf_counter()
        rep = reconstruct_file(scan, mask, model=_model(model), out=Path(tmp) / "out.nii.gz",
                               opts=SamplerOptions(preset=preset, precision=precision), batch_size=batch_size,
                               device="cpu", volume=volume)
        secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    return {"model": model, "precision": precision, "slices": n, "preset": preset, "batch_size": batch_size,
            "volume": volume,
            "seconds": secs, "seconds_per_slice": secs / n, "peak_rss_mib": peak, "nfe_per_slice": rep.nfe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="default,fast")
    ap.add_argument("--models", default="default", help="comma-separated: default, bundled:NAME or a model folder")
    ap.add_argument("--precisions", default="auto", help="comma-separated: auto, fp32, bf16 (SamplerOptions.precision)")
    ap.add_argument("--slabs", default="4,8")
    ap.add_argument("--slab-preset", default="fast")
    ap.add_argument("--batch-size", default="auto", help="an int, or auto (the batch then grows with the slab)")
    ap.add_argument("--skip-slice", action="store_true", help="only the slabs")
    ap.add_argument("--repeat", type=int, default=1, help="single slice: report the best of this many runs")
    ap.add_argument("--volume", action="store_true", help="slabs solved coherently (reconstruct --volume)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_slab", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._slab is not None:  # child process: one slab, result as JSON on stdout
        bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        print(json.dumps(slab(args._slab, args.slab_preset, bs, args.models, args.precisions, args.volume)))
        return
    runs = [(m, prec) for m in args.models.split(",") for prec in args.precisions.split(",")]
    slices = [] if args.skip_slice else [one_slice(p, m, args.repeat, prec) for m, prec in runs
                                         for p in args.presets.split(",")]
    rows = {"threads": torch.get_num_threads(), "slice": slices, "slabs": []}
    for m, prec in runs:
        for n in (int(s) for s in args.slabs.split(",") if s):  # --slabs "": single slices only
            cmd = [sys.executable, __file__, "--_slab", str(n), "--slab-preset", args.slab_preset, "--batch-size",
                   args.batch_size, "--models", m, "--precisions", prec, *(["--volume"] if args.volume else [])]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows["slabs"].append(json.loads(out.splitlines()[-1]))
    for r in rows["slice"]:
        runs = " / ".join(f"{t:.1f}" for t in r["runs"])
        print(f"| {r['model']} ({r['precision']}): one 128x128 slice, 4x, {r['preset']} ({r['nfe']} NFE) "
              f"| {r['seconds']:.1f} s (runs {runs}) |")
    for r in rows["slabs"]:
        print(f"| {r['model']} ({r['precision']}{', volume' if r.get('volume') else ''}): "
              f"256x256x{r['slices']} slab, {r['preset']} "
              f"({r['nfe_per_slice']} NFE/slice), "
              f"batch {r['batch_size']} | {r['seconds']:.0f} s "
              f"({r['seconds_per_slice']:.1f} s/slice), peak RSS {r['peak_rss_mib']:.0f} MiB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
