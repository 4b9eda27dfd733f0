"""PNG pictures: sample grids and labelled comparison panels (Pillow; no matplotlib needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .atomic import atomic_path

__all__ = ["to_uint8", "save_grid", "save_panel"]


def to_uint8(img: np.ndarray | torch.Tensor, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Window a 2D image to [vmin, vmax] and map it to 0..255."""
    arr = img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, dtype=np.float32)
    arr = np.nan_to_num(arr.squeeze())
    return (np.clip((arr - vmin) / max(vmax - vmin, 1e-12), 0, 1) * 255).round().astype(np.uint8)


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int | None = None, pad: int = 2) -> Path:
    """Save a (N, 1, H, W) or (N, H, W) stack as one grid PNG (values windowed to [0, 1])."""
    imgs = [to_uint8(im) for im in images]
    n = len(imgs)
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol_rows = int(np.ceil(n / nrow))
    h, w = imgs[0].shape
    canvas = np.zeros((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad), np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return _save(canvas, path)


def save_panel(images: Sequence[np.ndarray | torch.Tensor], titles: Sequence[str], path: str | Path,
               windows: Sequence[tuple[float, float]] | None = None, scale: int = 2, rotate: bool = True) -> Path:
    """Side-by-side 2D images with a title above each, e.g. zero-filled | medscore | reference | |error|.

    With ``rotate`` each stored (X, Y) slice is shown as ``np.rot90`` of it, which puts anterior up for
    axial slices of RAS-like NIfTI volumes (radiological viewers do the same).
    """
    windows = windows or [(0.0, 1.0)] * len(images)
    tiles = [to_uint8(im, *win) for im, win in zip(images, windows)]
    if rotate:
        tiles = [np.ascontiguousarray(np.rot90(t)) for t in tiles]
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0))) for t in tiles]
    tiles = [np.kron(t, np.ones((scale, scale), np.uint8)) for t in tiles]
    label_h, pad = 16, 4
    width = sum(t.shape[1] for t in tiles) + pad * (len(tiles) + 1)
    canvas = Image.new("L", (width, tiles[0].shape[0] + label_h + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    x = pad
    for tile, title in zip(tiles, titles):
        canvas.paste(Image.fromarray(tile), (x, label_h + pad))
        draw.text((x + 2, 2), title, fill=255)
        x += tile.shape[1] + pad
    return _save(np.asarray(canvas), path)


def _save(arr: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path
