"""Which x264 CRF gives the same PSNR-Y as a given x265 or SVT-AV1 CRF?

codecave's models are conditioned on a sequence CRF on x264's scale (they were trained
on x264). x265's CRF (on HEVC's QP scale) and SVT-AV1's CRF (0-63, AV1's quantiser index
/ 4) mean other qualities. This script encodes the same clips with each encoder over a
CRF grid, measures mean PSNR-Y of the decoded Y plane against the source, and finds for
every x265 / SVT-AV1 CRF the x264 CRF of equal PSNR (linear interpolation on x264's
curve). The table it prints is what :data:`codecave.codec.priors.X264_EQUIVALENT_CRF`
holds.

    python benchmarks/crf_equivalence.py ../shared/data/train/sequences/*.mkv --frames 16 --clips 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from codecave.codec.convert import rgb_to_yuv420_like_encoder
from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video

GRIDS = {
    "x264": (6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 51),
    "x265": (10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 51),
    "svtav1": (10, 16, 22, 28, 34, 40, 46, 52, 58, 63),
}


def load(path: Path, frames: int, size: tuple[int, int]) -> list:
    """The first ``frames`` pictures of a lossless clip as 8-bit 4:2:0 planes (RGB sources
    converted once, as an encoder's input would be), centre-cropped to ``size`` (H, W)."""
    h, w = size
    out = []
    with open_video(path, priors=False) as video:
        for frame in video:
            rgb = frame.rgb
            top, left = max(0, (rgb.shape[0] - h) // 4 * 2), max(0, (rgb.shape[1] - w) // 4 * 2)
            hh, ww = min(h, rgb.shape[0]) // 2 * 2, min(w, rgb.shape[1]) // 2 * 2
            out.append(rgb_to_yuv420_like_encoder(rgb[top:top + hh, left:left + ww]))
            if len(out) == frames:
                break
    return out


def psnr_y(x: np.ndarray, ref: np.ndarray) -> float:
    mse = np.mean((x.astype(np.float64) - ref.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def psnr_at(planes: list, codec: str, crf: float, work: Path) -> float:
    path = work / f"{codec}.mkv"
    encode_frames(iter(planes), path, EncodeSettings(codec=codec, crf=float(crf), preset="medium", threads=1))
    with open_video(path, priors=False) as video:
        decoded = [f.planes.y for f in video]
    return float(np.mean([psnr_y(d, p.y) for d, p in zip(decoded, planes)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="+", type=Path, help="lossless clips")
    ap.add_argument("--clips", dest="count", type=int, default=4, help="use this many (evenly spaced)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="256x448", help="centre crop HxW (default 256x448)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/codecave-crf-equivalence"))
    ap.add_argument("--json", type=Path, help="also write the curves and the table here")
    args = ap.parse_args(argv)
    h, w = (int(x) for x in args.size.split("x"))
    pick = np.linspace(0, len(args.clips) - 1, min(args.count, len(args.clips))).round().astype(int)
    clips = [args.clips[i] for i in sorted(set(pick))]
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    curves: dict[str, dict[float, float]] = {c: {} for c in GRIDS}
    for clip in clips:
        planes = load(clip, args.frames, (h, w))
        for codec, grid in GRIDS.items():
            for crf in grid:
                curves[codec].setdefault(crf, 0.0)
                curves[codec][crf] += psnr_at(planes, codec, crf, args.work) / len(clips)
        print(f"{clip.name}: done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    ref = sorted(curves["x264"].items())  # PSNR falls as CRF rises
    ref_crf = np.array([c for c, _ in ref], dtype=float)
    ref_psnr = np.array([p for _, p in ref])
    table = {}
    print(f"clips: {', '.join(c.name for c in clips)}; {args.frames} frames, {h}x{w} crop, preset medium")
    print("x264 CRF -> mean PSNR-Y: " + ", ".join(f"{c:g}: {p:.2f}" for c, p in ref))
    for codec in ("x265", "svtav1"):
        rows = []
        for crf, p in sorted(curves[codec].items()):
            # np.interp needs increasing x: interpolate on -PSNR
            eq = float(np.interp(-p, -ref_psnr, ref_crf))
            rows.append((crf, round(eq, 1)))
            print(f"{codec} CRF {crf:>4g}: PSNR-Y {p:6.2f} dB = x264 CRF {eq:5.1f}")
        table[codec] = rows
    print("X264_EQUIVALENT_CRF = " + json.dumps(table))
    print(f"{time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"clips": [str(c) for c in clips], "curves": curves, "table": table},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
