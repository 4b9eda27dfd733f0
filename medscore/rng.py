"""Random streams for batched solvers: one ``torch.Generator`` for a whole batch, or one per slice.

A batch solved with a single generator draws its noise as one block, so a slice's result depends on
which other slices share its batch. :class:`RowGenerators` gives every slice (with its ``rows``
chains) its own generator, so a volume solved in batches of 1 or of N gives identical outputs.
Both physics (noisy projections) and sampling use :func:`randn`, which accepts either kind; this
module imports nothing from medscore so neither package depends on the other through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["RowGenerators", "Generators", "randn", "make_generators"]


class RowGenerators:
    """One generator per group of ``rows`` consecutive batch rows (a slice and its chains)."""

    def __init__(self, generators: Sequence[torch.Generator], rows: int = 1) -> None:
        if not generators or rows < 1:
            raise ValueError("need at least one generator and rows >= 1")
        self.generators = list(generators)
        self.rows = rows

    def randn(self, shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """Standard normal draws of ``shape`` (first dim = len(generators) * rows), group by group."""
        return self.fill_normal_(torch.empty(tuple(shape), dtype=dtype, device=device))

    def fill_normal_(self, buf: Tensor) -> Tensor:
        """Fill ``buf`` in place with standard normal draws, each group of rows from its own generator
        (no allocation: samplers call this thousands of times)."""
        if buf.shape[0] != len(self.generators) * self.rows:
            raise ValueError(f"batch of {buf.shape[0]} rows does not match {len(self.generators)} x {self.rows} rows")
        for i, g in enumerate(self.generators):
            buf[i * self.rows:(i + 1) * self.rows].normal_(generator=g)
        return buf

    def repeat_rows(self, n: int) -> "RowGenerators":
        """The same generators, each now covering ``n`` times as many rows (chains of one slice)."""
        return RowGenerators(self.generators, self.rows * n)


Generators = torch.Generator | RowGenerators | None


def randn(shape: Sequence[int], generator: Generators, *, dtype: torch.dtype = torch.float32,
          device: torch.device | str = "cpu") -> Tensor:
    """``torch.randn`` from a single generator, from per-row generators, or from torch's default."""
    if isinstance(generator, RowGenerators):
        return generator.randn(shape, dtype=dtype, device=device)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


def make_generators(seed: int | Sequence[int], device: torch.device | str = "cpu") -> torch.Generator | RowGenerators:
    """A generator for an int seed; per-row generators for a sequence of seeds (one per slice)."""
    dev = torch.device(device)
    if isinstance(seed, int):
        return torch.Generator(device=dev).manual_seed(seed)
    return RowGenerators([torch.Generator(device=dev).manual_seed(int(s)) for s in seed])
