"""The learning rate of each training step: linear warm-up, then constant or a cosine decay.

A pure function of the step, so a resumed run follows the same schedule as an uninterrupted one. The
decay matters at the end of a run (or of a continued run): a constant rate leaves the weights noisy at
the scale the rate sets, and annealing it is the usual remedy (SGDR, Loshchilov & Hutter 2017). PyTorch's
``lr_scheduler`` classes keep state that would have to be saved with the optimizer; this does not.
"""

from __future__ import annotations

import math

from ..config import SCHEDULES

__all__ = ["SCHEDULES", "learning_rate"]


def learning_rate(step: int, *, lr: float, steps: int, warmup_steps: int, schedule: str = "constant",
                  lr_final: float = 0.0) -> float:
    """The rate of step ``step`` (0-based) of a run of ``steps`` steps.

    ``warmup_steps`` ramp it linearly up to ``lr``; after them ``"constant"`` keeps ``lr`` and ``"cosine"``
    follows half a cosine from ``lr`` to ``lr_final``, reached at the last step.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    span = max(1, steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * progress))
