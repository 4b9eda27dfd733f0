"""Many scans, many processes: one front door of the file driver over a list of scans, shared out under ``torchrun``.

Each rank (``RANK`` of ``WORLD_SIZE``, set by ``torchrun``; one process otherwise) solves the scans ``rank``,
``rank + world``, ... on its own device (``cuda:LOCAL_RANK`` when the device is CUDA), writing into a staging folder
of its own inside the output folder. When every rank is done they agree (one all-reduce) on whether any scan failed:
if none did, each rank moves its files into the output folder and rank 0 writes ``medscore_runs.json`` with every
scan's report (gathered from all ranks); if one did, every staging folder is removed, nothing is moved, and the run
fails with that scan's one-line error. A scan's result does not depend on the rank that solves it (per-slice seeds),
so the outputs are those of one process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InputError, MedscoreError
from ..io.atomic import atomic_path
from ..tasks import get_task
from .files import denoise_file, inpaint_file, reconstruct_path
from .outputs import RunReport, default_output

__all__ = ["FRONT_DOORS", "folder_of_scans", "list_scans", "solve_many", "rank_and_world", "RUNS_FILE"]

#: the front door of each task that runs over many scans
FRONT_DOORS: dict[str, Callable[..., RunReport]] = {"mri": reconstruct_path, "inpaint": inpaint_file,
                                                     "denoise": denoise_file}
RUNS_FILE = "medscore_runs.json"
_SCAN_SUFFIXES = (".nii", ".nii.gz", ".npy", ".h5")


def _is_scan_file(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(_SCAN_SUFFIXES) and not p.name.startswith(".")


def folder_of_scans(p: Path) -> list[Path]:
    """The scans of a folder that holds several (its NIfTI, .npy and .h5 files and its sub-folders, in name order);
    [] for a file or a DICOM series folder (which holds neither)."""
    if not p.is_dir():
        return []
    return sorted(f for f in p.iterdir() if _is_scan_file(f) or (f.is_dir() and not f.name.startswith(".")))


def list_scans(paths: Sequence[str | Path]) -> list[Path]:
    """The scans named by ``paths``: files, DICOM series folders, and folders of scans (:func:`folder_of_scans`)."""
    scans: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"scan not found: {p}")
        scans += folder_of_scans(p) or [p]
    return scans


def check_headers(scans: list[Path]) -> None:
    """Every NIfTI and .npy scan has a readable header: a broken file fails the run before any scan is solved."""
    from ..io.scans import peek_shape

    for scan in scans:
        if scan.is_file() and scan.name.lower().endswith((".nii", ".nii.gz", ".npy")) and peek_shape(scan) is None:
            raise InputError(f"{scan.name}: cannot read its header (not a valid NIfTI or .npy file); nothing was "
                             "solved")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``torchrun``'s ``RANK`` / ``WORLD_SIZE``; 0, 1 alone)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _targets(task: str, scans: list[Path], out_dir: Path) -> list[Path]:
    """Every scan's output in ``out_dir``; two scans with one output name, or an output that exists, are refused."""
    names = [default_output(s, None, get_task(task).output_suffix).name for s in scans]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"two scans would write the same output {dupes[0]}: rename one of them")
    targets = [out_dir / n for n in names]
    taken = [t for t in [*targets, out_dir / RUNS_FILE] if t.exists()]
    if taken:
        raise InputError(f"{taken[0]} exists: choose another output folder (outputs never overwrite)")
    return targets


def _device(device: str, world: int) -> str:
    """This rank's device: its own GPU under ``torchrun`` when the device is CUDA."""
    if world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def _init_group(world: int, device: str) -> bool:
    """The process group of a torchrun launch, unless one exists; whether this call created it."""
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return True
    return False


def _solve_share(task: str, mine: list[tuple[Path, Path]], staging: Path, run: dict[str, Any],
                 on_scan: Callable[[int, int, Path], None] | None) -> tuple[list[dict[str, Any]], str | None]:
    """This rank's scans into ``staging``; stops at the first failure and returns its one line."""
    reports: list[dict[str, Any]] = []
    for i, (scan, target) in enumerate(mine):
        if on_scan is not None:
            on_scan(i, len(mine), scan)
        try:
            rep = FRONT_DOORS[task](scan, out=staging / target.name, **run)
        except MedscoreError as exc:
            return reports, f"{scan.name}: {exc}"
        reports.append({"scan": str(scan), "output": str(target), "slices": rep.slices, "nfe": rep.nfe,
                        "seconds": round(rep.seconds, 3), "metrics": rep.metrics,
                        "outputs": sorted(p.name for p in rep.outputs.values())})
    return reports, None


def _agree(failure: str | None, world: int) -> str | None:
    """Any rank's failure, the same on every rank."""
    if world == 1:
        return failure
    failures: list[str | None] = [None] * world
    dist.all_gather_object(failures, failure)
    return next((f for f in failures if f is not None), None)


def _gather(reports: list[dict[str, Any]], world: int) -> list[dict[str, Any]]:
    if world == 1:
        return reports
    parts: list[list[dict[str, Any]]] = [[] for _ in range(world)]
    dist.all_gather_object(parts, reports)
    return sorted((r for part in parts for r in part), key=lambda r: r["scan"])


def _move_all(staging: Path, out_dir: Path) -> None:
    """Every staged file into ``out_dir`` (none may exist there: checked for all before any moves)."""
    files = sorted(staging.iterdir())
    taken = [out_dir / f.name for f in files if (out_dir / f.name).exists()]
    if taken:
        raise InputError(f"{taken[0]} appeared during the run: nothing was moved")
    for f in files:
        os.replace(f, out_dir / f.name)


def solve_many(task: str, scans: Sequence[str | Path], out_dir: str | Path, *, device: str = "auto",
               on_scan: Callable[[int, int, Path], None] | None = None, **run: Any) -> list[dict[str, Any]]:
    """Solve ``task`` (``mri``, ``inpaint``, ``denoise``) on every scan of ``scans`` (files and folders of scans,
    :func:`list_scans`) into the folder ``out_dir`` (``<scan>_<suffix>.nii.gz`` and side files), shared out over the
    ranks of ``torchrun`` (see the module docstring). ``run``: the front door's keywords (mask, model, opts, ...).
    Returns every scan's report (on every rank); ``on_scan(i, n, scan)`` is called before each of this rank's scans."""
    if task not in FRONT_DOORS:
        raise InputError(f"task {task!r} does not run over many scans: choose from {', '.join(FRONT_DOORS)}")
    found, out_dir = list_scans(scans), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} must be a folder for several scans")
    check_headers(found)
    targets = _targets(task, found, out_dir)
    rank, world = rank_and_world()
    dev = _device(device, world)
    created = _init_group(world, dev)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".medscore-rank{rank}-", dir=out_dir))
    try:
        mine = list(zip(found, targets))[rank::world]
        reports, failure = _solve_share(task, mine, staging, {**run, "device": dev}, on_scan)
        failure = _agree(failure, world)
        if failure is not None:
            raise MedscoreError(failure)
        _move_all(staging, out_dir)
        everything = _gather(reports, world)
        if rank == 0:
            with atomic_path(out_dir / RUNS_FILE) as tmp:
                tmp.write_text(json.dumps({"task": task, "world_size": world, "scans": everything}, indent=2))
        return everything
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created:  # left to interpreter exit, gloo's threads sometimes abort the process (exit -6) after the run
            dist.destroy_process_group()
