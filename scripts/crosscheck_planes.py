"""Cross-check: the reader's YUV planes equal what ``ffmpeg -f rawvideo`` writes, bit for bit.

Makes clips with the encoders codecave has (x264 8- and 10-bit, x265 10-bit, SVT-AV1,
FFV1, a size that is not a multiple of 16) or takes the files given, decodes each with
:func:`codecave.codec.reader.open_video` and with the Debian ``ffmpeg`` command
(``-f rawvideo -pix_fmt`` of the stream's own 4:2:0 format), and compares every sample.

Usage: python scripts/crosscheck_planes.py [FILE ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_clips(folder: Path) -> list[Path]:
    from codecave.codec.encode import EncodeSettings, encode_frames
    from codecave.data.synth import load_still, synthesize_clip
    from codecave.demo import sample_photo

    frames = list(synthesize_clip(load_still(sample_photo()), 8, (120, 200), seed=0).frames)
    odd = [f[:118, :198] for f in frames]
    plan = {
        "x264_8bit.mp4": (frames, EncodeSettings(crf=30)),
        "x264_10bit.mp4": (frames, EncodeSettings(crf=30, pix_fmt="yuv420p10le")),
        "x264_118x198.mp4": (odd, EncodeSettings(crf=30)),
        "x265_10bit.mp4": (frames, EncodeSettings(codec="x265", crf=30, pix_fmt="yuv420p10le")),
        "svtav1.mkv": (frames, EncodeSettings(codec="svtav1", crf=40, preset="10")),
        "ffv1.mkv": (frames, EncodeSettings(codec="ffv1", crf=None, preset=None)),
    }
    paths = []
    for name, (clip, settings) in plan.items():
        encode_frames(clip, folder / name, settings)
        paths.append(folder / name)
    return paths


def check(path: Path) -> tuple[str, int, bool]:
    from codecave.codec.reader import open_video

    with open_video(path, priors=False) as video:
        frames = [f.planes for f in video]
        pix_fmt = video.info.pix_fmt
    depth = frames[0].bit_depth
    fmt = "yuv420p" if depth == 8 else f"yuv420p{depth}le"
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", fmt, "-"],
                         capture_output=True, check=True).stdout
    ours = b"".join(np.concatenate([p.y.ravel(), p.u.ravel(), p.v.ravel()]).astype(
        np.uint8 if depth == 8 else "<u2").tobytes() for p in frames)
    return pix_fmt, len(frames), ours == raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found (apt-get install ffmpeg)")
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files or make_clips(Path(tmp))
        print("| file | pixel format | frames | planes == ffmpeg rawvideo |")
        print("|---|---|---|---|")
        ok = True
        for path in files:
            pix_fmt, n, same = check(path)
            ok &= same
            print(f"| {path.name} | {pix_fmt} | {n} | {'yes' if same else 'NO'} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
