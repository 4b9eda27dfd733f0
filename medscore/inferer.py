"""``ScoreInferer``: medscore's posterior solvers behind MONAI's ``Inferer`` interface.

``inferer(inputs, network)`` takes images on the model's [0, 1] scale (as ``RobustScaleIntensityd``
leaves them): a batch of slices (B, 1, H, W), or channel-first volumes (B, 1, X, Y, Z) that are cut
along ``spatial_axis`` and streamed through the solver ``batch_size`` slices at a time (the same engine,
batching and seeds as ``medscore.reconstruct``, so results match the file-level functions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from monai.inferers import Inferer

from .errors import InputError
from .physics import SingleCoilMRI, estimate_noise_std, make_mask
from .pipeline.inputs import load_mask
from .pipeline.job import batch_options
from .pipeline.memory import resolve_batch_size
from .pipeline.volume import stream
from .solvers import SamplerOptions, SolverResult, denoise, inpaint, reconstruct_mri

__all__ = ["ScoreInferer", "TASKS", "network_width"]

TASKS = ("mri", "inpaint", "denoise")
MaskLike = str | Path | np.ndarray | torch.Tensor | None


def network_width(network: Any) -> int:
    """Output channels of the network's first convolution (its ``ngf``; 64 when it has none)."""
    modules = network.modules() if isinstance(network, torch.nn.Module) else ()
    return next((int(m.out_channels) for m in modules if isinstance(m, torch.nn.Conv2d)), 64)


class ScoreInferer(Inferer):
    """Posterior mean of a score prior for ``task`` = ``mri`` | ``inpaint`` | ``denoise``.

    ``mask``: for ``mri`` the k-space mask ((W,) lines or (H, W), an array or a .npy path; ``None``
    draws ``mask_pattern`` at ``accel`` for the slice size, seeded by ``mask_seed``), for ``inpaint``
    the known pixels (1 = known). ``noise_std`` (denoise; ``None`` = estimated) is on the [0, 1] scale.
    ``opts`` are the sampler options; ``batch_size`` an int or ``"auto"``.
    """

    def __init__(self, task: str = "mri", mask: MaskLike = None, opts: SamplerOptions | None = None, *,
                 noise_std: float | None = None, method: str = "tweedie", batch_size: int | str = 4,
                 spatial_axis: int = 2, mask_pattern: str = "random", accel: float = 4.0, center: float = 0.08,
                 mask_seed: int = 0) -> None:
        if task not in TASKS:
            raise InputError(f"unknown task {task!r}: choose from {', '.join(TASKS)}")
        if task == "inpaint" and mask is None:
            raise InputError("the inpaint task needs a mask of known pixels")
        self.task, self.mask, self.opts = task, mask, opts or SamplerOptions()
        self.noise_std, self.method, self.batch_size, self.spatial_axis = noise_std, method, batch_size, spatial_axis
        self.mask_spec = (mask_pattern, accel, center, mask_seed)

    def slice_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The (H, W) mask for slices of ``shape``."""
        if self.mask is None:
            pattern, accel, center, seed = self.mask_spec
            return load_mask(make_mask(pattern, shape, accel, center, seed), shape)
        mask = self.mask.detach().cpu().numpy() if isinstance(self.mask, torch.Tensor) else self.mask
        return load_mask(mask, shape)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Estimates of ``inputs`` (same shape); ``kwargs['progress']`` may take ``(slices_done, total)``."""
        if inputs.ndim == 4:
            return self._solve_stack(inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs, network, **kwargs)
        if inputs.ndim != 5:
            raise InputError(f"ScoreInferer expects (B, 1, H, W) or (B, 1, X, Y, Z), got {tuple(inputs.shape)}")
        x = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        out = torch.empty_like(x)
        axis = self.spatial_axis + 2
        for b in range(x.shape[0]):
            stack = x[b].movedim(axis - 1, 0)  # (N, 1, H, W): slices along the axis, stored order
            out[b] = self._solve_stack(stack, network, **kwargs).movedim(0, axis - 1)
        return out

    def _solve_stack(self, stack: torch.Tensor, network: Callable[..., Any], progress=None) -> torch.Tensor:
        if stack.shape[1] != 1:
            raise InputError(f"ScoreInferer expects one image channel, got {stack.shape[1]}")
        slices = stack[:, 0].detach().cpu().float().numpy()
        n, shape = len(slices), slices.shape[1:]
        solve = self._batch_solver(slices, network, stack.device)
        ngf = network_width(network)
        chains = self.opts.n_samples() if self.task != "denoise" or self.method != "tweedie" else 1
        bs = resolve_batch_size(self.batch_size, n, shape, stack.device, ngf, chains)
        res = stream(n, shape, solve, bs, progress)
        return torch.from_numpy(res.mean[:, None]).to(stack.device)

    def _batch_solver(self, slices: np.ndarray, network, device: torch.device) -> Callable[[slice, Any], SolverResult]:
        """The per-batch solver call for this task (the same calls as ``medscore.reconstruct``)."""
        opts, shape = self.opts, slices.shape[1:]
        batch = lambda sl: torch.from_numpy(slices[sl][:, None]).to(device)  # noqa: E731
        if self.task == "denoise":
            sigma = float(self.noise_std) if self.noise_std is not None else estimate_noise_std(slices[:, None])
            if not np.isfinite(sigma) or sigma <= 0:
                raise InputError(f"noise std must be a finite number > 0, got {sigma}: pass noise_std")
            return lambda sl, cb: denoise(network, batch(sl), sigma, batch_options(opts, sl), method=self.method, callback=cb)
        m = torch.from_numpy(self.slice_mask(shape)).to(device)
        if self.task == "inpaint":
            return lambda sl, cb: inpaint(network, batch(sl) * m, m, batch_options(opts, sl), callback=cb)
        op = SingleCoilMRI(m, real_input=True)
        return lambda sl, cb: reconstruct_mri(network, op.A(batch(sl)), m, batch_options(opts, sl), real_image=True, callback=cb)
