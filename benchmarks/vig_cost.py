"""VIG's cost per output frame: parameters, GFLOPs and CPU time at a given size.

The issue's target is 15 frames per second at 640x360 on two cores (67 ms/frame).

    python benchmarks/vig_cost.py --size 640x360 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from codecave.models.vig import FUTURE, VARIANTS, VIG


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x360", help="WxH (multiples of 4)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    print(f"{w}x{h}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| variant | params (M) | GFLOPs/frame | ms/frame | frames/s |")
    print("|---|---|---|---|---|")
    window = torch.rand(1, FUTURE + 1, 1, h, w)
    for name, config in VARIANTS.items():
        model = VIG(config).eval()
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                _, state = model.step(window)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                _, state = model.step(window, state)
                times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {params:.3f} | {counter.get_total_flops() / 1e9:.1f} | {ms:.0f} | {1000 / ms:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
