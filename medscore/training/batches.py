"""What training steps see, all of it seeded: deterministic per-step batches, un-augmented and validation images.

Batch k of rank r is fixed by ``(seed, k, r)``: indices from a ``DistributedSampler`` epoch order, augmentation
seeded per image, so a resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from monai.transforms import Compose
from torch.utils.data import DistributedSampler

from ..config import TrainConfig
from .dataset import train_transforms

__all__ = ["step_seed", "StepBatches", "StepDataset", "plain_images", "validation_images", "with_random_phase"]

# Phase of a training patch. ``random_phase``'s defaults describe a whole field of view; a 64 px patch is
# about a third of one, so its smooth field varies a third as fast and its linear/quadratic terms are smaller.
_PATCH_PHASE = {"cutoff": 1.0, "linear": np.pi / 2, "quadratic": np.pi / 4}
_REAL_FRACTION = 0.2  # images left real (a constant phase only): what a phase-corrected input looks like


def with_random_phase(image: torch.Tensor, seed: int) -> torch.Tensor:
    """(1, H, W) magnitude -> (2, H, W) (real, imaginary) with a simulated scanner phase (seeded).

    A fifth of the images get a constant phase only, so nearly real images (phase moved into coil maps, or
    removed by a phase correction) are in distribution too.
    """
    from ..physics.simulate import random_phase

    rng = np.random.default_rng(seed)
    shape = tuple(image.shape[-2:])
    if rng.random() < _REAL_FRACTION:
        phase = np.full(shape, rng.uniform(-np.pi, np.pi), dtype=np.float32)
    else:
        phase = random_phase(shape, rng, **_PATCH_PHASE)
    phase_t = torch.from_numpy(np.asarray(phase, dtype=np.float32))
    mag = image[0]
    return torch.stack([mag * torch.cos(phase_t), mag * torch.sin(phase_t)])


def _finish(image: torch.Tensor, cfg: TrainConfig, seed: int) -> torch.Tensor:
    """The transformed magnitude image as the network sees it: with phase for a complex prior."""
    return with_random_phase(image, seed) if cfg.data.phase == "random" else image


def step_seed(*parts: int) -> int:
    """A 32-bit-part seed for (run seed, step, rank, ...): every step's randomness independent of the others."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class StepBatches:
    """Deterministic batches: step k -> indices from a DistributedSampler epoch order, seeded transforms."""

    def __init__(self, slices: list[np.ndarray], cfg: TrainConfig, rank: int, world: int) -> None:
        self.slices, self.cfg, self.rank = slices, cfg, rank
        self.transform = train_transforms(cfg.data)
        self.sampler = DistributedSampler(range(len(slices)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=cfg.seed, drop_last=False)
        self.per_epoch = max(1, len(self.sampler) // cfg.batch_size)
        self._epoch, self._order = -1, []

    def __call__(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(iter(self.sampler))
        idx = self._order[pos * self.cfg.batch_size:(pos + 1) * self.cfg.batch_size]
        out = []
        for j, i in enumerate(idx):
            seed = step_seed(self.cfg.seed, step, self.rank, j)
            self.transform.set_random_state(seed=seed)
            image = torch.as_tensor(self.transform({"image": self.slices[i]})["image"])
            out.append(_finish(image, self.cfg, seed + 1))
        return torch.stack(out)


class StepDataset(torch.utils.data.Dataset):
    """Item ``i`` is the whole batch of step ``start + i``, so a DataLoader worker can prepare
    (augment) the next batches on the other core while the network trains, without changing them."""

    def __init__(self, batches: StepBatches, start: int, stop: int) -> None:
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batches(self.start + i)


def _plain_transform(cfg: TrainConfig) -> Compose:
    return train_transforms(dataclasses.replace(cfg.data, augment=False))


def plain_images(slices: list[np.ndarray], cfg: TrainConfig) -> torch.Tensor:
    """Un-augmented training images (T1 channel), e.g. for the data-driven noise levels."""
    tr = _plain_transform(cfg)
    tr.set_random_state(seed=cfg.seed)
    return torch.stack([_finish(torch.as_tensor(tr({"image": s[:1]})["image"]), cfg, step_seed(cfg.seed, 3, j))
                        for j, s in enumerate(slices)])


def validation_images(slices: list[np.ndarray], cfg: TrainConfig) -> torch.Tensor:
    """Fixed, un-augmented images for the validation loss (embedded: the validation slab)."""
    tr = _plain_transform(cfg)
    if cfg.data.path is None:
        from ..io.embedded import held_out

        source = [s[None] for s in held_out("val")]
    else:
        rng = np.random.default_rng(cfg.seed)
        source = [slices[i] for i in rng.choice(len(slices), size=min(cfg.val_images, len(slices)), replace=False)]
    imgs = []
    for j in range(cfg.val_images):
        seed = step_seed(cfg.seed, 10_000_019, j)
        tr.set_random_state(seed=seed)
        imgs.append(_finish(torch.as_tensor(tr({"image": source[j % len(source)][:1]})["image"]), cfg, seed + 1))
    return torch.stack(imgs)
