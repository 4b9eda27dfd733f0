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

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..priors.checkpoint import META, RAW_WEIGHTS, RESUME, WEIGHTS, load_resume, save_model, save_resume
from ..config import TrainConfig
from .dataset import training_slices
from ..devices import resolve_device  # re-exported here (its historical home)
from ..errors import CheckpointError, ConfigError
from ..io.atomic import check_out_dir
from .losses import dsm_loss
from .lr_schedule import learning_rate
from ..nets import build_model, count_parameters
from .noise import geometric_sigmas, levels_up_to, max_pairwise_distance, ncsnv2_num_levels, sample_levels
from .init_from import check_init_from, init_weights_from
from .batches import StepBatches, StepDataset, plain_images, step_seed, validation_images

__all__ = ["TrainProgress", "resolve_device", "train", "make_sigmas"]


@dataclass
class TrainProgress:
    """What the progress callback receives after each logged step."""

    step: int
    total: int
    loss: float
    images_per_s: float
    val_loss: float | None = None


def make_sigmas(cfg: TrainConfig, images: torch.Tensor) -> torch.Tensor:
    """The configured geometric levels, or NCSNv2's data-driven ones (``auto``)."""
    nz = cfg.noise
    smax = max_pairwise_distance(images) if nz.sigma_max == "auto" else float(nz.sigma_max)
    if nz.num_levels == "auto":  # technique 2 for the sigma_max actually used
        levels = min(ncsnv2_num_levels(smax, nz.sigma_min, images[0].numel()), nz.max_levels)
    else:
        levels = int(nz.num_levels)
    return geometric_sigmas(smax, nz.sigma_min, levels)


@torch.no_grad()
def _val_loss(model: torch.nn.Module, images: torch.Tensor, sigmas: torch.Tensor, device: torch.device) -> float:
    g = torch.Generator(device="cpu").manual_seed(1234)
    x = images.to(device)
    idx = torch.arange(len(x)) % len(sigmas)
    z = torch.randn(x.shape, generator=g).to(device)
    s = sigmas[idx.to(sigmas.device)].to(device).view(-1, 1, 1, 1)
    out = model(x + s * z, s.flatten())
    return float(0.5 * (s * out + z).pow(2).flatten(1).sum(1).mean())


def _write_samples(model: torch.nn.Module, cfg: TrainConfig, sigmas: torch.Tensor, path: Path,
                   device: torch.device) -> None:
    from ..sampling import annealed_langevin, resolve_step_size, select_levels
    from ..io.pictures import save_grid

    levels = select_levels(sigmas, min(cfg.sample_levels, len(sigmas)))
    eps = resolve_step_size(levels, cfg.sample_steps_each, sigma_ref=float(sigmas[-1]))
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    s = cfg.data.image_size
    x0 = torch.rand((cfg.num_samples, cfg.model.in_channels, s, s), generator=g, device=device)
    res = annealed_langevin(model, x0, levels.to(device), n_steps_each=cfg.sample_steps_each, eps=eps,
                            sigma_ref=float(sigmas[-1]), generator=g)
    x = res.x.norm(dim=1, keepdim=True) if res.x.shape[1] == 2 else res.x[:, :1]  # complex: the magnitude
    save_grid(x.clamp(0, 1).cpu(), path)


def _check_run(cfg: TrainConfig, out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Before anything is read or written: the config (also after in-place edits) and the run folder."""
    for part in (cfg, cfg.model, cfg.noise, cfg.data):
        part.__post_init__()
    check_out_dir(out_dir, resume=resume, overwrite=overwrite, name="out_dir", flags=("resume=True", "overwrite=True"))
    if not resume:
        check_init_from(cfg)  # the starting weights load and fit before any data is read


def _clear_run(out_dir: Path) -> None:
    """``overwrite``: remove the previous run's weights, description, optimizer state and log."""
    for name in (WEIGHTS, RAW_WEIGHTS, META, RESUME, "train_log.csv"):
        (out_dir / name).unlink(missing_ok=True)


def _init_device(cfg: TrainConfig, world: int) -> torch.device:
    """The configured device; under ``torchrun`` this rank's GPU and the process group."""
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


@dataclass
class _Run:
    """One training run: where it writes, its data, networks and optimizer, the step it starts from, and the
    rate meter of the steps since the last log line."""

    cfg: TrainConfig
    out_dir: Path
    device: torch.device
    rank: int
    world: int
    batches: StepBatches
    val_images: torch.Tensor | None
    model: torch.nn.Module
    ema: AveragedModel
    opt: torch.optim.Optimizer
    net: torch.nn.Module
    start: int
    writer: object = None
    callback: Callable[[TrainProgress], None] | None = None
    t0: float = dataclasses.field(default_factory=time.perf_counter)
    seen: int = 0
    t_start: float = dataclasses.field(default_factory=time.perf_counter)


def _resume_step(out_dir: Path, model: torch.nn.Module, ema: AveragedModel, opt: torch.optim.Optimizer) -> int:
    """Load ``resume.pt`` into the networks and the optimizer; the step it was saved at."""
    state = load_resume(out_dir)
    try:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        return int(state["step"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot resume from {out_dir / 'resume.pt'}: it does not fit the configured model "
                              f"({exc.__class__.__name__}); resume with the run's own config") from None


def _build_run(cfg: TrainConfig, out_dir: Path, resume: bool, device: torch.device, rank: int, world: int) -> _Run:
    """Data, noise levels, model, EMA and optimizer (restored when resuming), seeded from ``cfg.seed``."""
    slices = training_slices(cfg.data)
    batches = StepBatches(slices, cfg, rank, world)
    val_images = validation_images(slices, cfg) if cfg.val_images > 0 else None  # 0: no validation loss
    torch.manual_seed(cfg.seed)
    sigmas = make_sigmas(cfg, plain_images(slices[:: max(1, len(slices) // 512)], cfg))
    model = build_model(cfg.model, sigmas)
    if cfg.init_from and not resume:
        init_weights_from(model, cfg.init_from)
    model = model.to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = _resume_step(out_dir, model, ema, opt) if resume else 0
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    return _Run(cfg, out_dir, device, rank, world, batches, val_images, model, ema, opt, net, start)


def _open_log(out_dir: Path, resume: bool, overwrite: bool, start: int) -> None:
    """Rank 0: the run folder and ``train_log.csv`` (a new one, or the resumed one up to ``start``)."""
    log_path = out_dir / "train_log.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _clear_run(out_dir)
    if not resume or not log_path.exists():
        log_path.write_text("step,loss,val_loss,images_per_s,lr,wall_s\n")
    else:  # drop rows logged after the checkpoint we resume from: those steps run again
        head, *rows = log_path.read_text().splitlines(keepends=True) or [""]
        steps = [r.split(",", 1)[0] for r in rows]
        log_path.write_text(head + "".join(r for r, k in zip(rows, steps) if k.isdigit() and int(k) <= start))


def _train_step(run: _Run, x: torch.Tensor, step: int) -> torch.Tensor:
    """One optimizer step on the batch ``x`` (noise seeded from (seed, step, rank)) and the EMA update."""
    cfg, device = run.cfg, run.device
    g = torch.Generator(device=device).manual_seed(step_seed(cfg.seed, step, run.rank, 7))
    sigma = sample_levels(levels_up_to(run.model.sigmas, cfg.noise.train_sigma_max), x.shape[0], generator=g)
    for group in run.opt.param_groups:
        group["lr"] = learning_rate(step, lr=cfg.lr, steps=cfg.steps, warmup_steps=cfg.warmup_steps,
                                    schedule=cfg.lr_schedule, lr_final=cfg.lr_final)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        loss = dsm_loss(run.net, x, sigma, generator=g)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.opt.step()
    run.ema.update_parameters(run.model)
    return loss


def _log_step(run: _Run, loss: torch.Tensor, done: int, last: bool) -> None:
    """Rank 0: the log row (validation loss at checkpoints), TensorBoard scalars and the progress callback."""
    cfg = run.cfg
    val = (_val_loss(run.ema.module, run.val_images, levels_up_to(run.model.sigmas, cfg.noise.train_sigma_max),
                     run.device)
           if run.val_images is not None and (done % cfg.checkpoint_every == 0 or last) else None)
    rate = run.seen / max(time.perf_counter() - run.t0, 1e-9)
    lv = float(loss.detach())
    if not math.isfinite(lv):
        raise FloatingPointError(f"training diverged at step {done} (loss {lv}); lower --lr")
    with open(run.out_dir / "train_log.csv", "a", newline="") as f:
        csv.writer(f).writerow([done, f"{lv:.5f}", "" if val is None else f"{val:.5f}", f"{rate:.2f}",
                                f"{run.opt.param_groups[0]['lr']:.3g}", f"{time.perf_counter() - run.t_start:.1f}"])
    if run.writer is not None:
        run.writer.add_scalar("loss/train", lv, done)
        if val is not None:
            run.writer.add_scalar("loss/val", val, done)
    if run.callback is not None:
        run.callback(TrainProgress(done, cfg.steps, lv, rate, val))
    run.t0, run.seen = time.perf_counter(), 0


def _checkpoint(run: _Run, step: int) -> None:
    """Rank 0: weights, EMA snapshot (``keep_checkpoints``, for model selection) and the resume state."""
    cfg, out_dir, model, ema = run.cfg, run.out_dir, run.model, run.ema
    save_model(out_dir, model, ema.module, cfg, step, extra={"parameters": count_parameters(model)})
    if cfg.keep_checkpoints:  # EMA snapshots for model selection on validation data
        save_model(out_dir / "checkpoints" / f"step_{step:07d}", ema.module, ema.module, cfg, step,
                   extra={"parameters": count_parameters(model)})
    save_resume(out_dir, {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": run.opt.state_dict(),
                          "step": step})


def _run_steps(run: _Run) -> None:
    """Steps ``start`` .. ``cfg.steps`` (batches prepared by DataLoader workers), with logs, checkpoints, samples."""
    cfg, device, rank = run.cfg, run.device, run.rank
    workers = cfg.num_workers
    loader = torch.utils.data.DataLoader(StepDataset(run.batches, run.start, cfg.steps), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=2 if workers > 0 else None,
                                         pin_memory=device.type == "cuda")
    for step, x in zip(range(run.start, cfg.steps), loader):
        x = x.to(device, non_blocking=True)
        loss = _train_step(run, x, step)
        run.seen += x.shape[0] * run.world
        done = step + 1
        last = done == cfg.steps
        if rank == 0 and (done % cfg.log_every == 0 or last):
            _log_step(run, loss, done, last)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or last):
            _checkpoint(run, done)
        if rank == 0 and (done % cfg.sample_every == 0 or last) and cfg.num_samples > 0:
            _write_samples(run.ema.module, cfg, run.model.sigmas, run.out_dir / f"samples_{done:07d}.png", device)


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
    device = _init_device(cfg, world)
    if cfg.batch_size < 1 or cfg.steps < 1:
        raise ConfigError("batch size and steps must be positive")
    run = _build_run(cfg, out_dir, resume, device, rank, world)
    if rank == 0:
        _open_log(out_dir, resume, overwrite, run.start)
    run.writer = _tensorboard(out_dir) if rank == 0 else None
    run.callback = callback
    run.t0, run.seen, run.t_start = time.perf_counter(), 0, time.perf_counter()
    _run_steps(run)
    if world > 1:
        dist.barrier()
    if run.writer is not None:
        run.writer.close()
    return out_dir / "model.safetensors"


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
