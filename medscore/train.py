"""Training by denoising score matching over geometric noise levels (NCSN), on CPU, one GPU or DDP.

Reproducibility: all randomness of step ``k`` (batch choice, augmentation, noise levels, noise) is
seeded from ``(seed, k, rank)``, so a run resumed at step ``k`` continues exactly as an uninterrupted
one; ``resume.pt`` holds the optimizer and EMA state.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler

from .checkpoint import META, RAW_WEIGHTS, RESUME, WEIGHTS, load_resume, save_model, save_resume
from .config import TrainConfig
from .dataset import train_transforms, training_slices
from .errors import CheckpointError, ConfigError
from .fileio import check_out_dir
from .losses import dsm_loss
from .nets import build_model, count_parameters
from .noise import geometric_sigmas, max_pairwise_distance, ncsnv2_num_levels, sample_levels

__all__ = ["TrainProgress", "resolve_device", "train", "make_sigmas"]


@dataclass
class TrainProgress:
    """What the progress callback receives after each logged step."""

    step: int
    total: int
    loss: float
    images_per_s: float
    val_loss: float | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def make_sigmas(cfg: TrainConfig, images: torch.Tensor) -> torch.Tensor:
    """The configured geometric levels, or NCSNv2's data-driven ones (``auto``)."""
    nz = cfg.noise
    smax = max_pairwise_distance(images) if nz.sigma_max == "auto" else float(nz.sigma_max)
    if nz.num_levels == "auto":  # technique 2 for the sigma_max actually used
        levels = min(ncsnv2_num_levels(smax, nz.sigma_min, images[0].numel()), nz.max_levels)
    else:
        levels = int(nz.num_levels)
    return geometric_sigmas(smax, nz.sigma_min, levels)


class _Batches:
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
            self.transform.set_random_state(seed=_seed(self.cfg.seed, step, self.rank, j))
            out.append(self.transform({"image": self.slices[i]})["image"])
        return torch.stack(out)


class _StepDataset(torch.utils.data.Dataset):
    """Item ``i`` is the whole batch of step ``start + i``, so a DataLoader worker can prepare
    (augment) the next batches on the other core while the network trains, without changing them."""

    def __init__(self, batches: _Batches, start: int, stop: int) -> None:
        self.batches, self.start, self.stop = batches, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batches(self.start + i)


def _plain_transform(cfg: TrainConfig):
    return train_transforms(dataclasses.replace(cfg.data, augment=False))


def _plain_images(slices: list[np.ndarray], cfg: TrainConfig) -> torch.Tensor:
    """Un-augmented training images (T1 channel), e.g. for the data-driven noise levels."""
    tr = _plain_transform(cfg)
    tr.set_random_state(seed=cfg.seed)
    return torch.stack([tr({"image": s[:1]})["image"] for s in slices])


def _validation_images(slices: list[np.ndarray], cfg: TrainConfig) -> torch.Tensor:
    """Fixed, un-augmented images for the validation loss (embedded: the validation slab)."""
    tr = _plain_transform(cfg)
    if cfg.data.path is None:
        from .embedded import held_out

        source = [s[None] for s in held_out("val")]
    else:
        rng = np.random.default_rng(cfg.seed)
        source = [slices[i] for i in rng.choice(len(slices), size=min(cfg.val_images, len(slices)), replace=False)]
    imgs = []
    for j in range(cfg.val_images):
        tr.set_random_state(seed=_seed(cfg.seed, 10_000_019, j))
        imgs.append(tr({"image": source[j % len(source)][:1]})["image"])
    return torch.stack(imgs)


@torch.no_grad()
def _val_loss(model: torch.nn.Module, images: torch.Tensor, sigmas: torch.Tensor, device: torch.device) -> float:
    g = torch.Generator(device="cpu").manual_seed(1234)
    x = images.to(device)
    idx = torch.arange(len(x)) % len(sigmas)
    z = torch.randn(x.shape, generator=g).to(device)
    s = sigmas[idx.to(sigmas.device)].to(device).view(-1, 1, 1, 1)
    out = model(x + s * z, s.flatten())
    return float(0.5 * (s * out + z).pow(2).flatten(1).sum(1).mean())


def _write_samples(model: torch.nn.Module, cfg: TrainConfig, sigmas: torch.Tensor, path: Path, device: torch.device) -> None:
    from .sampling import annealed_langevin, resolve_step_size, select_levels
    from .viz import save_grid

    levels = select_levels(sigmas, min(cfg.sample_levels, len(sigmas)))
    eps = resolve_step_size(levels, cfg.sample_steps_each, sigma_ref=float(sigmas[-1]))
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    s = cfg.data.image_size
    x0 = torch.rand((cfg.num_samples, cfg.model.in_channels, s, s), generator=g, device=device)
    res = annealed_langevin(model, x0, levels.to(device), n_steps_each=cfg.sample_steps_each, eps=eps,
                            sigma_ref=float(sigmas[-1]), generator=g)
    save_grid(res.x[:, :1].clamp(0, 1).cpu(), path)


def _check_run(cfg: TrainConfig, out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Before anything is read or written: the config (also after in-place edits) and the run folder."""
    for part in (cfg, cfg.model, cfg.noise, cfg.data):
        part.__post_init__()
    check_out_dir(out_dir, resume=resume, overwrite=overwrite, name="out_dir", flags=("resume=True", "overwrite=True"))


def _clear_run(out_dir: Path) -> None:
    """``overwrite``: remove the previous run's weights, description, optimizer state and log."""
    for name in (WEIGHTS, RAW_WEIGHTS, META, RESUME, "train_log.csv"):
        (out_dir / name).unlink(missing_ok=True)


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          callback: Callable[[TrainProgress], None] | None = None) -> Path:
    """Train a score network; returns the path of the EMA weights in ``out_dir``.

    A non-empty ``out_dir`` is refused unless ``resume`` (continue that run) or ``overwrite`` (replace
    its weights, state and log). Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DistributedDataParallel;
    only rank 0 writes.
    """
    out_dir = Path(out_dir)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    _check_run(cfg, out_dir, resume, overwrite)  # every rank, before the rendezvous: nothing is written yet
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size < 1 or cfg.steps < 1:
        raise ConfigError("batch size and steps must be positive")

    slices = training_slices(cfg.data)
    batches = _Batches(slices, cfg, rank, world)
    val_images = _validation_images(slices, cfg) if cfg.val_images > 0 else None  # 0: no validation loss
    torch.manual_seed(cfg.seed)
    sigmas = make_sigmas(cfg, _plain_images(slices[:: max(1, len(slices) // 512)], cfg))
    model = build_model(cfg.model, sigmas).to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = 0
    if resume:
        state = load_resume(out_dir)
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["step"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {out_dir / 'resume.pt'}: it does not fit the configured model "
                                  f"({exc.__class__.__name__}); resume with the run's own config") from None
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sig_dev = model.sigmas
    use_amp = cfg.amp and device.type == "cuda"
    log_path = out_dir / "train_log.csv"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _clear_run(out_dir)
        if not resume or not log_path.exists():
            log_path.write_text("step,loss,val_loss,images_per_s,lr,wall_s\n")
        else:  # drop rows logged after the checkpoint we resume from: those steps run again
            head, *rows = log_path.read_text().splitlines(keepends=True) or [""]
            steps = [r.split(",", 1)[0] for r in rows]
            log_path.write_text(head + "".join(r for r, k in zip(rows, steps) if k.isdigit() and int(k) <= start))
    writer = _tensorboard(out_dir) if rank == 0 else None
    t0, seen, t_start = time.perf_counter(), 0, time.perf_counter()

    def checkpoint(step: int) -> None:
        save_model(out_dir, model, ema.module, cfg, step, extra={"parameters": count_parameters(model)})
        if cfg.keep_checkpoints:  # EMA snapshots for model selection on validation data
            save_model(out_dir / "checkpoints" / f"step_{step:07d}", ema.module, ema.module, cfg, step,
                       extra={"parameters": count_parameters(model)})
        save_resume(out_dir, {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                              "step": step})

    workers = cfg.num_workers
    loader = torch.utils.data.DataLoader(_StepDataset(batches, start, cfg.steps), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=2 if workers > 0 else None,
                                         pin_memory=device.type == "cuda")
    for step, x in zip(range(start, cfg.steps), loader):
        x = x.to(device, non_blocking=True)
        g = torch.Generator(device=device).manual_seed(_seed(cfg.seed, step, rank, 7))
        sigma = sample_levels(sig_dev, x.shape[0], generator=g)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = dsm_loss(net, x, sigma, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update_parameters(model)
        seen += x.shape[0] * world
        done = step + 1
        last = done == cfg.steps
        if rank == 0 and (done % cfg.log_every == 0 or last):
            val = (_val_loss(ema.module, val_images, sig_dev, device)
                   if val_images is not None and (done % cfg.checkpoint_every == 0 or last) else None)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise FloatingPointError(f"training diverged at step {done} (loss {lv}); lower --lr")
            with open(log_path, "a", newline="") as f:
                csv.writer(f).writerow([done, f"{lv:.5f}", "" if val is None else f"{val:.5f}", f"{rate:.2f}",
                                        f"{opt.param_groups[0]['lr']:.3g}", f"{time.perf_counter() - t_start:.1f}"])
            if writer is not None:
                writer.add_scalar("loss/train", lv, done)
                if val is not None:
                    writer.add_scalar("loss/val", val, done)
            if callback is not None:
                callback(TrainProgress(done, cfg.steps, lv, rate, val))
            t0, seen = time.perf_counter(), 0
        if rank == 0 and (done % cfg.checkpoint_every == 0 or last):
            checkpoint(done)
        if rank == 0 and (done % cfg.sample_every == 0 or last) and cfg.num_samples > 0:
            _write_samples(ema.module, cfg, sig_dev, out_dir / f"samples_{done:07d}.png", device)
    if world > 1:
        dist.barrier()
    if writer is not None:
        writer.close()
    return out_dir / "model.safetensors"


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
