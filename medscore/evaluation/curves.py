"""Quality against cost: PSNR of each sampler at several NFE budgets, and the figure drawn from it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .specs import TASKS, degrade, medscore_method, run_method
from ..priors.store import load_prior
from ..solvers import SamplerOptions

__all__ = ["CURVE_BUDGETS", "nfe_curves", "plot_curves"]

Point = tuple[int, float, float]  # (NFE per slice, PSNR, SSIM)

# One chain per point; ``num_levels`` sets the cost (ald: 3 steps per level, pc: 1 corrector; pnp: deterministic,
# without and with the ``fast`` preset's momentum).
CURVE_BUDGETS: dict[str, list[SamplerOptions]] = {
    "ddim": [SamplerOptions(preset="fast", sampler="ddim", eta=1.0, num_levels=n, samples=1) for n in (10, 20, 50)],
    "pc": [SamplerOptions(preset="fast", sampler="pc", num_levels=n, samples=1) for n in (10, 25)],
    "ald": [SamplerOptions(preset="ald-fast", num_levels=n, samples=1) for n in (6, 16, 33)],
    "pnp": [SamplerOptions(preset="fast", sampler="pnp", renoise=0.0, momentum=0.0, sigma_start=1.0, num_levels=n,
                           samples=1) for n in (10, 20, 50)],
    "pnp-momentum": [SamplerOptions(preset="fast", sampler="pnp", renoise=0.0, momentum=0.6, sigma_start=1.0,
                                    num_levels=n, samples=1) for n in (10, 20, 50)],
}


def nfe_curves(task: str, ref: torch.Tensor, budgets: dict[str, list[SamplerOptions]] | None = None, *, model=None,
               seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, list[Point]]:
    """``{sampler: [(NFE, PSNR, SSIM), ...]}`` of medscore on ``task`` for each budget, on the slices ``ref``."""
    log = log or (lambda _m: None)
    prior = load_prior(model)
    spec = TASKS[task]
    prob = degrade(spec, ref, seed=seed)
    curves: dict[str, list[Point]] = {}
    for name, options in (budgets or CURVE_BUDGETS).items():
        for opts in options:
            r = run_method(medscore_method(spec, prior.model, opts), prob)
            curves.setdefault(name, []).append((r.nfe, float(r.psnr.mean()), float(r.ssim.mean())))
            log(f"  {name} {r.nfe} NFE: {r.psnr.mean():.2f} dB")
    return curves


def plot_curves(curves: dict[str, list[Point]], baselines: dict[str, float], path: Path, title: str) -> Path:
    """PSNR against NFE (log x), one line per sampler, classical methods as horizontal lines (Pillow)."""
    from PIL import Image, ImageDraw

    from ..io.atomic import atomic_path

    w, h, pad = 640, 400, 56
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    pts = [p for ps in curves.values() for p in ps]
    xs = [np.log10(p[0]) for p in pts]
    ys = [p[1] for p in pts] + list(baselines.values())
    x0, x1 = min(xs) - 0.1, max(xs) + 0.1
    y0, y1 = min(ys) - 1, max(ys) + 1
    px = lambda x: pad + (x - x0) / (x1 - x0) * (w - 2 * pad)  # noqa: E731
    py = lambda y: h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)  # noqa: E731
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    last = -1e9
    for nfe in sorted({p[0] for p in pts}):
        if px(np.log10(nfe)) - last > 24:  # 19 and 20 NFE would overprint
            last = px(np.log10(nfe))
            d.text((last - 8, h - pad + 5), str(nfe), fill="black")
    for yv in np.arange(np.ceil(y0), y1, max(1, round((y1 - y0) / 6))):
        d.text((8, py(yv) - 6), f"{yv:.0f}", fill="black")
    for (name, val), c in zip(baselines.items(), ["gray", "brown", "purple"]):
        d.line([pad, py(val), w - pad, py(val)], fill=c)
        d.text((w - pad - 150, py(val) - 12), name, fill=c)
    palette = ["red", "blue", "green", "orange", "magenta", "teal", "black"]
    for k, (name, ps) in enumerate(curves.items()):
        c = palette[k % len(palette)]
        line = [(px(np.log10(n)), py(v)) for n, v, _ in sorted(ps)]
        d.line(line, fill=c, width=2)
        for x, y in line:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        d.text((pad + 8, pad + 8 + 14 * k), name, fill=c)
    d.text((pad, 15), title, fill="black")
    d.text((w // 2 - 60, h - 22), "NFE per slice (log)", fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
