"""CAVSR's speed: 4x super-resolution of a 320x180 file to 1280x720 on these cores.

Makes a 320x180 x264 clip (CRF 25, B-frames; a panned texture, no data needed), then
times, in one run: the model alone over the decoded clip in overlapping windows
(:meth:`codecave.enhance.Enhancer.enhance_clip`, ms per output frame) in float32 and
under bfloat16 autocast, and the whole file through ``enhance_video`` (decode, priors,
super-resolution, x264 encode of the 1280x720 output) in frames per second. The issue's
target is at least 2 frames per second on two cores. Several variants (``--variant
small,fast``) are timed in one run on the same clip, so their ratio is of one run.

    python benchmarks/cavsr_cost.py --threads 2 --variant small,fast
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.rasterize import compact_priors, stack_compact
from codecave.codec.reader import open_video
from codecave.enhance import EnhanceOptions, Enhancer, enhance_video
from codecave.models import create_model
from codecave.models.cavsr import count


def pan(n: int, h: int, w: int) -> list[np.ndarray]:
    """A camera panning over a smooth random texture (as the tests' clips)."""
    g = torch.Generator().manual_seed(0)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, (h + 4 * n) // 8, (w + 8 * n) // 8, generator=g),
                                          size=(h + 4 * n, w + 8 * n), mode="bicubic", align_corners=False)
    big = (big.clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    return [np.ascontiguousarray(big[2 * t : 2 * t + h, 4 * t : 4 * t + w]) for t in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="320x180", help="input WxH")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=None, help="output frames per window (default: the model's)")
    ap.add_argument("--variant", default="small,fast", help="one variant or several, comma-separated")
    ap.add_argument("--weights", default="none",
                    help="a run folder or .safetensors (speed does not depend on it; one variant only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    variants = args.variant.split(",")
    if args.weights != "none" and len(variants) > 1:
        raise SystemExit("--weights goes with one --variant")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        encode_frames(pan(args.frames, h, w), src, EncodeSettings(codec="x264", crf=25, bframes=3, threads=1))
        with open_video(src) as video:
            coded = list(video)
        rgb = np.stack([f.rgb for f in coded])
        stacked = stack_compact([compact_priors(f.priors, f.height, f.width) for f in coded])
        print(f"{w}x{h} -> {4 * w}x{4 * h}, {args.frames} frames, {torch.get_num_threads()} threads, "
              f"torch {torch.__version__}")
        print("| variant | parameters (M) | run | ms/frame | frames/s |")
        print("|---|---|---|---|---|")
        for variant in variants:
            model = create_model("cavsr", weights=args.weights, variant=variant)
            name = f"{variant} (chunk {args.chunk or model.stream_chunk}, context {model.temporal_radius})"
            params = f"{count(model.variant) / 1e6:.2f}"
            for precision in ("fp32", "bf16"):
                enhancer = Enhancer(model, EnhanceOptions(device="cpu", chunk=args.chunk, precision=precision))
                warm = 2 * enhancer.chunk
                enhancer.enhance_clip(rgb[:warm], {k: v[:warm] for k, v in stacked.items()}, 25.0)
                start = time.perf_counter()
                enhancer.enhance_clip(rgb, stacked, 25.0)
                ms = 1000 * (time.perf_counter() - start) / len(rgb)
                print(f"| {name} | {params} | model only, {precision} | {ms:.0f} | {1000 / ms:.2f} |", flush=True)
            for precision in ("fp32", "bf16"):
                enhancer = Enhancer(model, EnhanceOptions(device="cpu", chunk=args.chunk, precision=precision))
                start = time.perf_counter()
                result = enhance_video(src, Path(tmp) / f"out_{variant}_{precision}.mp4", model=enhancer, overwrite=True)
                seconds = time.perf_counter() - start
                print(f"| {name} | {params} | `enhance_video` file to file, {precision} | "
                      f"{1000 * seconds / result.frames:.0f} | {result.frames / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
