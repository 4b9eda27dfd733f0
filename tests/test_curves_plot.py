"""The quality-vs-NFE figure draws every sampler's line, however many there are."""

from __future__ import annotations

import numpy as np
from PIL import Image

from medscore.evaluation.curves import plot_curves


def test_every_curve_is_drawn_in_its_own_colour(tmp_path):
    curves = {f"s{k}": [(10, 20.0 + k, 0.5), (50, 21.0 + k, 0.6)] for k in range(6)}
    path = plot_curves(curves, {"TV-CS": 22.0}, tmp_path / "curve.png", "test")
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(v) for v in px) for px in pixels}
    # red, blue, green, orange, magenta, teal: one per sampler (five were dropped to four before)
    for rgb in [(255, 0, 0), (0, 0, 255), (0, 128, 0), (255, 165, 0), (255, 0, 255), (0, 128, 128)]:
        assert rgb in colours, rgb
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically
