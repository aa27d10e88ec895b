"""Cost of the default's two full-resolution stages outside training, by strip size.

The shifted-DCT shrinkage (``codecave.layers.dct``: 16 coefficients per pixel) and the
luma branch of PnP-VCVE ``fast`` (16 channels per pixel) run in strips of rows outside
training (same sums as the whole picture). This times each on random pictures at 640x360
and 1280x720 for several strip sizes, in ms per picture (best of ``--repeats``), so the
shipped sizes (``dct.STRIP_PIXELS``, one picture at a time; ``PnPVCVEFast.luma_strip``)
can be checked on another machine. The shrinkage runs in float32, the luma branch under
bf16 autocast (as ``codecave enhance`` runs them). "As many as fit in 2^20 pixels": the
strips taken over groups of pictures, as the layer first did.

Usage: python benchmarks/strip_cost.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from codecave.layers import dct
from codecave.layers.dct import ShiftedDCTShrinkage
from codecave.models import create_model

SIZES = ((8, 360, 640), (4, 720, 1280))  # pictures, height, width


def best_ms(fn: object, pictures: int, repeats: int) -> float:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fn()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    return best / pictures * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shipped = (dct.CHUNK_PIXELS, dct.STRIP_PIXELS)
    shrink = ShiftedDCTShrinkage()
    model = create_model("pnp_vcve", weights="default", variant="fast").eval()
    print("| stage | strip (pixels) | pictures per strip | " + " | ".join(f"{w}x{h} (ms)" for _, h, w in SIZES) + " |")
    print("|---|---|---|" + "---|" * len(SIZES))
    def grouped(x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        """The layer's strips over groups of pictures of at most CHUNK_PIXELS (as first written)."""
        group = max(1, shipped[0] // (x.shape[-2] * x.shape[-1]))
        with torch.autocast("cpu", enabled=False):
            return torch.cat([shrink._shrink(p, q) for p, q in zip(x.split(group), qp.split(group))])

    for strip, one in ((1 << 17, False), (1 << 40, False), (1 << 17, True), (1 << 16, True), (1 << 15, True)):
        dct.STRIP_PIXELS = strip
        cells = []
        for n, h, w in SIZES:
            x, qp = torch.rand(n, 1, h, w), torch.full((n,), 30.0)
            run = (lambda x=x, qp=qp: shrink(x, qp)) if one else (lambda x=x, qp=qp: grouped(x, qp))
            cells.append(f"{best_ms(run, n, args.repeats):.1f}")
        label = "whole pictures" if strip == 1 << 40 else f"2^{strip.bit_length() - 1}"
        mark = " (shipped)" if one and strip == shipped[1] else ""
        print(f"| shrinkage | {label}{mark} | {'one' if one else 'as many as fit in 2^20 pixels'} | "
              + " | ".join(cells) + " |", flush=True)
    dct.STRIP_PIXELS = shipped[1]
    default = model.luma_strip
    for strip in (1 << 40, 1 << 18, 1 << 17, 1 << 16):
        model.luma_strip = strip
        cells = []
        for n, h, w in SIZES:
            group = min(n, max(1, model.pixel_chunk // (h * w)))  # the pictures of one BAE group
            y = torch.rand(group, 1, h, w)
            cells.append(f"{best_ms(lambda y=y: model._luma_branch(y), group, args.repeats):.1f}")
        label = "whole pictures" if strip == 1 << 40 else f"2^{strip.bit_length() - 1}"
        mark = " (shipped)" if strip == default else ""
        print(f"| luma branch | {label}{mark} | a BAE group | " + " | ".join(cells) + " |", flush=True)
    model.luma_strip = default


if __name__ == "__main__":
    main()
