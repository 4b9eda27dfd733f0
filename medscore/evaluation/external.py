"""The external benchmark: real scans that are neither the training brains nor used for any choice of medscore's.

Each scan has validation slices (classical methods' parameters, and any setting of medscore's, are chosen on
them) and test slices (reported, never used for a choice). Scans come from packages installed on the machine,
never from the network at run time; a scan whose package is missing is skipped with a note:

* ``epi``: nibabel's example EPI (``example4d.nii.gz``, first frame, 2 x 2 x 2.2 mm, another subject, sequence
  and scanner), axial;
* ``inia19`` / ``inia19-coronal``: the INIA19 macaque T1 template brain (Rohlfing et al., Front Neuroinform 2012;
  ``inia19-t1-brain.nii.gz`` of Debian's ``mricron-data``, 0.5 mm, skull-stripped) block-averaged to 1 mm:
  a brain the prior has never seen, in two planes.

Tasks are those of :data:`medscore.evaluation.specs.TASKS`; metrics PSNR, SSIM and HFEN (so that a smooth cartoon
cannot hide behind PSNR). With BART installed, its ``pics`` (l1-wavelet and TV; ``bart ecalib`` maps for
multi-coil) joins the classical methods (:mod:`medscore.baselines.bart`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..baselines.bart import bart_available, ecalib, pics
from ..tasks import Method, Problem, TaskSpec
from .benchmark import Log, TaskTable, run_tasks
from ..solvers.adapt import Adaptation

__all__ = ["ExternalScan", "EXTERNAL_SCANS", "EXTERNAL_TASKS", "block_mean", "load_external", "load_external_volume",
           "available_scans", "bart_methods", "summary_lines", "write_external", "run_external"]

TEMPLATES = Path("/usr/share/mricron/templates")
EXTERNAL_TASKS = ["mri-1d-4x", "mri-1d-8x", "mc-poisson-vd-8x", "mc-1d-8x", "inpaint-70", "inpaint-box",
                  "denoise-0.05", "denoise-0.1"]


def _nibabel_epi() -> Path:
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"


@dataclass(frozen=True)
class ExternalScan:
    """One external scan: where it lies, how to cut it (``axis`` of the array, ``block`` averaging, 4D
    ``frame``) and its validation and test slice indices along ``axis``."""

    name: str
    label: str
    locate: Callable[[], Path]
    val: tuple[int, ...]
    test: tuple[int, ...]
    axis: int = 2
    block: int = 1
    frame: int = 0
    needs: str = ""  # how to install it, for the note when it is missing


EXTERNAL_SCANS: dict[str, ExternalScan] = {s.name: s for s in [
    ExternalScan("epi", "nibabel's example EPI (2 mm, axial)", _nibabel_epi, (7,), (10, 13, 16)),
    ExternalScan("inia19", "INIA19 macaque T1 brain (1 mm, axial)", lambda: TEMPLATES / "inia19-t1-brain.nii.gz",
                 (32,), (24, 40), block=2, needs="apt-get install mricron-data"),
    ExternalScan("inia19-coronal", "INIA19 macaque T1 brain (1 mm, coronal)",
                 lambda: TEMPLATES / "inia19-t1-brain.nii.gz", (50,), (40, 62), axis=1, block=2,
                 needs="apt-get install mricron-data"),
]}


def block_mean(vol: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k x k blocks of a 3D array (trailing partial blocks dropped): an exact k-times coarser grid.
    Written here because MONAI's resamplers interpolate; this is the averaging a coarser voxel does."""
    if k == 1:
        return vol
    s = [n // k * k for n in vol.shape]
    v = vol[: s[0], : s[1], : s[2]]
    return v.reshape(s[0] // k, k, s[1] // k, k, s[2] // k, k).mean(axis=(1, 3, 5))


def load_external_volume(scan: ExternalScan) -> tuple[torch.Tensor, np.ndarray]:
    """Every slice of the scan along its ``axis`` (N, 1, H, W) on the [0, 1] scale of the whole volume, and the
    volume's affine on its (block-averaged) grid."""
    import nibabel as nib

    from ..transforms import RobustScaleIntensity

    img = nib.load(str(scan.locate()))
    data = np.asarray(img.dataobj, dtype=np.float32)
    data = block_mean(data[..., scan.frame] if data.ndim == 4 else data, scan.block)
    scaled = RobustScaleIntensity(0.0, 99.5)(data)
    stack = torch.from_numpy(np.ascontiguousarray(np.moveaxis(scaled, scan.axis, 0)))[:, None]
    affine = np.asarray(img.affine, dtype=np.float64).copy()
    affine[:3, :3] *= scan.block
    return stack, affine


def load_external(scan: ExternalScan) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(test, validation) slices (N, 1, H, W) on the [0, 1] scale of the whole volume, and an affine for the
    test stack's NIfTI outputs."""
    stack, affine = load_external_volume(scan)
    return stack[list(scan.test)], stack[list(scan.val)], affine


def available_scans(names: list[str], log: Log) -> list[ExternalScan]:
    """The named scans whose files are on this machine (a note for each missing one)."""
    found = []
    for name in names:
        scan = EXTERNAL_SCANS[name]
        if scan.locate().exists():
            found.append(scan)
        else:
            log(f"skipping {name}: {scan.locate()} not found ({scan.needs or 'not installed'})")
    return found


def _bart_slices(p: Problem, lam: float, reg: str, maps: list[np.ndarray | None]) -> torch.Tensor:
    y = p.y.detach().cpu().numpy()
    out = [np.abs(pics(y[i], maps[i], lam, reg, iters=60)) for i in range(len(y))]
    return torch.from_numpy(np.stack(out).astype(np.float32))[:, None]


def _bart_maps(p: Problem) -> list[np.ndarray | None]:
    """``bart ecalib`` maps per slice for multi-coil data; None (one coil of sensitivity 1) for single-coil."""
    y = p.y.detach().cpu().numpy()
    return [ecalib(y[i]) if y.shape[1] > 1 else None for i in range(len(y))]


def bart_methods(spec: TaskSpec, val: Problem) -> dict[str, Method]:
    """BART ``pics`` (l1-wavelet and TV, lambda tuned on ``val`` by PSNR) for the MRI tasks; none without BART."""
    from .. import metrics as M

    if spec.kind not in ("mri", "mri-multicoil") or not bart_available():
        return {}
    methods: dict[str, Method] = {}
    val_maps = _bart_maps(val)
    for reg in ("l1-wavelet", "tv"):
        ref = val.ref[:, 0].numpy()
        scores = {lam: float(np.mean(M.psnr(ref, _bart_slices(val, lam, reg, val_maps)[:, 0].numpy())))
                  for lam in (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)}
        lam = max(scores, key=scores.get)  # type: ignore[arg-type]
        methods[f"BART pics {reg} (lam {lam:g})"] = lambda p, lam=lam, reg=reg: (
            _bart_slices(p, lam, reg, _bart_maps(p)), 0)
    return methods


def run_external(scans: list[ExternalScan], tasks: list[str], preset: str, *, model=None,
                 adapt: Adaptation | None = None, out_dir: Path | None = None, log: Log | None = None,
                 bart: bool = True) -> list[TaskTable]:
    """Every task on every scan's test slices (classical methods tuned on its validation slices); table names
    ``<scan>:<task>``. ``adapt`` adds medscore with test-time adaptation; ``bart`` adds BART's ``pics``."""
    log = log or (lambda _m: None)
    tables: list[TaskTable] = []
    for scan in scans:
        ref, val, affine = load_external(scan)
        log(f"{scan.label}: {len(ref)} test slice(s) {tuple(ref.shape[-2:])}")
        for t in run_tasks(tasks, ref, val, [preset], model=model, affine=affine, log=log, nearest=False,
                           denoise_methods=("tweedie",), adapt=adapt,
                           out_dir=None if out_dir is None else out_dir / scan.name,
                           baselines=bart_methods if bart else None):
            t.task, t.label = f"{scan.name}:{t.task}", f"{scan.label}: {t.label}"
            tables.append(t)
    return tables


def _row(name: str, r) -> str:
    sd = lambda a: float(a.std(ddof=1)) if len(a) > 1 else 0.0  # noqa: E731
    return (f"| {name} | {r.psnr.mean():.2f} ± {sd(r.psnr):.2f} | {r.ssim.mean():.4f} | {r.hfen.mean():.3f} | "
            f"{r.seconds_per_slice:.2f} | {r.nfe} |")


def summary_lines(tables: list[TaskTable]) -> list[str]:
    """One row per scan and task: the best classical method and medscore without and with adaptation (PSNR dB /
    SSIM / HFEN), and medscore's margins over the classical method and adaptation's own gain."""
    lines = ["| scan:task | best classical | PSNR / SSIM / HFEN | medscore | + adapt | over classical | adapt gain |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda r: f"{r.psnr.mean():.2f} / {r.ssim.mean():.3f} / {r.hfen.mean():.3f}"  # noqa: E731
    for t in tables:
        best = t.best_classical()
        plain = next((r for k, r in t.results.items() if k.startswith("medscore") and "adapt" not in k), None)
        adapted = next((r for k, r in t.results.items() if k.endswith("+ adapt")), None)
        if best is None or plain is None:
            continue
        b = t.results[best]
        top = max(plain.psnr.mean(), adapted.psnr.mean()) if adapted is not None else plain.psnr.mean()
        lines.append(f"| {t.task} | {best} | {fmt(b)} | {fmt(plain)} | {fmt(adapted) if adapted else '-'} | "
                     f"{top - b.psnr.mean():+.2f} dB | "
                     f"{(adapted.psnr.mean() - plain.psnr.mean()) if adapted else float('nan'):+.2f} dB |")
    return lines


def write_external(tables: list[TaskTable], path: Path, command: str, machine: str) -> Path:
    """``external.md``: the summary, then every method's PSNR (mean ± std over test slices), SSIM, HFEN (lower is
    better), seconds per slice and NFE, per scan and task."""
    import datetime as dt

    from ..io.atomic import atomic_path

    lines = ["# External benchmark", "", f"Command: `{command}`  ", f"Date: {dt.date.today().isoformat()}  ",
             f"Machine: {machine}", "", "PSNR and SSIM on the [0, 1] scale of each scan (99.5th percentile = 1); "
             "HFEN: high-frequency error norm (LoG 15 x 15, sigma 1.5), lower is better.", "", "## Summary", "",
             *summary_lines(tables), ""]
    for t in tables:
        lines += [f"### {t.label}", "", "| method | PSNR dB | SSIM | HFEN | s/slice | NFE |",
                  "|---|---|---|---|---|---|"]
        lines += [_row(k + (" (best classical)" if k == t.best_classical() else ""), r) for k, r in t.results.items()]
        lines.append("")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
