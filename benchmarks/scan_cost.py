"""What the up-front damage scan costs next to the enhancement it protects.

``enhance_video`` decodes the whole input once (:func:`codecave.codec.reader.scan_video`)
before enhancing, so that damage is known before anything is written. This encodes a
lossless clip with x264 and times the scan and the whole enhancement, on one thread.

    python benchmarks/scan_cost.py ../shared/data/train/sequences/baseball_720p.mkv
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video, scan_video
from codecave.enhance import Enhancer, enhance_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a (lossless) clip")
    ap.add_argument("--crf", type=float, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open_video(args.source, priors=False) as video:
        frames = [f.rgb for f in video]
    with tempfile.TemporaryDirectory() as work:
        clip, out = Path(work) / "clip.mp4", Path(work) / "out.mp4"
        encode_frames(frames, clip, EncodeSettings(codec="x264", crf=args.crf, threads=1))
        start = time.perf_counter()
        scan_video(clip)
        scan = time.perf_counter() - start
        enhancer = Enhancer()
        start = time.perf_counter()
        enhance_video(clip, out, model=enhancer)
        total = time.perf_counter() - start
    h, w = frames[0].shape[:2]
    print(f"{w}x{h}, {len(frames)} frames, x264 CRF {args.crf:g}: scan {scan:.3f} s, whole enhance_video "
          f"{total:.2f} s (the scan is {100 * scan / total:.1f}% of it), one thread")


if __name__ == "__main__":
    main()
