"""``ScoreInferer``: medscore's posterior solvers behind MONAI's ``Inferer`` interface.

``inferer(inputs, network)`` takes images on the model's [0, 1] scale (as ``RobustScaleIntensityd``
leaves them): a batch of slices (B, 1, H, W), or channel-first volumes (B, 1, X, Y, Z) that are cut
along ``spatial_axis`` and streamed through the solver ``batch_size`` slices at a time (the same engine,
batching and seeds as ``medscore.pipeline``, so results match the file-level functions).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from monai.inferers import Inferer

from ..errors import InputError
from ..io.arrays import read_mask
from ..pipeline.memory import resolve_batch_size
from ..pipeline.stream import batch_options, stream
from ..solvers import SamplerOptions
from ..solvers.adapt import Adaptation, AdaptedPrior
from ..tasks import ImageStack, TaskInputs, get_task, task_names

__all__ = ["ScoreInferer", "TASKS", "network_width"]

TASKS = tuple(task_names())
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
    ``opts`` are the sampler options; ``batch_size`` an int or ``"auto"``; ``adapt`` (True or an ``Adaptation``):
    test-time adaptation of the network to each volume (``medscore.solvers.adapt``). Each task takes the settings it
    knows (those of its ``prepare_stack``), through the task registry (``medscore.tasks``).
    """

    def __init__(self, task: str = "mri", mask: MaskLike = None, opts: SamplerOptions | None = None, *,
                 noise_std: float | None = None, method: str = "tweedie", batch_size: int | str = 4,
                 spatial_axis: int = 2, mask_pattern: str = "random", accel: float = 4.0, center: float = 0.08,
                 mask_seed: int = 0, adapt: Adaptation | bool | None = None) -> None:
        self.solver_task = get_task(task)
        self.task, self.mask, self.opts = task, mask, opts or SamplerOptions()
        self.noise_std, self.method, self.batch_size, self.spatial_axis = noise_std, method, batch_size, spatial_axis
        self.mask_spec = (mask_pattern, accel, center, mask_seed)
        self.solver_task.check_inputs(self.task_inputs())
        self.adapt, self._asked = Adaptation.of(adapt), adapt
        if self.adapt is not None and not self.solver_task.adaptable:
            raise InputError(f"adapt needs a forward operator: {self.solver_task.label} has none")

    def task_inputs(self) -> TaskInputs:
        """The inferer's settings that its task takes (the fields of the task's ``inputs_type``)."""
        pattern, accel, center, seed = self.mask_spec
        mask = self.mask.detach().cpu().numpy() if isinstance(self.mask, torch.Tensor) else self.mask
        mask = read_mask(mask) if isinstance(mask, (str, Path)) else mask  # the inferer's one file input
        settings = {"mask": mask, "noise_std": self.noise_std, "method": self.method, "mask_pattern": pattern,
                    "accel": accel, "center": center, "mask_seed": seed}
        kind = self.solver_task.inputs_type
        accepted = {f.name for f in dataclasses.fields(kind)}
        return kind(**{name: value for name, value in settings.items() if name in accepted})

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
        prepared = self.solver_task.prepare_stack(ImageStack(slices), stack.device, self.opts, self.task_inputs())
        # one adapted copy per volume, with the network's own tuned settings when adapt=True
        net = network if self.adapt is None else AdaptedPrior(network, Adaptation.of(self._asked, network))
        bs = resolve_batch_size(self.batch_size, n, shape, stack.device, network_width(network), prepared.chains)
        res = stream(n, shape, lambda sl, cb: prepared.solve(net, sl, batch_options(self.opts, sl), cb), bs,
                     progress)
        return torch.from_numpy(res.mean[:, None]).to(stack.device)
