"""The task registry: one small object per inverse problem, looked up by name.

    >>> from medscore.tasks import get_task
    >>> mri = get_task("mri")                       # doctest: +SKIP
    >>> prob = mri.degrade(spec, ref, seed=0)       # doctest: +SKIP
    >>> res = mri.solve_problem(model, prob, opts)  # doctest: +SKIP

``mri`` (single-coil accelerated MRI), ``inpaint``, ``denoise`` and ``mri-multicoil`` (simulated multi-coil
acquisitions, ESPIRiT coil maps) register themselves on import; a new
task is one file with a ``@register_task`` class, imported below (see ``docs/design.md``).
"""

from __future__ import annotations

from .base import (TASKS, ImageStack, KSpaceStack, Method, Problem, SliceReader, Stack, StackSolve, StackSolver, Task,
                   TaskInputs, TaskSpec, batch_of, get_task, per_image, register_task, task_names, volume_options)
from .mri import MRIInputs, MRITask
from .inpaint import InpaintInputs, InpaintTask
from .denoise import DenoiseInputs, DenoiseTask
from .multicoil import MultiCoilInputs, MultiCoilSpec, MultiCoilTask

__all__ = [
    "reconstruct_mri", "inpaint", "denoise", "TASKS", "Task", "TaskSpec", "Problem", "Method", "StackSolve",
    "StackSolver", "register_task", "get_task",
    "task_names", "per_image", "batch_of", "MRITask", "InpaintTask", "DenoiseTask", "MultiCoilTask", "MultiCoilSpec",
    "TaskInputs", "MRIInputs", "InpaintInputs", "DenoiseInputs", "MultiCoilInputs", "ImageStack", "KSpaceStack",
    "SliceReader", "Stack", "volume_options",
]


#: the tensor-level solvers of the three image tasks, under their historical names
reconstruct_mri = get_task("mri").solve
inpaint = get_task("inpaint").solve
denoise = get_task("denoise").solve
