"""Large holes: inpainting starts from the biharmonic fill with the hole presets; scattered pixels from the mean."""

from __future__ import annotations

import numpy as np
import torch

from medscore.io.embedded import held_out
from medscore.evaluation.specs import TASKS, degrade
from medscore.baselines import inpaint_biharmonic
from medscore.metrics import psnr
from medscore.priors.store import load_prior
from medscore.solvers import SamplerOptions
from medscore.tasks import inpaint
from medscore.tasks.inpaint import InpaintTask


def _box_mask(h: int, w: int, side: int) -> torch.Tensor:
    m = torch.ones(1, 1, h, w)
    m[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side] = 0
    return m


def test_hole_warm_start_is_the_biharmonic_fill_and_keeps_known_pixels() -> None:
    """A plane is biharmonic, so its fill across a box hole is exact; the mean fill is not."""
    h, w = 40, 48
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    plane = (0.2 + 0.01 * yy + 0.005 * xx)[None, None]
    task = InpaintTask()
    op = task.operator(_box_mask(h, w, 20))
    y = op.A(plane)
    assert task.preset_key(op.mask) == "inpaint-hole"
    filled = task.warm_start(op, y, hole=True)
    known = op.mask.bool()
    assert torch.equal(filled[known], plane[known])  # known pixels bit for bit
    assert float((filled - plane).abs().max()) < 1e-4
    assert float((task.warm_start(op, y) - plane)[~known].abs().mean()) > 0.02  # the mean fill misses the slope


def test_regimes_scattered_pixels_against_holes_and_bands() -> None:
    """Random pixels (70 % missing) are scattered; a band of 10 missing rows, 90 % missing and a box are holes."""
    g = torch.Generator().manual_seed(0)
    task = InpaintTask()
    assert task.preset_key((torch.rand(1, 1, 151, 187, generator=g) >= 0.7).float()) == "inpaint"
    assert task.preset_key((torch.rand(1, 1, 151, 187, generator=g) >= 0.9).float()) == "inpaint-hole"
    band = torch.ones(1, 1, 64, 64)
    band[..., 27:37, :] = 0
    assert task.preset_key(band) == "inpaint-hole"
    assert task.preset_key(_box_mask(64, 64, 20)) == "inpaint-hole"


def test_bundled_prior_fills_a_central_box_no_worse_than_biharmonic() -> None:
    """The issue's box target on one held-out test slice: `fast` (20 NFE) at least biharmonic, known pixels kept."""
    ref = torch.from_numpy(held_out("test")[5:6].copy())[:, None]
    prob = degrade(TASKS["inpaint-box"], ref, seed=1)
    res = inpaint(load_prior(None).model, prob.y, prob.mask, SamplerOptions(preset="fast", seed=0))
    known = prob.mask.bool()
    assert torch.equal(res.mean[known], prob.y[known])
    classical = inpaint_biharmonic(prob.y[0, 0].numpy(), prob.mask[0, 0].numpy())
    p_ms = psnr(ref[0, 0].numpy(), res.mean[0, 0].numpy())
    p_bh = psnr(ref[0, 0].numpy(), classical)
    assert p_ms >= p_bh, (p_ms, p_bh)
    assert res.nfe == 20 and np.isfinite(p_ms)
