"""Speed and memory of ``codecave enhance``.

1. Frames per second of enhancing an x264 clip with the default model at 640x360
   and 1280x720, against plain decoding plus re-encoding of the same file (same
   output settings).
2. Peak memory (RSS) of enhancing a clip and the same content ten times longer,
   each in a fresh process. Goal: equal within noise.

Usage: python benchmarks/enhance_speed.py [--frames 12] [--memory-frames 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
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
    clip = (np.ascontiguousarray(big[t % 32 : t % 32 + height, (3 * t) % 300 : (3 * t) % 300 + width])
            for t in range(frames))
    encode_frames(clip, path, EncodeSettings(crf=30, preset="veryfast"))


def reencode(src: Path, out: Path) -> int:
    """Plain decode + re-encode with the enhance command's default output settings."""
    from codecave.codec.encode import EncodeSettings
    from codecave.codec.reader import open_video
    from codecave.codec.writer import VideoWriter
    from codecave.enhance import DEFAULT_OUTPUT

    with open_video(src, priors=False) as video:
        writer = VideoWriter(out, src, EncodeSettings(**DEFAULT_OUTPUT))
        for f in video:
            writer.write(f.rgb, f.pts, f.time)
        writer.close()
        return writer.frames


def speed(size: tuple[int, int], frames: int, folder: Path) -> dict[str, object]:
    from codecave.enhance import enhance_video

    src = folder / f"clip_{size[0]}x{size[1]}.mp4"
    make_clip(src, *size, frames)
    start = time.perf_counter()
    reencode(src, folder / "plain.mp4")
    plain = time.perf_counter() - start
    start = time.perf_counter()
    enhance_video(src, folder / "enhanced.mp4", overwrite=True)
    enhanced = time.perf_counter() - start
    return {"size": f"{size[0]}x{size[1]}", "frames": frames, "plain_fps": frames / plain,
            "enhance_fps": frames / enhanced, "slowdown": enhanced / plain}


def peak_rss_child(src: Path, out: Path) -> float:
    """Run `codecave enhance` in a fresh process; return its peak RSS in MiB."""
    code = ("import resource, sys; from codecave.enhance import enhance_video; "
            f"enhance_video({str(src)!r}, {str(out)!r}, overwrite=True); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="frames per speed clip")
    ap.add_argument("--memory-frames", type=int, default=12, help="frames of the short memory clip (x10 for long)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"machine: {machine}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [speed(s, args.frames, folder) for s in ((640, 360), (1280, 720))]
        print("| size | frames | decode + re-encode (fps) | enhance (fps) | slowdown |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']} | {r['frames']} | {r['plain_fps']:.2f} | {r['enhance_fps']:.2f} | "
                  f"{r['slowdown']:.1f}x |", flush=True)
        short, long = folder / "short.mp4", folder / "long.mp4"
        make_clip(short, 320, 180, args.memory_frames)
        make_clip(long, 320, 180, 10 * args.memory_frames)
        mem = {"short_frames": args.memory_frames, "short_mib": peak_rss_child(short, folder / "o1.mp4"),
               "long_frames": 10 * args.memory_frames, "long_mib": peak_rss_child(long, folder / "o2.mp4")}
        print(f"peak RSS at 320x180: {mem['short_frames']} frames {mem['short_mib']:.0f} MiB, "
              f"{mem['long_frames']} frames {mem['long_mib']:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "speed": rows, "memory": mem}, indent=2))


if __name__ == "__main__":
    main()
