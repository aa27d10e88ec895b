"""Speed and memory of ``codecave enhance``, beside FFmpeg on the same files.

1. Frames per second of ``codecave enhance`` (default output: x264 CRF 14, medium, the
   source's pixel format) at 640x360 and 1280x720, beside FFmpeg decoding and
   re-encoding the same file with the same output settings, and beside FFmpeg's
   classical ``spp`` post-filter (quality 4, qp 8) with the same output settings.
   All three run in this one process tree, one after another, on the same clip, so
   the ratios are measured in one run.
2. Peak memory (RSS) of ``codecave enhance`` at 1280x720 on a clip and on the same
   content ten times longer, each in a fresh process, and of the enhancement alone (the
   pictures dropped, no output encoder). Goal: at most 1 GiB, and equal.
   The short clip is 60 frames by default: the output encoder (x264 medium) holds up to
   40 frames of lookahead, so a shorter clip measures an encoder that never filled.
3. With ``--evaluate DATASET``: peak RSS of ``codecave evaluate`` on one clip of a
   prepared dataset (e.g. Temple, 1200x800), in a fresh process. Goal: at most 2 GiB.

Needs the ``ffmpeg`` command (Debian: ``apt-get install ffmpeg``) for the FFmpeg rows.

Usage: python benchmarks/enhance_speed.py [--model vig] [--variant fast] [--weights default] [--frames 24]
       [--memory-frames 60] [--evaluate data/val_yuv --evaluate-clip temple] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

OUTPUT = ["-c:v", "libx264", "-crf", "14", "-preset", "medium"]


def make_clip(path: Path, width: int, height: int, frames: int) -> None:
    """x264 CRF 30 clip of a smooth texture panned by a camera (2, 1) px per frame."""
    from codecave.codec.encode import EncodeSettings, encode_frames

    g = torch.Generator().manual_seed(0)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, height // 8 + 8, width // 8 + 40, generator=g),
                                          size=(height + 64, width + 320), mode="bicubic")
    big = (big.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    clip = (np.ascontiguousarray(big[t % 32 : t % 32 + height, (2 * t) % 300 : (2 * t) % 300 + width])
            for t in range(frames))
    encode_frames(clip, path, EncodeSettings(crf=30, preset="veryfast"))


def ffmpeg_seconds(src: Path, out: Path, filters: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), *filters, *OUTPUT, "-an", str(out)],
                   check=True)
    return time.perf_counter() - start


def enhance_seconds(src: Path, out: Path, model: str, variant: str, weights: str) -> float:
    from codecave.enhance import Enhancer, enhance_video
    from codecave.models import create_model

    enhancer = Enhancer(create_model(model, weights=weights, variant=variant))  # loading is not timed
    start = time.perf_counter()
    enhance_video(src, out, model=enhancer, overwrite=True)
    return time.perf_counter() - start


def speed(size: tuple[int, int], frames: int, folder: Path, model: str, variant: str, weights: str,
          has_ffmpeg: bool) -> dict[str, object]:
    src = folder / f"clip_{size[0]}x{size[1]}.mp4"
    make_clip(src, *size, frames)
    row: dict[str, object] = {"size": f"{size[0]}x{size[1]}", "frames": frames}
    row["enhance_fps"] = frames / enhance_seconds(src, folder / "enhanced.mp4", model, variant, weights)
    if has_ffmpeg:
        row["reencode_fps"] = frames / ffmpeg_seconds(src, folder / "plain.mp4", [])
        row["spp_fps"] = frames / ffmpeg_seconds(src, folder / "spp.mp4", ["-vf", "spp=quality=4:qp=8"])
    return row


def peak_rss(code: str) -> float:
    """Run Python ``code`` in a fresh process; return its peak RSS in MiB."""
    wrapped = code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    done = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def stream_rss(src: Path, model: str, variant: str, weights: str) -> float:
    """Peak RSS of the same enhancement with the output pictures dropped: no encoder."""
    return peak_rss("from codecave.enhance import Enhancer; from codecave.models import create_model\n"
                    "from codecave.codec.reader import open_video\n"
                    f"m = Enhancer(create_model({model!r}, weights={weights!r}, variant={variant!r}))\n"
                    f"with open_video({str(src)!r}) as v:\n"
                    "    for _ in m.stream(v, output='yuv420'): pass")


def enhance_rss(src: Path, out: Path, model: str, variant: str, weights: str) -> float:
    return peak_rss("from codecave.enhance import Enhancer, enhance_video; from codecave.models import create_model\n"
                    f"m = Enhancer(create_model({model!r}, weights={weights!r}, variant={variant!r}))\n"
                    f"enhance_video({str(src)!r}, {str(out)!r}, model=m, overwrite=True)")


def main() -> None:
    from codecave.models.registry import default_variant

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pnp_vcve", help="registered model (default pnp_vcve)")
    ap.add_argument("--variant", default=None, help="variant (default: the model's default)")
    ap.add_argument("--sizes", default="640x360,1280x720", help="speed clip sizes (none: memory only)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    ap.add_argument("--weights", default="default", help="default (shipped), none (untrained: same speed), or a path")
    ap.add_argument("--frames", type=int, default=24, help="frames per speed clip")
    ap.add_argument("--memory-frames", type=int, default=60,
                    help="frames of the short 1280x720 clip (x10 for long; default 60: longer than x264's lookahead)")
    ap.add_argument("--evaluate", default=None, metavar="DATASET", help="also measure `codecave evaluate` memory")
    ap.add_argument("--evaluate-clip", default="temple")
    ap.add_argument("--evaluate-frames", type=int, default=6)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.variant = args.variant or default_variant(args.model)
    has_ffmpeg = shutil.which("ffmpeg") is not None
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
               f"{args.model} {args.variant} (weights {args.weights})")
    print(f"machine: {machine}")
    if not has_ffmpeg:
        print("ffmpeg not found: FFmpeg rows left out (apt-get install ffmpeg)")
    result: dict[str, object] = {"machine": machine}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if args.sizes != "none"]
        rows = [speed(s, args.frames, folder, args.model, args.variant, args.weights, has_ffmpeg) for s in sizes]
        result["speed"] = rows
        if rows:
            print("| size | frames | FFmpeg decode + x264 (fps) | FFmpeg spp + x264 (fps) | codecave enhance (fps) | "
                  "enhance / re-encode time | enhance / spp time |")
            print("|---|---|---|---|---|---|---|")
        for r in rows:
            ffm = (f"{r['reencode_fps']:.1f} | {r['spp_fps']:.1f}" if has_ffmpeg else "- | -")
            ratios = (f"{r['reencode_fps'] / r['enhance_fps']:.1f}x | {r['spp_fps'] / r['enhance_fps']:.1f}x"
                      if has_ffmpeg else "- | -")
            print(f"| {r['size']} | {r['frames']} | {ffm} | {r['enhance_fps']:.2f} | {ratios} |", flush=True)
        if not args.no_memory:
            short, long = folder / "short.mp4", folder / "long.mp4"
            make_clip(short, 1280, 720, args.memory_frames)
            make_clip(long, 1280, 720, 10 * args.memory_frames)
            mem = {"short_frames": args.memory_frames,
                   "short_mib": enhance_rss(short, folder / "o1.mp4", args.model, args.variant, args.weights),
                   "long_frames": 10 * args.memory_frames,
                   "long_mib": enhance_rss(long, folder / "o2.mp4", args.model, args.variant, args.weights)}
            result["enhance_memory"] = mem
            print(f"peak RSS of enhance at 1280x720: {mem['short_frames']} frames {mem['short_mib']:.0f} MiB, "
                  f"{mem['long_frames']} frames {mem['long_mib']:.0f} MiB", flush=True)
            alone = {"short_mib": stream_rss(short, args.model, args.variant, args.weights),
                     "long_mib": stream_rss(long, args.model, args.variant, args.weights)}
            result["stream_memory"] = alone
            print(f"the same without the output encoder (Enhancer.stream, pictures dropped): {mem['short_frames']} "
                  f"frames {alone['short_mib']:.0f} MiB, {mem['long_frames']} frames {alone['long_mib']:.0f} MiB",
                  flush=True)
    if args.evaluate:
        code = ("from codecave.enhance import Enhancer; from codecave.evaluate import evaluate\n"
                "from codecave.models import create_model\n"
                f"m = Enhancer(create_model({args.model!r}, weights={args.weights!r}, variant={args.variant!r}))\n"
                f"evaluate(m, {args.evaluate!r}, clips=[{args.evaluate_clip!r}], "
                f"max_frames={args.evaluate_frames})")
        mib = peak_rss(code)
        result["evaluate_memory"] = {"dataset": args.evaluate, "clip": args.evaluate_clip,
                                     "frames": args.evaluate_frames, "mib": mib}
        print(f"peak RSS of evaluate on {args.evaluate_clip} ({args.evaluate_frames} frames, every rate point): "
              f"{mib:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
