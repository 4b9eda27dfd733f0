"""Score-network forward speed: the pre-rewrite forward vs the fused one, at the bundled prior's weights.

Reports ms/image and achieved GFLOP/s (convolution + matmul FLOPs from ``FlopCounterMode``; elementwise
work is not counted) at 64x64 (batch 4) and 128x128 (batch 8) on 1 and 2 threads, next to the machine's
fp32 ``torch.mm`` GFLOP/s and the reference NCSNv2 of ermongroup/ncsnv2 (ngf 32, 64x64). All rows come
from one run, so their ratios are meaningful even on a shared machine; absolute times are not.

    python scripts/bench_forward.py [--json out.json] [--threads 1,2] [--quick] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ncsnv2_reference import ReferenceNCSNv2  # noqa: E402
from _reference_forward import old_from  # noqa: E402

from medscore.priors.store import load_prior  # noqa: E402
from medscore.nets import NCSNv2, UNetScore  # noqa: E402
from medscore.nets.accelerate import accelerate  # noqa: E402


def _timeit(fn: Callable[[], Any], min_reps: int = 2, min_s: float = 0.5) -> float:
    """Best wall time of ``fn`` in seconds after one warm-up call (the minimum resists other load)."""
    fn()
    times: list[float] = []
    while len(times) < min_reps or (sum(times) < min_s and len(times) < 20):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def mm_gflops(n: int = 1024) -> float:
    """Achieved fp32 GFLOP/s of one large square ``torch.mm``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / _timeit(lambda: torch.mm(a, b)) / 1e9


def _call(model: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    """A no-argument forward: sigma for medscore nets, level index for the reference."""
    if isinstance(model, ReferenceNCSNv2):
        y = torch.zeros(x.shape[0], dtype=torch.long)
        return lambda: model(x, y)
    sigma = torch.full((x.shape[0],), 0.3)
    return lambda: model(x, sigma)


def count_flops(model: nn.Module, size: int, batch: int) -> float:
    """Conv + matmul FLOPs of one forward (counted on batch 1, linear in the batch)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        _call(model, torch.rand(1, 1, size, size))()
    return counter.get_total_flops() * batch


def build_cases(quick: bool) -> list[dict[str, Any]]:
    """(name, model, batch, size) rows; the old and channels-last models share the prior's weights."""
    new = load_prior("bundled:ncsn").model.eval()  # the default prior's RefineNet (its level split: two of them)
    unet = load_prior("bundled:unet").model.eval()  # the bundled U-Net prior
    old = old_from(new)
    cl = accelerate(copy.deepcopy(new), compile=False, channels_last=True)
    torch.manual_seed(0)
    sigmas = new.sigmas.clone()
    ref = ReferenceNCSNv2(sigmas, ngf=32).eval()
    ours_v2 = NCSNv2(1, 32, sigmas, downsample3=False).eval()  # our blocks in the reference's layout
    sizes = [(4, 64)] if quick else [(4, 64), (8, 128)]
    cases = []
    for batch, size in sizes:
        cases += [dict(name="old forward (bundled prior)", model=old, batch=batch, size=size, base=True),
                  dict(name="new forward (bundled prior)", model=new, batch=batch, size=size),
                  dict(name="new + channels-last (accelerate)", model=cl, batch=batch, size=size, cl=True),
                  dict(name="U-Net prior (bundled:unet)", model=unet, batch=batch, size=size)]
    cases += [dict(name="ermongroup NCSNv2 re-impl. (ngf 32)", model=ref, batch=4, size=64),
              dict(name="medscore NCSNv2, same layout (ngf 32)", model=ours_v2, batch=4, size=64)]
    for c in cases:  # old, new and channels-last run the same convolutions: count them once
        c["flops"] = count_flops(new if c["model"] in (old, cl) else c["model"], c["size"], c["batch"])
    return cases


def _time_group(group: list[dict[str, Any]], rounds: int) -> dict[int, tuple[float, Tensor]]:
    """Best time and output of each case of one input size, timed in interleaved rounds (old, new, ...,
    old, new, ...) so that every case sees the same background load."""
    torch.manual_seed(0)
    x = torch.rand(group[0]["batch"], 1, group[0]["size"], group[0]["size"])
    fns = [_call(c["model"], x.contiguous(memory_format=torch.channels_last) if c.get("cl") else x) for c in group]
    best: dict[int, float] = {}
    with torch.inference_mode():
        outs = {i: fn() for i, fn in enumerate(fns)}  # warm-up (oneDNN primitives, allocator)
        for _ in range(rounds):
            for i, fn in enumerate(fns):
                t = time.perf_counter()
                fn()
                best[i] = min(best.get(i, float("inf")), time.perf_counter() - t)
    return {i: (best[i], outs[i]) for i in best}


def _rel(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def run_threads(cases: list[dict[str, Any]], threads: int) -> list[dict[str, Any]]:
    """Time every case on ``threads`` threads; the ``old`` case of each input size is the speed-up base."""
    torch.set_num_threads(threads)
    peak = mm_gflops()
    rows = []
    for key in dict.fromkeys((c["batch"], c["size"]) for c in cases):
        group = [c for c in cases if (c["batch"], c["size"]) == key]
        timed = _time_group(group, rounds=2 if key[1] > 64 else 3)
        base = next((i for i, c in enumerate(group) if c.get("base")), None)
        for i, c in enumerate(group):
            sec, out = timed[i]
            same = base is not None and i != base and not isinstance(c["model"], (ReferenceNCSNv2, NCSNv2, UNetScore))
            ref_out = timed[base][1] if same else None
            rows.append(dict(threads=threads, network=c["name"], input=f"{key[0]}x1x{key[1]}x{key[1]}",
                             ms_per_image=1e3 * sec / key[0], gflops=c["flops"] / sec / 1e9, mm_gflops=0.0,
                             speedup_vs_old=timed[base][0] / sec if same else None,
                             max_rel_diff_vs_old=_rel(out, ref_out) if same else None))
    peak = max(peak, mm_gflops())  # before and after: the better one is the machine's, not the load's
    for r in rows:
        r["mm_gflops"] = peak
    return rows


def bench_compile(threads: int) -> dict[str, Any]:
    """Compile time and speed of ``accelerate(compile=True)`` on the prior at 4x1x64x64."""
    torch.set_num_threads(threads)
    model = load_prior("bundled:ncsn").model.eval()
    fast = accelerate(copy.deepcopy(model), compile=True, channels_last=False)
    x, sigma = torch.rand(4, 1, 64, 64), torch.full((4,), 0.3)
    with torch.inference_mode():
        t = time.perf_counter()
        fast(x, sigma)
        first = time.perf_counter() - t
        eager, compiled = [], []
        for _ in range(3):  # interleaved, so both see the same load
            eager.append(_timeit(lambda: model(x, sigma), min_reps=1, min_s=0.0))
            compiled.append(_timeit(lambda: fast(x, sigma), min_reps=1, min_s=0.0))
        eager, compiled = min(eager), min(compiled)
    return dict(threads=threads, eager_ms_per_image=1e3 * eager / 4, compiled_ms_per_image=1e3 * compiled / 4,
                compile_seconds=first)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = ["| threads | network | input | ms/image | GFLOP/s (conv+mm) | % of mm peak | speed-up vs old "
             "| max rel diff vs old |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        sp = f"{r['speedup_vs_old']:.2f}x" if r["speedup_vs_old"] else ""
        diff = f"{r['max_rel_diff_vs_old']:.1e}" if r["max_rel_diff_vs_old"] is not None else ""
        lines.append(f"| {r['threads']} | {r['network']} | {r['input']} | {r['ms_per_image']:.1f} | "
                     f"{r['gflops']:.1f} | "
                     f"{100 * r['gflops'] / r['mm_gflops']:.0f}% | {sp} | {diff} |")
    peaks = sorted({(r["threads"], r["mm_gflops"]) for r in rows})
    lines.append("")
    lines += [f"fp32 torch.mm 1024^2 on {t} thread(s): {g:.1f} GFLOP/s (best of before/after)" for t, g in peaks]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--quick", action="store_true", help="64x64 only")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow: minutes of compiling)")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    cases = build_cases(args.quick)
    rows = [r for t in (int(s) for s in args.threads.split(",")) for r in run_threads(cases, t)]
    compiled = bench_compile(1) if args.compile else None
    info = dict(torch=torch.__version__, cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                load_before=load_before, load_after=os.getloadavg(), seconds=time.perf_counter() - t0)
    print(markdown(rows))
    if compiled:
        print(f"\ntorch.compile (1 thread, 4x1x64x64): {compiled['compile_seconds']:.0f} s to compile, "
              f"{compiled['compiled_ms_per_image']:.1f} ms/image vs {compiled['eager_ms_per_image']:.1f} eager")
    print(f"\nload average before {load_before}, after {info['load_after']}; {info['seconds']:.0f} s; "
          f"torch {torch.__version__}")
    if max(load_before[0], info["load_after"][0]) > (os.cpu_count() or 1):
        print("warning: more runnable processes than cores: multi-thread rows mostly time OpenMP threads "
              "waiting for a busy core; compare rows of the same thread count only")
    if args.json:
        args.json.write_text(json.dumps(dict(info=info, rows=rows, compile=compiled), indent=2))


if __name__ == "__main__":
    main()
