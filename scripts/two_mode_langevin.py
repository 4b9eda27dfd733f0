"""Song & Ermon (2019) Figure 3: plain vs annealed Langevin on p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I).

Panels, left to right: exact samples, plain Langevin with the exact (unperturbed) score, annealed
Langevin with the exact score of the mixture perturbed at each sigma. Both samplers start uniformly in
[-8, 8]^2: plain Langevin takes 1,000 steps of size 0.1; annealed Langevin 30 levels from
sigma = 20 down to 0.1, 100 steps each, eps = 0.005, then the Tweedie step. Each panel's title
gives the fraction of samples nearest each mode (truth: 0.20 / 0.80).
Writes ``docs/figures/two_mode_langevin.png`` with matplotlib if it is installed, else with Pillow.

    python scripts/two_mode_langevin.py [--n 1280] [--seed 0] [--output PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from medscore.training.noise import geometric_sigmas
from medscore.sampling import annealed_langevin, langevin
from medscore.sampling.toy import TWO_MODE_MEANS, mixture_score, mode_weights, sample_mixture

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "two_mode_langevin.png"
LIMIT = 8.0  # axes span [-LIMIT, LIMIT]^2, as in the paper's figure


def run(n: int, seed: int) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
    """(title, samples (n, 2), mode weights) for the three panels."""
    gen = torch.Generator().manual_seed(seed)
    exact = sample_mixture(n, generator=gen)
    x0 = torch.rand(n, 2, generator=gen) * 2 * LIMIT - LIMIT
    plain = langevin(mixture_score(), x0, sigma=0.0, n_steps=1000, step_size=0.1, generator=gen).x
    # sigma_L = 0.1 (not 1, as in tests/test_langevin.py) so the final spread matches the data's unit std
    annealed = annealed_langevin(
        mixture_score(), x0, geometric_sigmas(20.0, 0.1, 30), n_steps_each=100, eps=0.005, generator=gen
    ).x
    panels = []
    for title, x in (("exact samples", exact), ("Langevin", plain), ("annealed Langevin", annealed)):
        w = mode_weights(x, TWO_MODE_MEANS)
        panels.append((title, x.numpy(), (float(w[0]), float(w[1]))))
    return panels


def _label(title: str, w: tuple[float, float]) -> str:
    return f"{title}\nweights {w[0]:.2f} / {w[1]:.2f}"


def save_matplotlib(panels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, (title, x, w) in zip(axes, panels):
        ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:blue")
        ax.set(xlim=(-LIMIT, LIMIT), ylim=(-LIMIT, LIMIT), aspect="equal", title=_label(title, w))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_pillow(panels, path: Path, size: int = 320, header: int = 40, pad: int = 10) -> None:
    from PIL import Image, ImageDraw

    width = len(panels) * (size + pad) + pad
    img = Image.new("RGB", (width, size + header + pad), "white")
    draw = ImageDraw.Draw(img)
    for k, (title, x, w) in enumerate(panels):
        left, top = pad + k * (size + pad), header
        draw.rectangle([left, top, left + size - 1, top + size - 1], outline="black")
        for v in (0.0,):  # axes through the origin
            c = int((v + LIMIT) / (2 * LIMIT) * size)
            draw.line([left + c, top, left + c, top + size - 1], fill=(220, 220, 220))
            draw.line([left, top + c, left + size - 1, top + c], fill=(220, 220, 220))
        px = np.clip((x + LIMIT) / (2 * LIMIT) * (size - 1), 0, size - 1)
        for u, v in px:
            cx, cy = left + u, top + (size - 1 - v)  # y axis points up
            draw.rectangle([cx - 1, cy - 1, cx + 1, cy + 1], fill=(31, 119, 180))
        draw.multiline_text((left + 4, 4), _label(title, w), fill="black")
    img.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1280, help="samples per panel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors; more threads only contend
    panels = run(args.n, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_matplotlib(panels, args.output)
    except ImportError:
        save_pillow(panels, args.output)
    for title, _, w in panels:
        print(f"{title:>18}: mode weights {w[0]:.3f} / {w[1]:.3f}  (truth 0.200 / 0.800)")
    print(args.output)


if __name__ == "__main__":
    main()
