"""Speed benchmark: training images/s and sampler network evaluations per second, CPU or GPU.

    python scripts/bench_speed.py --ngf 32 --device cpu

Prints a Markdown table (paste into docs/benchmarks.md with the date and machine). Training is
measured with the real DSM loss, Adam step and EMA update on random data; sampling with the network
forward at inference on batches of full slices.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from medscore.benchmark import machine
from medscore.config import ModelConfig
from medscore.losses import dsm_loss
from medscore.nets import build_model, count_parameters
from medscore.noise import geometric_sigmas


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--slice", nargs=2, type=int, default=[151, 187], help="slice size for sampling")
    ap.add_argument("--slice-batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dev = torch.device(args.device)
    sig = geometric_sigmas(50.0, 0.01, 200)
    model = build_model(ModelConfig(ngf=args.ngf), sig).to(dev)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(args.batch, 1, args.train_size, args.train_size, device=dev)
    amp = dev.type == "cuda"

    def train_step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = dsm_loss(model, x, sig.to(dev)[torch.randint(0, len(sig), (args.batch,), generator=g, device=dev)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)

    t_train = _time(train_step, args.repeats)
    xs = torch.rand(args.slice_batch, 1, *args.slice, device=dev)
    s = torch.full((args.slice_batch,), 0.1, device=dev)

    @torch.inference_mode()
    def forward() -> None:
        model(xs, s)

    t_fwd = _time(forward, args.repeats)
    print(f"machine: {machine()}")
    print("| what | value |\n|---|---|")
    print(f"| parameters (NCSN ngf {args.ngf}) | {count_parameters(model):,} |")
    print(f"| training, {args.train_size} px, batch {args.batch} | {args.batch / t_train:.1f} images/s |")
    print(f"| sampling, {args.slice[0]}x{args.slice[1]} slices, batch {args.slice_batch} | "
          f"{t_fwd / args.slice_batch * 1000:.0f} ms per network evaluation per slice |")
    print(f"| 100-NFE reconstruction of one slice | {100 * t_fwd / args.slice_batch:.1f} s |")


if __name__ == "__main__":
    main()
