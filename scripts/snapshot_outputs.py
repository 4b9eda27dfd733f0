"""Snapshot the outputs of medscore's public entry points, to check that a refactor changes no result.

    python scripts/snapshot_outputs.py record OUT.npz            # also writes OUT.json (sha256 per array)
    python scripts/snapshot_outputs.py compare A.npz B.npz       # every key: identical, or max |A - B|

``record`` runs, on small inputs (64 x 64 slices cut from the embedded MNI152 T1), with fixed seeds, on the CPU
in fp32 and with a fixed number of threads (``--threads``, default 1):

* ``cli/...``: the file commands through ``python -m <cli module>`` (subprocesses): ``mask``, ``reconstruct``
  (``--samples 2``: the std output), ``inpaint --missing 0.7``, ``denoise --add-noise 0.1`` (tweedie and
  sampler), on a 2-slice NIfTI; then measured k-space: single-coil .npy, multi-coil .npy and fastMRI .h5
  (simulated with medscore's own ``random_phase`` / ``simulate_multicoil``). Every output file is read back:
  NIfTI data, affine and header fields, .npy arrays, .h5 datasets, the JSON sidecar without its timings;
  the NFE that each command prints;
* ``api/...``: ``medscore.api`` reconstruct_mri (image, stack with 2 samples, complex k-space), inpaint, denoise
  (tweedie and sampler), sample;
* ``inferer/...``: the MONAI ``ScoreInferer`` for every registered task on a (2, 1, 64, 64) batch, and for MRI
  on a (1, 1, 64, 64, 2) volume;
* ``bench/<spec>/...``: every benchmark spec (``TASKS``): the degraded problem (measurements, baseline, mask,
  coil maps), the validation problem the classical methods are tuned on, and per method (classical ones, the
  nearest training slice, medscore at ``fast`` with each solver method) the estimate, PSNR / SSIM / NMSE and NFE;
* ``tuning/...``: ``medscore tune``'s grid, one cheap trial on two specs' validation problems, ``choose_presets``;
* ``presets/...``: the resolved ``fast`` / ``default`` preset of every task, and each spec's preset key.

No timings are recorded. Imports go through :func:`resolve`, which tries the module paths of the current layout
first and then those of the restructured one (``medscore.evaluation.specs``, ``medscore.monai.inferer``,
``medscore.io.embedded``, ...), so the same script records both. The JSON beside the .npz also lists the module
each name was found in and any section that failed (``record`` then exits 2; the failure is also stored as an
``errors/<section>`` key, so that ``compare`` flags it).

Bit-identity needs the same machine, the same thread count and the same library versions for both snapshots.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable


def _threads_from_argv(default: int = 1) -> int:
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if a.startswith("--threads=") and a.split("=", 1)[1].isdigit():
            return int(a.split("=", 1)[1])
    return default


if __name__ == "__main__":  # before numpy's BLAS starts its threads
    for _k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_k] = str(_threads_from_argv())

import numpy as np  # noqa: E402

SIZE = 64
ROWS, COLS = slice(40, 40 + SIZE), slice(0, SIZE)  # crop of the 151 x 187 axial slices: brain, skull edge, background
Z0 = 80  # first axial slice of the NIfTI (inside the test slab, z 76..85)
SEED = 0
SECTIONS = ("cli", "kspace", "api", "inferer", "bench", "tuning", "presets")

# --------------------------------------------------------------------------------------------------- imports

CANDIDATES: dict[str, list[str]] = {
    "api": ["medscore.api"],
    "tasks": ["medscore.tasks", "medscore.tasks.base", "medscore.tasks.registry"],
    "embedded": ["medscore.embedded", "medscore.io.embedded", "medscore.data.embedded", "medscore.io"],
    "specs": ["medscore.evaluation", "medscore.evaluation.specs", "medscore.evaluation.tasks",
              "medscore.evaluation.methods", "medscore.evaluation.benchmark", "medscore.benchmark"],
    "inferer": ["medscore.inferer", "medscore.monai.inferer", "medscore.monai"],
    "simulate": ["medscore.physics.simulate", "medscore.physics", "medscore.physics.coils"],
    "solvers": ["medscore.api", "medscore.solvers", "medscore.solvers.options", "medscore.solvers.driver",
                "medscore.sampling", "medscore.solve"],
    "presets": ["medscore.solvers", "medscore.solvers.driver", "medscore.solvers.presets", "medscore.sampling",
                "medscore.sampling.presets", "medscore.solve"],
    "tuning": ["medscore.tuning", "medscore.evaluation.tuning", "medscore.evaluation"],
    "cli": ["medscore.cli.main", "medscore.cli", "medscore.cli.app", "medscore"],
}
RESOLVED: dict[str, str] = {}


def resolve(name: str, group: str) -> Any:
    """``name`` from the first module of ``CANDIDATES[group]`` that imports and has it."""
    tried = []
    for mod_name in CANDIDATES[group]:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            tried.append(f"{mod_name} ({exc.__class__.__name__}: {exc})")
            continue
        if hasattr(mod, name):
            RESOLVED[f"{group}:{name}"] = mod_name
            return getattr(mod, name)
        tried.append(f"{mod_name} (no {name})")
    raise ImportError(f"cannot resolve {name!r}; tried " + "; ".join(tried))


def cli_module() -> str:
    """The first candidate that ``python -m`` can run: a package with ``__main__`` or a module with a main guard."""
    for name in CANDIDATES["cli"]:
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations is not None:  # a package: needs __main__.py
            try:
                if importlib.util.find_spec(name + ".__main__") is not None:
                    RESOLVED["cli:python -m"] = name
                    return name
            except ImportError:
                pass
            continue
        if spec.origin and "__main__" in Path(spec.origin).read_text():
            RESOLVED["cli:python -m"] = name
            return name
    raise ImportError(f"no runnable CLI module among {CANDIDATES['cli']}")


# --------------------------------------------------------------------------------------------------- recording


class Recorder:
    def __init__(self, verbose: bool = False) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.errors: dict[str, str] = {}
        self.verbose, self._last = verbose, time.perf_counter()

    def put(self, key: str, value: Any) -> None:
        key = _clean_key(key)
        if key in self.arrays:
            raise KeyError(f"duplicate key {key}")
        self.arrays[key] = _as_array(value)
        if self.verbose:
            now = time.perf_counter()
            print(f"    {now - self._last:6.1f} s  {key}", flush=True)
            self._last = now

    def put_estimate(self, key: str, est: Any) -> None:
        """An api Estimate: mean, std, nfe, total_nfe (not its seconds)."""
        self.put(f"{key}/mean", est.mean)
        self.put(f"{key}/std", est.std)
        self.put(f"{key}/nfe", est.nfe)
        self.put(f"{key}/total_nfe", getattr(est, "total_nfe", None))


def _clean_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./+=-]+", "_", key).strip("_")


def _as_array(value: Any) -> np.ndarray:
    if value is None:
        return np.array("None")
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (dict, list, tuple)) and not _numeric_seq(value):
        return np.array(json.dumps(value, sort_keys=True, default=str))
    return np.array(value) if not isinstance(value, np.ndarray) else np.ascontiguousarray(value)


def _numeric_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, np.number)) for v in value)


def sha256(a: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def reseed() -> None:
    """Global RNGs reset before every section (a section's results must not depend on the ones before)."""
    import torch

    torch.manual_seed(SEED)
    np.random.seed(SEED)


# --------------------------------------------------------------------------------------------------- inputs


def t1_path() -> Path:
    try:
        return Path(resolve("embedded_path", "embedded")("t1"))
    except ImportError:
        from importlib import resources

        return Path(str(resources.files("medscore") / "data" / "mni152_t1.nii.gz"))


def test_slices(n: int = 2) -> np.ndarray:
    """(n, 64, 64) float32 on [0, 1]: crops of the embedded test slab (the benchmark's scaling)."""
    held_out = resolve("held_out", "embedded")
    return np.ascontiguousarray(held_out("test")[Z0 - 76:Z0 - 76 + n, ROWS, COLS])


def val_slices() -> np.ndarray:
    held_out = resolve("held_out", "embedded")
    return np.ascontiguousarray(held_out("val")[:, ROWS, COLS])


def write_scan(path: Path) -> None:
    """The NIfTI the file commands read: 64 x 64 x 2 uint8 voxels of the embedded T1, with their true affine."""
    import nibabel as nib

    img = nib.load(str(t1_path()))
    data = np.asarray(img.dataobj)[ROWS, COLS, Z0:Z0 + 2]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([ROWS.start, COLS.start, Z0]) + img.affine[:3, 3]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))


def centred_fft2(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (medscore's k-space convention)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


# --------------------------------------------------------------------------------------------------- CLI


class Cli:
    def __init__(self, threads: int) -> None:
        self.module = cli_module()
        self.env = {**os.environ, "MEDSCORE_DEBUG": "1", "COLUMNS": "200", "NO_COLOR": "1",
                    **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
        import medscore

        here = str(Path(medscore.__file__).resolve())
        there = subprocess.run([sys.executable, "-c", "import medscore; print(medscore.__file__)"], env=self.env,
                               capture_output=True, text=True, check=True).stdout.strip()
        if str(Path(there).resolve()) != here:
            raise RuntimeError(f"the CLI subprocess imports {there}, this process {here}")

    def __call__(self, *args: Any) -> str:
        cmd = [sys.executable, "-m", self.module, *map(str, args)]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:])} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout


SOLVE_FLAGS = ("--preset", "fast", "--device", "cpu", "--precision", "fp32", "--seed", SEED, "--batch-size", 2)


def nfe_printed(stdout: str) -> int:
    m = re.search(r"(\d+)\s+NFE", stdout)
    return int(m.group(1)) if m else -1


def record_outputs(rec: Recorder, key: str, folder: Path) -> None:
    """Every file in ``folder`` (PNG panels: existence only)."""
    import nibabel as nib

    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    rec.put(f"{key}/files", files)
    for p in sorted(folder.iterdir()):
        name = p.name.replace(".", "_")
        if p.name.endswith((".nii.gz", ".nii")):
            img = nib.load(str(p))
            hdr = img.header
            rec.put(f"{key}/{name}/data", np.asarray(img.dataobj))
            rec.put(f"{key}/{name}/affine", img.affine)
            rec.put(f"{key}/{name}/header", {"dtype": hdr.get_data_dtype().str, "shape": list(img.shape),
                                             "zooms": [float(z) for z in hdr.get_zooms()],
                                             "qform_code": int(hdr["qform_code"]), "sform_code": int(hdr["sform_code"]),
                                             "slope_inter": [None if v is None else float(v)
                                                             for v in hdr.get_slope_inter()]})
        elif p.suffix == ".npy":
            rec.put(f"{key}/{name}", np.load(p, allow_pickle=False))
        elif p.suffix == ".h5":
            import h5py

            with h5py.File(p, "r") as f:
                names: list[str] = []
                f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
                for n in sorted(names):
                    rec.put(f"{key}/{name}/{n}", f[n][()])
        elif p.suffix == ".json":
            info = _drop_timings(json.loads(p.read_text()))
            rec.put(f"{key}/{name}", info)
            if isinstance(info, dict) and "nfe_per_slice" in info:
                rec.put(f"{key}/{name}/nfe_per_slice", int(info["nfe_per_slice"]))


def _drop_timings(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_timings(v) for k, v in obj.items()
                if not any(t in k.lower() for t in ("timing", "seconds", "elapsed", "duration", "date", "time_"))}
    if isinstance(obj, list):
        return [_drop_timings(v) for v in obj]
    return obj


def section_cli(rec: Recorder, cli: Cli, tmp: Path) -> None:
    scan = tmp / "scan.nii.gz"
    write_scan(scan)
    mask = tmp / "mask.npy"
    cli("mask", "--pattern", "random", "--accel", 4, "--center", 0.08, "--shape", SIZE, SIZE, "-o", mask,
        "--seed", SEED)
    rec.put("cli/mask/mask", np.load(mask))

    runs = {
        "reconstruct": ("reconstruct", scan, "--mask", mask, "--samples", 2),
        "inpaint": ("inpaint", scan, "--missing", 0.7),
        "denoise": ("denoise", scan, "--add-noise", 0.1),
        "denoise_sampler": ("denoise", scan, "--add-noise", 0.1, "--method", "sampler"),
    }
    for name, args in runs.items():
        folder = tmp / f"out_{name}"
        out = cli(*args, "-o", folder / f"{name}.nii.gz", *SOLVE_FLAGS)
        rec.put(f"cli/{name}/nfe_printed", nfe_printed(out))
        record_outputs(rec, f"cli/{name}", folder)


def section_kspace(rec: Recorder, cli: Cli, tmp: Path) -> None:
    random_phase = resolve("random_phase", "simulate")
    simulate_multicoil = resolve("simulate_multicoil", "simulate")
    make_mask = resolve("make_mask", "api")
    mags = test_slices(2)

    # single coil: the magnitude slices with a scanner-like phase, 1D random 4x lines
    m1 = np.asarray(make_mask("random", (SIZE, SIZE), accel=4, center=0.08, seed=SEED), dtype=np.float32)
    img = np.stack([mags[i] * np.exp(1j * random_phase((SIZE, SIZE), seed=i)) for i in range(len(mags))])
    k1 = (centred_fft2(img) * np.broadcast_to(m1, (SIZE, SIZE))).astype(np.complex64)
    np.save(tmp / "k_single.npy", k1)
    np.save(tmp / "mask_single.npy", m1)
    rec.put("kspace/input/single_kspace", k1)
    rec.put("kspace/input/single_mask", m1)

    # multi coil: 8 birdcage coils, noise 0.005, 1D random 4x with a 16 % centre (ESPIRiT needs >= 8 lines)
    mm = np.asarray(make_mask("random", (SIZE, SIZE), accel=4, center=0.16, seed=SEED), dtype=np.float32)
    acqs = [simulate_multicoil(mags[i], num_coils=8, noise_std=0.005, mask=mm, seed=i) for i in range(len(mags))]
    kmc = np.stack([a.kspace for a in acqs]).astype(np.complex64)
    np.save(tmp / "k_multi.npy", kmc)
    np.save(tmp / "mask_multi.npy", mm)
    rec.put("kspace/input/multi_kspace", kmc)
    rec.put("kspace/input/multi_mask", mm)
    rec.put("kspace/input/multi_true_smaps", np.stack([a.smaps for a in acqs]))

    runs = {
        "single_npy": ("reconstruct", tmp / "k_single.npy", "--mask", tmp / "mask_single.npy"),
        "multi_npy": ("reconstruct", tmp / "k_multi.npy", "--mask", tmp / "mask_multi.npy"),
    }
    try:
        import h5py

        with h5py.File(tmp / "k_multi.h5", "w") as f:
            f.create_dataset("kspace", data=kmc)
        # mask inferred from the zero pattern, fastMRI-style centre crop of the .h5 output
        runs["multi_h5"] = ("reconstruct", tmp / "k_multi.h5", "--crop", 48)
    except ImportError:
        print("h5py not installed: no .h5 k-space run", file=sys.stderr)
    for name, args in runs.items():
        folder = tmp / f"out_k_{name}"
        out = cli(*args, "-o", folder / f"{name}.nii.gz", *SOLVE_FLAGS)
        rec.put(f"kspace/{name}/nfe_printed", nfe_printed(out))
        record_outputs(rec, f"kspace/{name}", folder)


def section_api(rec: Recorder) -> None:
    api = importlib.import_module("medscore.api")
    RESOLVED["api:module"] = "medscore.api"
    x = test_slices(2)
    common = dict(preset="fast", seed=SEED, device="cpu", precision="fp32")
    mask = api.make_mask("random", (SIZE, SIZE), accel=4, center=0.08)
    rec.put("api/make_mask_random_4x", mask)
    poisson = api.make_mask("poisson", (SIZE, SIZE), accel=8, center=0.08, seed=3)
    rec.put("api/make_mask_poisson_8x", poisson)

    rec.put_estimate("api/reconstruct_mri/stack", api.reconstruct_mri(x, mask, **common))
    rec.put_estimate("api/reconstruct_mri/single_samples2",
                     api.reconstruct_mri(x[0], poisson, samples=2, **{**common, "seed": 5}))
    rec.put_estimate("api/reconstruct_mri/noisy_kspace_noise",
                     api.reconstruct_mri(x[1], mask, noise_std=0.01, **common))
    random_phase = resolve("random_phase", "simulate")
    k = (centred_fft2(x[0] * np.exp(1j * random_phase((SIZE, SIZE), seed=7)))
         * np.broadcast_to(np.asarray(mask, dtype=np.float32), (SIZE, SIZE))).astype(np.complex64)
    rec.put("api/reconstruct_mri/complex_kspace/input", k)
    rec.put_estimate("api/reconstruct_mri/complex_kspace", api.reconstruct_mri(k, mask, **common))

    known = (np.random.default_rng(11).random((SIZE, SIZE)) >= 0.7).astype(np.float32)
    rec.put("api/inpaint/known", known)
    rec.put_estimate("api/inpaint/random70", api.inpaint(x, known, **common))
    box = np.ones((SIZE, SIZE), np.float32)
    box[22:42, 22:42] = 0
    rec.put_estimate("api/inpaint/box", api.inpaint(x[0], box, **common))

    noisy = (x + 0.1 * np.random.default_rng(12).standard_normal(x.shape)).astype(np.float32)
    rec.put("api/denoise/noisy", noisy)
    rec.put_estimate("api/denoise/tweedie", api.denoise(noisy, 0.1, **common))
    rec.put_estimate("api/denoise/sampler", api.denoise(noisy, 0.1, method="sampler", **common))
    rec.put_estimate("api/denoise/estimated_sigma", api.denoise(noisy[0], None, **common))
    # num_levels 10: the fast preset samples with 601 NFE (annealed Langevin), 18 s; this is 31
    rec.put_estimate("api/sample", api.sample(2, 32, num_levels=10, **common))


def section_inferer(rec: Recorder) -> None:
    import torch

    ScoreInferer = resolve("ScoreInferer", "inferer")
    SamplerOptions = resolve("SamplerOptions", "solvers")
    task_names = resolve("task_names", "tasks")
    get_task = resolve("get_task", "tasks")
    load_prior = resolve("load_prior", "api")
    opts = SamplerOptions(preset="fast", seed=SEED, precision="fp32")
    x = torch.from_numpy(test_slices(2))[:, None]
    known = (np.random.default_rng(21).random((SIZE, SIZE)) >= 0.7).astype(np.float32)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(22))).float()
    rec.put("inferer/input", x)
    rec.put("inferer/known", known)
    rec.put("inferer/noisy", noisy)
    networks = {flag: load_prior(None, "cpu", complex_data=flag).model for flag in (False, True)}
    settings: dict[str, list[tuple[str, dict, torch.Tensor]]] = {
        "mri": [("drawn_mask", dict(mask=None, accel=4.0, center=0.08, mask_seed=3), x)],
        "inpaint": [("mask", dict(mask=known), x)],
        "denoise": [("tweedie", dict(noise_std=0.1), noisy), ("sampler", dict(noise_std=0.1, method="sampler"), noisy),
                    ("estimated_sigma", dict(noise_std=None), noisy[:1])],
        "mri-multicoil": [("drawn_mask", dict(mask=None, accel=4.0, center=0.08, mask_seed=4), x)],
    }
    names = list(task_names())
    rec.put("inferer/task_names", names)
    for name in names:
        net = networks[bool(getattr(get_task(name), "complex_data", False))]
        for label, kw, inp in settings.get(name, [("default", {}, x)]):
            inf = ScoreInferer(name, opts=opts, batch_size=2, **kw)
            with torch.inference_mode():
                rec.put(f"inferer/{name}/{label}", inf(inp, net))
    # a channel-first volume (B, 1, X, Y, Z), cut along the last axis, with an explicit (H, W) mask
    make_mask = resolve("make_mask", "api")
    m2d = np.asarray(make_mask("poisson", (SIZE, SIZE), accel=4, center=0.08, seed=2), dtype=np.float32)
    vol = x[:, 0].permute(1, 2, 0)[None, None].contiguous()
    inf = ScoreInferer("mri", mask=m2d, opts=opts, batch_size=1, spatial_axis=2)
    with torch.inference_mode():
        rec.put("inferer/mri/volume_5d", inf(vol, networks[False]))


# Classical methods not run: none at this size (BM3D takes about 1 s on a 64 x 64 slice, single-threaded).
SKIP_METHODS: tuple[str, ...] = ()


def pin_bm3d_threads() -> None:
    """BM3D single-threaded. The bm3d package's default profile has ``num_threads = 0`` (auto), and its own
    comment says that results then vary from call to call (the order of the aggregation's float additions):
    medscore's ``denoise_bm3d`` with the default profile differed by up to 5e-7 between two runs, and between
    two calls in one process, whatever OMP_NUM_THREADS says. With one thread it is bit-reproducible. This
    changes the third-party library's setting only, not medscore's code."""
    try:
        import bm3d.profiles
    except ImportError:
        return
    bm3d.profiles.BM3DProfile.num_threads = 1


def section_bench(rec: Recorder) -> None:
    import torch

    TASKS = resolve("TASKS", "specs")
    degrade = resolve("degrade", "specs")
    classical_methods = resolve("classical_methods", "specs")
    medscore_method = resolve("medscore_method", "specs")
    run_method = resolve("run_method", "specs")
    training_axial_slices = resolve("training_axial_slices", "specs")
    get_task = resolve("get_task", "tasks")
    load_prior = resolve("load_prior", "api")
    SamplerOptions = resolve("SamplerOptions", "solvers")
    try:
        preset_key = resolve("preset_key", "tuning")
    except ImportError:
        preset_key = None
    ref = torch.from_numpy(test_slices(1))[:, None]
    val = torch.from_numpy(val_slices())[:, None]
    train = training_axial_slices()[:, :, ROWS, COLS].contiguous()  # same size as the test slice
    rec.put("bench/ref", ref)
    rec.put("bench/val", val)
    rec.put("bench/train_slices_sha256", sha256(train.numpy()))
    priors = {flag: load_prior(None, "cpu", complex_data=flag) for flag in (False, True)}
    rec.put("bench/specs", list(TASKS))
    for name, spec in TASKS.items():
        reseed()
        key = f"bench/{name}"
        task = get_task(spec.kind)
        rec.put(f"{key}/spec", dataclasses.asdict(spec))
        prob = degrade(spec, ref, seed=SEED)
        vprob = degrade(spec, val, seed=SEED + 1000)
        for pname, p in (("problem", prob), ("val_problem", vprob)):
            rec.put(f"{key}/{pname}/y", p.y)
            rec.put(f"{key}/{pname}/baseline", p.baseline)
            rec.put(f"{key}/{pname}/mask", p.mask)
            rec.put(f"{key}/{pname}/noise_std", p.noise_std)
            smaps = getattr(p.op, "smaps", None)
            if smaps is not None:
                rec.put(f"{key}/{pname}/smaps", smaps)
            true_smaps = getattr(p, "true_smaps", None)
            if true_smaps is not None:
                rec.put(f"{key}/{pname}/true_smaps", true_smaps)
        if preset_key is not None:
            rec.put(f"{key}/preset_key", preset_key(spec, prob))
        fastmri = bool(getattr(task, "report_fastmri", False))
        methods = classical_methods(spec, vprob, None if task.complex_data else train)
        runs: list[tuple[str, Callable]] = [(m, fn) for m, fn in methods.items() if m not in SKIP_METHODS]
        prior = priors[bool(task.complex_data)]
        solver_methods = list(task.methods) if len(task.methods) > 1 else [task.methods[0]]
        for dm in solver_methods:
            opts = SamplerOptions(preset="fast", seed=SEED, precision="fp32")
            runs.append((f"medscore {dm}", medscore_method(spec, prior.model, opts, denoise_method=dm)))
        rec.put(f"{key}/methods", [m for m, _ in runs])  # full labels, with the tuned parameters
        for mname, fn in runs:
            r = run_method(fn, prob, fastmri)
            mk = f"{key}/method/{_method_key(mname, [m for m, _ in runs])}"
            rec.put(f"{mk}/estimate", r.estimate)
            rec.put(f"{mk}/psnr", r.psnr)
            rec.put(f"{mk}/ssim", r.ssim)
            rec.put(f"{mk}/nmse", r.nmse)
            rec.put(f"{mk}/nfe", r.nfe)
            if getattr(r, "fastmri", None):
                rec.put(f"{mk}/fastmri", r.fastmri)


def _method_key(label: str, labels: list[str]) -> str:
    """``TV-CS (lam 0.003)`` -> ``TV-CS``: a tuned parameter that changes shows as a difference of the ``methods``
    label and of the estimate, not as two missing keys (the full label when the short one is ambiguous)."""
    short = re.sub(r"\s*\(.*\)$", "", label)
    return short if sum(re.sub(r"\s*\(.*\)$", "", m) == short for m in labels) == 1 else label


def section_tuning(rec: Recorder) -> None:
    """``medscore tune``'s loop on the validation crops: one cheap candidate (the grid's first, 4 levels) on an MRI
    and an inpainting spec, and the presets ``choose_presets`` makes of those trials."""
    import torch

    default_candidates = resolve("default_candidates", "tuning")
    run_trials = resolve("run_trials", "tuning")
    choose_presets = resolve("choose_presets", "tuning")
    load_prior = resolve("load_prior", "api")
    cands = default_candidates()
    rec.put("tuning/default_candidates", [dataclasses.asdict(c) for c in cands])
    rec.put("tuning/default_candidates/nfe", [c.nfe() for c in cands])
    cand = dataclasses.replace(cands[0], num_levels=4)
    val = torch.from_numpy(val_slices())[:, None]
    model = load_prior(None, "cpu").model
    trials = run_trials(model, val, ["mri-1d-8x", "inpaint-70"], [cand], log=lambda _m: None, seed=1)
    for t in trials:
        rec.put(f"tuning/trial/{t.task}", {"psnr": t.psnr, "ssim": t.ssim, "nfe": t.nfe, "key": t.key})
    chosen = choose_presets(trials, {"fast": 20})
    rec.put("tuning/choose_presets", {k: {f: v for f, v in p.to_dict().items()} for k, p in chosen.items()})


def section_presets(rec: Recorder) -> None:
    SamplerOptions = resolve("SamplerOptions", "solvers")
    presets_of = resolve("presets_of", "presets")
    task_names = resolve("task_names", "tasks")
    load_prior = resolve("load_prior", "api")
    for flag in (False, True):
        model = load_prior(None, "cpu", complex_data=flag).model
        for preset in ("fast", "default"):
            for task in [*task_names(), "mri-dense", "inpaint-hole", "sample"]:
                p = SamplerOptions(preset=preset).resolve(task, presets_of(model))
                d = {k: v for k, v in p.to_dict().items() if k != "note"}
                rec.put(f"presets/{'complex' if flag else 'magnitude'}/{preset}/{task}", d)
                rec.put(f"presets/{'complex' if flag else 'magnitude'}/{preset}/{task}/nfe", p.nfe())


def record(out: Path, threads: int, sections: list[str], verbose: bool = False) -> int:
    import torch

    torch.set_num_threads(threads)
    pin_bm3d_threads()
    import medscore

    print(f"medscore from {medscore.__file__}; {threads} threads")
    rec = Recorder(verbose)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medscore-snapshot-") as tmpdir:
        tmp = Path(tmpdir)
        cli: Cli | None = None
        for section in sections:
            t0 = time.perf_counter()
            reseed()
            try:
                if section in ("cli", "kspace"):
                    cli = cli or Cli(threads)
                    (section_cli if section == "cli" else section_kspace)(rec, cli, tmp)
                else:
                    {"api": section_api, "inferer": section_inferer, "bench": section_bench,
                     "tuning": section_tuning, "presets": section_presets}[section](rec)
            except Exception as exc:  # noqa: BLE001  (record the rest; the failure is a key, and exit 2)
                traceback.print_exc()
                rec.errors[section] = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
                rec.put(f"errors/{section}", rec.errors[section])
            print(f"  {section}: {time.perf_counter() - t0:.1f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **rec.arrays)
    meta = {
        "medscore_file": medscore.__file__,
        "threads": threads,
        "versions": {name: _version(name) for name in ("medscore", "torch", "numpy", "monai", "scipy", "skimage",
                                                       "nibabel", "h5py", "sigpy", "bm3d", "typer")},
        "python": sys.version.split()[0],
        "resolved": dict(sorted(RESOLVED.items())),
        "errors": rec.errors,
        "arrays": {k: {"sha256": sha256(a), "dtype": a.dtype.str, "shape": list(a.shape)}
                   for k, a in sorted(rec.arrays.items())},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(rec.arrays)} arrays -> {out} and {out.with_suffix('.json')} in {time.perf_counter() - t_all:.1f} s")
    if rec.errors:
        print(f"FAILED sections: {', '.join(rec.errors)}")
        return 2
    return 0


def _version(name: str) -> str | None:
    try:
        return getattr(importlib.import_module(name), "__version__", "?")
    except ImportError:
        return None


# --------------------------------------------------------------------------------------------------- compare


def compare(a_path: Path, b_path: Path) -> int:
    a, b = np.load(a_path, allow_pickle=False), np.load(b_path, allow_pickle=False)
    _compare_settings(a_path.with_suffix(".json"), b_path.with_suffix(".json"))
    keys = sorted(set(a.files) | set(b.files))
    bad = 0
    width = max((len(k) for k in keys), default=0)
    for k in keys:
        if k not in a.files or k not in b.files:
            print(f"{k:<{width}}  MISSING in {'A' if k not in a.files else 'B'}")
            bad += 1
            continue
        x, y = a[k], b[k]
        if x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes():
            print(f"{k:<{width}}  identical")
            continue
        bad += 1
        print(f"{k:<{width}}  DIFFERENT  {_difference(x, y)}")
    print(f"{len(keys) - bad} of {len(keys)} keys bit-identical; {bad} differ or are missing")
    return 1 if bad else 0


def _compare_settings(a_json: Path, b_json: Path) -> None:
    """Notes (not failures) on what the two records ran with: threads and library versions differing explain
    differences; the modules names were found in are expected to differ between layouts."""
    if not (a_json.is_file() and b_json.is_file()):
        return
    ma, mb = json.loads(a_json.read_text()), json.loads(b_json.read_text())
    print(f"A: medscore from {ma.get('medscore_file')}\nB: medscore from {mb.get('medscore_file')}")
    for field in ("threads", "python", "versions"):
        if ma.get(field) != mb.get(field):
            print(f"NOTE: {field} differ: A {ma.get(field)} / B {mb.get(field)}")
    ra, rb = ma.get("resolved", {}), mb.get("resolved", {})
    for k in sorted(set(ra) | set(rb)):
        if ra.get(k) != rb.get(k):
            print(f"note: {k} resolved from {ra.get(k)} in A, {rb.get(k)} in B")


def _difference(x: np.ndarray, y: np.ndarray) -> str:
    if x.shape != y.shape:
        return f"shape {x.shape} vs {y.shape} (dtype {x.dtype} vs {y.dtype})"
    if x.dtype.kind in "biufc" and y.dtype.kind in "biufc":
        xx = x.astype(np.complex128 if "c" in (x.dtype.kind + y.dtype.kind) else np.float64)
        yy = y.astype(xx.dtype)
        d = np.abs(xx - yy)
        nan = np.isnan(d)
        both_nan = np.isnan(np.abs(xx)) & np.isnan(np.abs(yy))
        d = np.where(both_nan, 0.0, d)
        note = f" dtype {x.dtype} vs {y.dtype}" if x.dtype != y.dtype else ""
        if (nan & ~both_nan).any():
            note += f" NaN in one only at {int((nan & ~both_nan).sum())} entries"
        return f"max |diff| = {float(np.nanmax(d)) if d.size else 0.0:.6g}{note}"
    if x.dtype.kind == "U" and y.dtype.kind == "U" and x.ndim == 0:
        s, t = str(x), str(y)
        i = next((i for i, (c, e) in enumerate(zip(s, t)) if c != e), min(len(s), len(t)))
        return f"strings differ at char {i}: ...{s[max(0, i - 30):i + 50]!r} vs ...{t[max(0, i - 30):i + 50]!r}"
    return f"dtype {x.dtype} vs {y.dtype}: contents differ"


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record a snapshot (OUT.npz and OUT.json)")
    r.add_argument("out", type=Path)
    r.add_argument("--threads", type=int, default=1,
                   help="torch / BLAS threads, here and in the CLI subprocesses (1: with 2 on a 2-core machine that "
                        "is busy, OpenMP waits made single solves 20x slower)")
    r.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    r.add_argument("-v", "--verbose", action="store_true", help="print each key with the seconds it took")
    c = sub.add_parser("compare", help="compare two snapshots; exit 1 on any difference or missing key")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "compare":
        return compare(args.a, args.b)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # for the subprocesses
        os.environ[k] = str(args.threads)
    return record(args.out, args.threads, sections, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
