"""The benchmark's written results: the machine line, ``benchmarks.md`` and the JSON file with every number."""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path

import torch

from .benchmark import TaskTable

__all__ = ["machine", "results_json", "write_markdown", "write_json"]


def machine() -> str:
    """One line describing this machine (CPU count, torch, device)."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {platform.system()}, {torch.get_num_threads()} torch threads, {dev}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def results_json(tables: list[TaskTable]) -> dict:
    out = {}
    for t in tables:
        out[t.task] = {"label": t.label, "best_classical": t.best_classical(), "methods": {
            k: {"psnr": [float(v) for v in r.psnr], "ssim": [float(v) for v in r.ssim],
                "nmse": [float(v) for v in r.nmse],
                **({"hfen": [float(v) for v in r.hfen]} if r.hfen is not None else {}),
                "seconds_per_slice": r.seconds_per_slice, "nfe": r.nfe,
                **({"fastmri_volume": r.fastmri} if r.fastmri else {})} for k, r in t.results.items()}}
    return out


def write_markdown(tables: list[TaskTable], path: Path, command: str, extra: str = "", preamble: str = "") -> Path:
    """docs/benchmarks.md-style table: mean +- std over slices, seconds per slice, NFE; targets checked. Tasks with
    fastMRI-convention metrics get two more columns: PSNR and SSIM of the slices as one volume."""
    from ..io.atomic import atomic_path

    lines = ["# Benchmarks", "", f"Command: `{command}`  ", f"Date: {_dt.date.today().isoformat()}  ",
             f"Machine: {machine()}", "",
             preamble]
    for t in tables:
        fm = " fastMRI PSNR dB (volume) | fastMRI SSIM |" if t.fastmri else ""
        lines += [f"### {t.label}", "", f"| method | PSNR dB | SSIM | NMSE | s/slice | NFE |{fm}",
                  "|---|---|---|---|---|---|" + "---|---|" * bool(fm)]
        best = t.best_classical()
        for k, r in t.results.items():
            mark = " (best classical)" if k == best else ""
            lines.append(f"| {k}{mark} | {r.psnr.mean():.2f} ± {r.psnr.std(ddof=1) if len(r.psnr) > 1 else 0:.2f} | "
                         f"{r.ssim.mean():.4f} ± {r.ssim.std(ddof=1) if len(r.ssim) > 1 else 0:.4f} | "
                         f"{r.nmse.mean():.4f} | {r.seconds_per_slice:.2f} | {r.nfe} |"
                         + (f" {r.fastmri['psnr']:.2f} | {r.fastmri['ssim']:.4f} |" if t.fastmri and r.fastmri else ""))
        lines.append("")
    lines.append(extra)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def write_json(tables: list[TaskTable], path: Path, meta: dict) -> Path:
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "results": results_json(tables)}, indent=1))
    return path
