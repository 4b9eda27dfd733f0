"""Speed benchmark: training images/s and ms per network evaluation, CPU or GPU.

    python scripts/bench_speed.py --device cpu            # the bundled prior's network
    python scripts/bench_speed.py --model runs/prior --device cuda

Prints Markdown rows; ``medscore benchmark`` includes the same table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

from medscore.evaluation.benchmark import speed_table
from medscore.evaluation.report import machine

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(speed_table(args.model, device=args.device, repeats=args.repeats))
