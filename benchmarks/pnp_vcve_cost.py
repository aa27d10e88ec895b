"""PnP-VCVE cost: parameters, FLOPs and milliseconds per frame.

For every variant (``small`` and ``paper`` on RGB, ``fast`` on the packed YUV grid
with grid priors) at 320x180, 640x360 and 1280x720, on CPU and (when one is present)
on a CUDA GPU. FLOPs are counted by ``torch.utils.flop_counter`` (2 per
multiply-add; convolutions and matrix products, not warping or activations).
A clip of ``--frames`` frames is enhanced in one call; time is per frame, median of
``--repeats`` runs after a warm-up (the FLOP-counting run). ``fast+dct_shrink`` is ``fast``
with the shifted-DCT shrinkage stage in front, as the shipped main weights have it.

Usage: python benchmarks/pnp_vcve_cost.py [--device cpu|cuda|all] [--variants small,paper,fast,fast+dct_shrink]
       [--frames 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from codecave.models import create_model

SIZES = ((320, 180), (640, 360), (1280, 720))


def priors(t: int, h: int, w: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    part = torch.randint(0, 4, (1, t, h, w), generator=g)
    return {k: v.to(device) for k, v in {
        "crf": torch.tensor([30.0]), "qp": torch.full((1, t), 32.0), "frame_type": torch.ones(1, t, dtype=torch.long),
        "mv_past": torch.randn(1, t, 2, h, w, generator=g), "mv_future": torch.randn(1, t, 2, h, w, generator=g),
        "mv_valid": torch.ones(1, t, 2, h, w, dtype=torch.bool),
        "partition": torch.nn.functional.one_hot(part, 4).permute(0, 1, 4, 2, 3).float(),
    }.items()}


def measure(variant: str, size: tuple[int, int], device: torch.device, frames: int, repeats: int) -> dict[str, object]:
    name, _, extra = variant.partition("+")
    overrides = {"dct_shrink": 1.0} if extra == "dct_shrink" else {}
    if extra and not overrides:
        sys.exit(f"{variant}: the only addition is +dct_shrink")
    model = create_model("pnp_vcve", weights=None, variant=name, **overrides).to(device)
    w, h = size
    if model.domain == "yuv420":  # packed 4:2:0 on the 4x4 grid, priors on the same grid
        h, w = -(-h // 16) * 4, -(-w // 16) * 4
        x = torch.rand(1, frames, 24, h, w, device=device)
    else:
        x = torch.rand(1, frames, 3, h, w, device=device)
    p = priors(frames, h, w, device)
    w, h = size
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(x, p)  # also the warm-up
        flops = counter.get_total_flops() / frames
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x, p)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) / frames)
    return {"variant": variant, "size": f"{w}x{h}", "device": str(device),
            "params_M": sum(q.numel() for q in model.parameters()) / 1e6,
            "gflops_per_frame": flops / 1e9, "ms_per_frame": 1000 * statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cuda only when available)")
    ap.add_argument("--variants", default="small,paper,fast")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES),
                    help="WxH list (default: all three; the paper variant at 1280x720 takes minutes and GBs)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"machine: {machine}")
    rows = []
    print("| variant | size | device | params (M) | GFLOPs/frame | ms/frame |")
    print("|---|---|---|---|---|---|")
    for device in devices:
        for variant in args.variants.split(","):
            for size in sizes:
                # progress on stderr, so that the table on stdout stays clean
                print(f"measuring {variant} {size[0]}x{size[1]} on {device}... ", end="", file=sys.stderr, flush=True)
                start = time.perf_counter()
                r = measure(variant, size, device, args.frames, args.repeats)
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                print(f"{time.perf_counter() - start:.0f} s, peak memory so far {peak:.1f} GB", file=sys.stderr,
                      flush=True)
                rows.append(r)
                print(f"| {r['variant']} | {r['size']} | {r['device']} | {r['params_M']:.3f} | "
                      f"{r['gflops_per_frame']:.1f} | {r['ms_per_frame']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
