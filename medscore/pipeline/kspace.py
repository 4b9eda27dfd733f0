"""Measured single-coil k-space -> complex reconstruction (prior on real and imaginary parts) -> magnitude NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models import load_prior
from ..physics import SingleCoilMRI, validate_mask
from ..scanio import Scan
from ..solvers import SamplerOptions, SolverResult, reconstruct_mri
from ..train import resolve_device
from ..transforms import RobustScaleIntensity
from .inputs import load_kspace, load_mask
from .job import RunReport, batch_options, model_width
from .memory import resolve_batch_size
from .outputs import Panel, default_output, plan_outputs, write_outputs
from .volume import Progress, channel_magnitude, stream, volume_of

__all__ = ["reconstruct_kspace_file"]


def _zero_filled(op: SingleCoilMRI, k: np.ndarray, m_t: torch.Tensor, chunk: int) -> np.ndarray:
    """|A^+ y| of every slice (N, H, W), computed ``chunk`` slices at a time."""
    zf = np.empty(k.shape, dtype=np.float32)
    for start in range(0, len(k), chunk):
        y = torch.from_numpy(k[start:start + chunk, None]).to(m_t.device) * m_t
        zf[start:start + chunk] = torch.linalg.vector_norm(op.A_dagger(y), dim=1).cpu().numpy()
    return zf


def reconstruct_kspace_file(kspace: str | Path, mask: str | Path | np.ndarray | None, *, model=None,
                            out: str | Path | None = None, opts: SamplerOptions | None = None,
                            batch_size: int | str = 4, device: str = "auto", progress: Progress | None = None) -> RunReport:
    """Reconstruct measured single-coil k-space (complex image, prior on real and imaginary parts).

    ``mask`` None takes the sampled locations from the non-zero k-space entries. There is no reference,
    so no metrics. The output is the magnitude image (H, W, N) with an identity affine (k-space files carry
    no patient geometry). ``batch_size``: slices per solver call, or ``"auto"``.
    """
    dev = resolve_device(device)
    prior = load_prior(model, dev)
    k = load_kspace(kspace)
    n, shape = len(k), k.shape[1:]
    m = load_mask(mask, shape) if mask is not None else validate_mask((np.abs(k) > 0).any(0).astype(np.float32), shape)
    m_t = torch.from_numpy(np.array(np.broadcast_to(m, shape), dtype=np.float32)).to(dev)  # a writable copy
    op = SingleCoilMRI(m_t, real_input=False)
    opts = opts or SamplerOptions()
    plan = plan_outputs(default_output(kspace, out, "medscore"), kspace, mask)
    bs = resolve_batch_size(batch_size, n, shape, dev, model_width(prior), opts.n_samples(), channels=2)
    zf = _zero_filled(op, k, m_t, bs)
    scale = RobustScaleIntensity(0.0, prior.percentiles[1]).scale_of(zf)[1]  # magnitude scale; k-space admits no offset

    def solve(sl: slice, cb) -> SolverResult:
        y = torch.from_numpy(k[sl][:, None]).to(dev) * m_t
        return reconstruct_mri(prior.model, y / scale, m_t, batch_options(opts, sl), real_image=False, callback=cb)

    res = stream(n, shape, solve, bs, progress, reduce=channel_magnitude)
    geometry = Scan(np.empty((*shape, n), dtype=np.float32), np.eye(4), None, "kspace", None)
    volumes = {"output": volume_of(res.mean * scale, 2, geometry.data.shape),
               "zerofilled": volume_of(zf, 2, geometry.data.shape)}
    if res.std is not None:
        volumes["std"] = volume_of(res.std * scale, 2, geometry.data.shape)
    mid = n // 2
    panel = Panel([zf[mid] / scale, volumes["output"][..., mid] / scale], ["zero-filled", "medscore"])
    report = RunReport("mri-kspace", nfe=res.nfe, seconds=res.seconds, slices=n)
    report.outputs.update(write_outputs(geometry, plan, volumes, panel))
    return report
