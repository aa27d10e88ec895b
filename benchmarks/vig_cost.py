"""VIG's cost per output frame when streaming a file: parameters, GFLOPs and CPU time.

Times :class:`codecave.models.vig.VIGStream` (each frame's first-block taps computed
once, as ``codecave enhance`` runs it) in float32 and under bfloat16 autocast, for the
shipped variants and any widths given with ``--widths``. The issue's target is 15 frames
per second at 640x360 on two cores (67 ms/frame for the model and the file's decode and
encode together).

    python benchmarks/vig_cost.py --size 640x360 --threads 2 --widths 8,16,16 16,32,32
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from codecave.models.vig import VARIANTS, VIG, VIGConfig, VIGStream


def stream_cost(model: VIG, h: int, w: int, frames: int, bf16: bool) -> tuple[float, float]:
    """(GFLOPs, median ms) of one streamed frame once the stream is full."""
    qp = torch.tensor([32.0])
    stream = VIGStream(model, qp)
    frame = torch.rand(1, 1, h, w)
    times, flops = [], 0.0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(frames):
            if i == frames - 1:
                with FlopCounterMode(display=False) as counter:
                    stream.push(frame)
                flops = counter.get_total_flops() / 1e9
                continue
            start = time.perf_counter()
            stream.push(frame)
            if i >= 4:
                times.append(time.perf_counter() - start)
    return flops, 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x360", help="WxH (multiples of 4)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--frames", type=int, default=12, help="frames streamed per setting (4 warm up)")
    ap.add_argument("--widths", nargs="*", default=[],
                    help="extra c0,c1,c2 settings to time; c0,c1,c2,full for the full-resolution base (no UD)")
    ap.add_argument("--skip-paper", action="store_true", help="leave out the paper variant (slow)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    print(f"{w}x{h}, {torch.get_num_threads()} threads, torch {torch.__version__}, streamed (taps cached)")
    print("| setting | c0/c1/c2 | params (k) | GFLOPs/frame | fp32 ms/frame | bf16 ms/frame | bf16 frames/s |")
    print("|---|---|---|---|---|---|---|")
    settings = [(name, cfg) for name, cfg in VARIANTS.items() if not (args.skip_paper and name == "paper")]
    for text in args.widths:
        parts = text.split(",")
        c0, c1, c2 = (int(v) for v in parts[:3])
        settings.append((text, VIGConfig(c0=c0, c1=c1, c2=c2, resample=parts[3:] != ["full"])))
    for name, config in settings:
        model = VIG(config).eval()
        gflops, fp32 = stream_cost(model, h, w, args.frames, bf16=False)
        _, bf16 = stream_cost(model, h, w, args.frames, bf16=True)
        params = sum(p.numel() for p in model.parameters()) / 1e3
        print(f"| {name} | {config.c0}/{config.c1}/{config.c2} | {params:.1f} | {gflops:.2f} | {fp32:.0f} | "
              f"{bf16:.0f} | {1000 / bf16:.1f} |", flush=True)


if __name__ == "__main__":
    main()
