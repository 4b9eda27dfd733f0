"""Where a file reconstruction's time goes: coil maps, phase pre-pass, network, forward operators, the rest.

    python scripts/profile_split.py --coils 12 --shape 192,176 --slices 4 --presets fast,default
    python scripts/profile_split.py --coils 12 --precision bf16      # the network under bf16 autocast

Writes, for the same slices (the embedded T1's middle axial slices resized to ``--shape``, a 1D random 4x mask with
an 8 % centre): a magnitude NIfTI solved by ``reconstruct_file`` (single coil, real image), single-coil complex
k-space and ``--coils``-coil k-space (birdcage maps, a realistic phase, complex noise of std 0.005) as fastMRI-style
``.h5`` files solved by ``reconstruct_kspace_file``, every run in this process after one warm-up solve. The time of
each run is split by wrapping, for the run only, the functions each part goes through; every second is counted
once, in the innermost part it was spent in (the phase pre-pass's own FFTs count as pre-pass, not as operator):

* ``ESPIRiT``: the per-slice map estimate (``estimate_image_maps``);
* ``phase TV``: the short TV-CS reconstructions whose phase moves into the maps (``tv_sense``);
* ``network``: every call of the score network, all passes;
* ``operator``: the forward model and its adjoint in the data steps (FFTs, coil products, masks);
* ``z TV``: the prox along the slice axis of ``--volume`` solves;
* ``rest``: the sampler's arithmetic, reading, metrics, writing the outputs.

Check ``uptime`` first; nothing else may compute while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

PARTS = ("ESPIRiT", "phase TV", "network", "operator", "z TV", "rest")


class SplitTimer:
    """Exclusive wall time per part: entering a part pauses the one it was called from."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[tuple[str, float]] = []

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            now = time.perf_counter()
            if self._stack:  # pause the caller's part
                outer, since = self._stack[-1]
                self.seconds[outer] += now - since
            self._stack.append((part, now))
            self.calls[part] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                _, since = self._stack.pop()
                self.seconds[part] += end - since
                if self._stack:  # resume the caller's part
                    self._stack[-1] = (self._stack[-1][0], end)
        return timed


@contextlib.contextmanager
def patched(timer: SplitTimer) -> Iterator[None]:
    """The functions of each part wrapped with ``timer`` for the duration of the block."""
    from medscore.physics import mri as mri_ops
    from medscore.solvers import driver, slice_coupling
    from medscore.tasks import coil_phase

    targets: list[tuple[Any, str, str]] = [
        (coil_phase, "estimate_image_maps", "ESPIRiT"),
        (coil_phase, "tv_sense", "phase TV"),
        (mri_ops.MultiCoilMRI, "A", "operator"), (mri_ops.MultiCoilMRI, "A_adjoint", "operator"),
        (mri_ops.SingleCoilMRI, "T", "operator"), (mri_ops.SingleCoilMRI, "T_adjoint", "operator"),
        (slice_coupling.SliceCoupledGuidance, "couple", "z TV"),
    ]
    saved = [(obj, name, obj.__dict__.get(name, None) if isinstance(obj, type) else getattr(obj, name))
             for obj, name, _ in targets]
    for obj, name, part in targets:
        setattr(obj, name, timer.wrap(part, getattr(obj, name)))
    plain_score_function = driver.score_function
    driver.score_function = lambda model, *args, **kwargs: timer.wrap(
        "network", plain_score_function(model, *args, **kwargs))
    try:
        yield
    finally:
        driver.score_function = plain_score_function
        for obj, name, old in saved:
            if old is None:
                delattr(obj, name)  # the class inherited it
            else:
                setattr(obj, name, old)


def make_inputs(folder: Path, shape: tuple[int, int], slices: int, coils: int) -> dict[str, Path]:
    """The NIfTI, the mask and the single- and multi-coil k-space files of the same slices (see the docstring)."""
    import h5py
    import nibabel as nib
    import torch.nn.functional as F

    from medscore.io.embedded import load_embedded
    from medscore.physics import expand_mask, fft2c, make_mask, random_phase, simulate_multicoil

    vol, affine = load_embedded()
    z0 = vol.shape[-1] // 2 - slices // 2
    t1 = torch.from_numpy(np.moveaxis(vol[0, :, :, z0:z0 + slices], -1, 0).copy())[:, None]
    ref = F.interpolate(t1, size=shape, mode="bilinear", align_corners=False)[:, 0].clamp(0, 1).numpy()
    mask = make_mask("random", shape, 4, 0.08, seed=0)
    paths = {"mask": folder / "mask.npy", "nifti": folder / "scan.nii.gz", "single": folder / "single.h5",
             "multi": folder / "multi.h5"}
    np.save(paths["mask"], mask)
    nib.save(nib.Nifti1Image(np.moveaxis(ref, 0, -1).astype(np.float32), affine), str(paths["nifti"]))
    multi = np.stack([simulate_multicoil(r, num_coils=coils, noise_std=0.005, mask=mask, seed=100 + i).kspace
                      for i, r in enumerate(ref)])
    rng = np.random.default_rng(0)
    images = torch.from_numpy(np.stack([r * np.exp(1j * random_phase(shape, 100 + i)) for i, r in enumerate(ref)]))
    noise = (rng.standard_normal(images.shape) + 1j * rng.standard_normal(images.shape)) * 0.005 / np.sqrt(2)
    single = (fft2c(images.to(torch.complex64)).numpy() + noise) * expand_mask(mask, shape)
    for key, kspace in (("single", single), ("multi", multi)):
        with h5py.File(paths[key], "w") as f:
            f["kspace"] = kspace.astype(np.complex64)
    return paths


def run_once(kind: str, paths: dict[str, Path], out: Path, preset: str, precision: str) -> tuple[float, dict, int]:
    """One file solve of ``kind`` (nifti, single, multi); wall seconds, the exclusive split, NFE per slice."""
    from medscore.pipeline import reconstruct_file, reconstruct_kspace_file
    from medscore.solvers import SamplerOptions

    opts = SamplerOptions(preset=preset, precision=precision)
    timer = SplitTimer()
    t0 = time.perf_counter()
    with patched(timer):
        if kind == "nifti":
            report = reconstruct_file(paths["nifti"], paths["mask"], out=out, opts=opts, batch_size="auto")
        else:
            report = reconstruct_kspace_file(paths[kind], out=out, opts=opts, batch_size="auto")
    wall = time.perf_counter() - t0
    split = {part: timer.seconds.get(part, 0.0) for part in PARTS if part != "rest"}
    split["rest"] = wall - sum(split.values())
    return wall, split, int(report.nfe)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coils", type=int, default=12)
    ap.add_argument("--shape", default="192,176")
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--presets", default="fast,default")
    ap.add_argument("--kinds", default="nifti,single,multi")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    shape = tuple(int(s) for s in args.shape.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_inputs(folder, shape, args.slices, args.coils)
        run_once("nifti", paths, folder / "warm.nii.gz", "fast", args.precision)  # warm-up: loading, first calls
        for preset in args.presets.split(","):
            for kind in args.kinds.split(","):
                wall, split, nfe = run_once(kind, paths, folder / f"{kind}-{preset}.nii.gz", preset, args.precision)
                rows.append({"kind": kind, "preset": preset, "wall": wall, "per_slice": wall / args.slices,
                             "nfe": nfe, "split": split})
                print(json.dumps(rows[-1]), flush=True)
    label = {"nifti": "magnitude NIfTI (single coil, real)", "single": "single-coil k-space",
             "multi": f"{args.coils}-coil k-space"}
    print(f"\n| input | preset | s per slice | {' | '.join(PARTS)} |\n|---|---|---|" + "---|" * len(PARTS))
    for r in rows:
        cells = " | ".join(f"{r['split'][p] / args.slices:.2f}" for p in PARTS)
        print(f"| {label[r['kind']]} | {r['preset']} | {r['per_slice']:.2f} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
