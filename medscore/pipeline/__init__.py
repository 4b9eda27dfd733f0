"""File-level solvers as one streaming volume pipeline (see :mod:`medscore.reconstruct` for conventions).

``volume`` (the batch loop into preallocated outputs), ``memory`` (``batch_size="auto"``), ``outputs``
(output naming, pre-flight checks, writing), ``inputs`` (masks, k-space, coil maps), ``job`` (one scan file),
``files`` (MRI, inpainting, denoising of scans), ``kspace`` and ``multicoil`` (measured single- and multi-coil
k-space) and ``fastmri`` (their outputs: complex .npy, fastMRI .h5, JSON sidecar).
"""

from __future__ import annotations

from .files import denoise_file, inpaint_file, reconstruct_file
from .inputs import is_kspace_file, load_kspace, load_mask, open_kspace, open_smaps
from .job import RunReport, ScanJob, slice_seed
from .kspace import reconstruct_kspace_file
from .memory import auto_batch_size, resolve_batch_size
from .multicoil import reconstruct_multicoil_file
from .outputs import DERIVED, OutputPlan, plan_outputs
from .volume import Streamed, slices_of, stream, volume_of

__all__ = [
    "RunReport", "ScanJob", "reconstruct_file", "inpaint_file", "denoise_file", "reconstruct_kspace_file",
    "is_kspace_file", "load_kspace", "load_mask", "slices_of", "volume_of", "stream", "Streamed",
    "auto_batch_size", "resolve_batch_size", "OutputPlan", "plan_outputs", "DERIVED", "slice_seed",
    "reconstruct_multicoil_file", "open_kspace", "open_smaps",
]
