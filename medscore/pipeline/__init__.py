"""The one file driver: scan or k-space file -> scaled stack -> task -> streamed batches -> unscaled -> files.

``driver`` (:func:`solve_scan`, :func:`open_inputs`: every file input opened before the task sees arrays),
``scan_source`` and ``kspace_source`` (the two kinds of input file: open, scale, stack, write), ``files`` (the front
doors, one per task and kind of input), ``stream`` (batches into preallocated outputs, per-slice seeds), ``memory``
(``batch_size="auto"``), ``outputs`` (output naming, pre-flight checks, writing) and ``fastmri`` (the outputs of
k-space runs: complex .npy, fastMRI .h5, JSON sidecar).
"""

from __future__ import annotations

from .driver import Source, open_inputs, solve_scan
from .files import (denoise_file, inpaint_file, reconstruct_file, reconstruct_kspace_file, reconstruct_multicoil_file,
                    reconstruct_path)
from .kspace_source import KSpaceSource
from .memory import auto_batch_size, resolve_batch_size
from .outputs import DERIVED, OutputPlan, RunReport, plan_outputs
from .scan_source import ScanSource
from .stream import Streamed, batch_options, slice_seed, slices_of, stream, volume_of

__all__ = [
    "solve_scan", "Source", "ScanSource", "KSpaceSource", "open_inputs", "RunReport", "reconstruct_file",
    "inpaint_file", "denoise_file", "reconstruct_kspace_file", "reconstruct_multicoil_file", "reconstruct_path",
    "slices_of", "volume_of",
    "stream", "Streamed", "auto_batch_size", "resolve_batch_size", "OutputPlan", "plan_outputs", "DERIVED",
    "slice_seed", "batch_options",
]
