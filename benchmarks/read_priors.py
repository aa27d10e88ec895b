"""Cost of reading codec priors, and memory against clip length.

1. Time to decode an H.264 clip with all priors (vectors, QP, references, 4x4-grid
   rasterisation) against plain decoding to RGB of the same file. Goal: <= 1.3x at 720p.
2. Peak memory (RSS) of reading all priors of a short clip and of the same content
   ten times longer, each in a fresh process. Goal: equal.

Usage: python benchmarks/read_priors.py [--size 1280x720] [--frames 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_clip(path: Path, width: int, height: int, frames: int) -> None:
    from codecave.codec.encode import EncodeSettings, encode_frames

    g = torch.Generator().manual_seed(0)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, height // 8 + 8, width // 8 + 40, generator=g),
                                          size=(height + 64, width + 320), mode="bicubic")
    big = (big.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    def gen():
        for t in range(frames):
            x = (t * 3) % 300
            yield np.ascontiguousarray(big[t % 32 : t % 32 + height, x : x + width])

    encode_frames(gen(), path, EncodeSettings(codec="x264", crf=23, preset="veryfast"))


def read(path: str, priors: bool) -> float:
    from codecave.codec.rasterize import compact_priors
    from codecave.codec.reader import open_video

    start = time.perf_counter()
    with open_video(path, priors=priors) as video:
        for frame in video:
            if priors:
                compact_priors(frame.priors, frame.height, frame.width)
    return time.perf_counter() - start


def child(path: str) -> None:
    """Read all priors, then print peak RSS in MiB."""
    read(path, True)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    w, h = (int(v) for v in args.size.split("x"))
    out: dict[str, object] = {"machine": f"{platform.processor() or platform.machine()}, "
                                         f"{torch.get_num_threads()} threads, python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, w, h, args.frames)
        plain = min(read(str(clip), False) for _ in range(args.repeats))
        full = min(read(str(clip), True) for _ in range(args.repeats))
        out.update({"size": args.size, "frames": args.frames, "plain_s": plain, "priors_s": full,
                    "ratio": full / plain, "plain_fps": args.frames / plain, "priors_fps": args.frames / full})
        mem = {}
        for n in (args.frames // 2, args.frames * 5):
            longer = Path(tmp) / f"clip{n}.mp4"
            make_clip(longer, w // 2, h // 2, n)
            rss = subprocess.run([sys.executable, __file__, "--child", str(longer)], check=True,
                                 capture_output=True, text=True).stdout.split()[-1]
            mem[n] = float(rss)
        out["peak_rss_mib"] = mem
    print(f"machine: {out['machine']}")
    print(f"{'clip':>22} {'plain decode':>13} {'with priors':>12} {'ratio':>6}")
    print(f"{args.size + ' x' + str(args.frames):>22} {out['plain_fps']:>9.1f} fps {out['priors_fps']:>8.1f} fps "
          f"{out['ratio']:>6.2f}   (goal <= 1.3)")
    short, long_ = sorted(mem)
    print(f"peak RSS reading priors at {w // 2}x{h // 2}: {short} frames {mem[short]:.0f} MiB, "
          f"{long_} frames {mem[long_]:.0f} MiB   (goal: equal)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
