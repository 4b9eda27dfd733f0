"""``batch_size="auto"``: as many slices per batch as free memory allows, conservatively.

Peak memory of a score-network forward pass grows with the batch as a constant times
pixels x feature channels (``ngf``) x chains. Measured for the bundled NCSN (ngf 32, inference mode,
CPU, 128 x 128 slices): ~31 MiB per slice, i.e. ~60 bytes per pixel and feature channel;
:data:`BYTES_PER_PIXEL_CHANNEL` doubles that for margin, and only half the free memory is used.
"""

from __future__ import annotations

import torch

from ..checks import available_memory, check_batch_size

__all__ = ["BYTES_PER_PIXEL_CHANNEL", "MAX_AUTO_BATCH", "MAX_AUTO_BATCH_CPU", "VOLUME_BYTES_PER_PIXEL",
           "COIL_BYTES_PER_PIXEL", "free_memory", "slice_bytes", "volume_bytes", "auto_batch_size",
           "resolve_batch_size", "model_width"]

BYTES_PER_PIXEL_CHANNEL = 128
MAX_AUTO_BATCH = 32
# On CPU larger batches bring no throughput (one slice's convolutions already use every core) and their working
# set falls out of cache: 256 x 256 slices ran at 10 s per slice in batches of 2 against 18-19 s in the batches of
# 4-8 that memory alone allowed (scripts/bench_volume.py, docs/benchmarks.md). GPUs take what memory allows.
MAX_AUTO_BATCH_CPU = 2
_FALLBACK_FREE = 2 << 30  # when free memory cannot be read: assume 2 GiB


def free_memory(device: torch.device) -> int:
    """Free bytes: ``torch.cuda.mem_get_info`` on CUDA; on CPU :func:`medscore.checks.available_memory` (psutil,
    /proc/meminfo), or 2 GiB when that cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = available_memory()
    return _FALLBACK_FREE if free is None else free


def slice_bytes(shape: tuple[int, int], ngf: int, chains: int, channels: int = 1) -> int:
    """Estimated peak bytes to solve one slice of ``shape`` (``channels`` = 2 for complex images)."""
    h, w = shape
    # the networks pad slices to a multiple of 4
    return BYTES_PER_PIXEL_CHANNEL * (h + 3) // 4 * 4 * ((w + 3) // 4 * 4) * max(1, ngf) * max(1, chains) * channels


#: bytes per pixel, chain and image channel that a coherent volume solve keeps for every slice besides the network's
#: working memory (the iterate, its denoised estimate, the measurements, the TV steps' buffers): measured 61 (peak RSS
#: 0.80 -> 0.93 GB from 8 to 32 slices of 256 x 256, docs/benchmarks.md), doubled for margin
VOLUME_BYTES_PER_PIXEL = 128
#: bytes per pixel and coil of multi-coil data held for the whole volume: k-space and maps, complex64
COIL_BYTES_PER_PIXEL = 16


def volume_bytes(n: int, shape: tuple[int, int], chains: int, channels: int = 1, coils: int = 0) -> int:
    """Estimated bytes that a coherent solve of ``n`` slices holds besides one network batch."""
    h, w = shape
    return n * h * w * (VOLUME_BYTES_PER_PIXEL * max(1, chains) * channels + COIL_BYTES_PER_PIXEL * coils)


def auto_batch_size(n: int, shape: tuple[int, int], device: torch.device, ngf: int, chains: int,
                    channels: int = 1, free: int | None = None) -> int:
    """Slices per batch in ``1..min(n, MAX_AUTO_BATCH)`` that fit in half the free memory (at most
    ``MAX_AUTO_BATCH_CPU`` on CPU)."""
    free = free_memory(device) if free is None else free
    fit = (free // 2) // max(1, slice_bytes(shape, ngf, chains, channels))
    cap = MAX_AUTO_BATCH if device.type == "cuda" else MAX_AUTO_BATCH_CPU
    return int(max(1, min(n, cap, fit)))


def resolve_batch_size(batch_size: int | str, n: int, shape: tuple[int, int], device: torch.device, ngf: int,
                       chains: int, channels: int = 1) -> int:
    """An int >= 1 as given (or as a string), or ``"auto"`` -> :func:`auto_batch_size`; else an InputError."""
    value = check_batch_size("batch_size", batch_size)
    if value == "auto":
        return auto_batch_size(n, shape, device, ngf, chains, channels)
    return int(value)


def model_width(meta: dict) -> int:
    """Feature channels of a model's first level (``ngf`` in its ``model.json``), for the memory estimate."""
    return int(meta.get("model", {}).get("ngf", 64))
