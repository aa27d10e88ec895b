"""Are encoder outputs bit-reproducible? The same frames encoded again and again in one
process, each time from freshly made PyAV frames (so the heap differs), one encoder thread.

Found while building many-videos (``codecave.fleet``): PyAV's bundled libx264 in lossy
modes gives more than one output for the same input from run to run, even with
``threads=1``; with ``asm=0`` it gives one. Lossless x264 and FFV1 give one. Outputs
written by ``codecave enhance`` are therefore byte-identical across workers and Ray only
with a lossless codec (``--codec ffv1`` or ``x264-lossless``); lossy outputs agree to the
encoder's run-to-run variation. The Debian ``ffmpeg`` CLI (its own libx264), where present,
is run on the same frames for comparison.

    python benchmarks/x264_reproducibility.py --runs 12
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np

SETTINGS = {
    "x264 crf 14": ("libx264", {"crf": "14"}),
    "x264 crf 14 asm=0": ("libx264", {"crf": "14", "x264-params": "asm=0"}),
    "x264 lossless (qp 0)": ("libx264", {"qp": "0"}),
    "ffv1": ("ffv1", {}),
}


def frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Panning smooth noise, ``(H * 3 / 2, W)`` uint8 yuv420p arrays."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (height // 8 + 8, width // 8 + 8), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    out = []
    for t in range(count):
        y = big[t : t + height, 2 * t : 2 * t + width]
        uv = np.full((height // 2, width), 128, np.uint8)
        out.append(np.ascontiguousarray(np.concatenate([y, uv])))
    return out


def encode(arrays: list[np.ndarray], codec: str, options: dict[str, str], path: Path) -> str:
    """Encode through PyAV with one thread; the output's SHA-256."""
    height, width = arrays[0].shape[0] * 2 // 3, arrays[0].shape[1]
    noise = [np.random.randint(0, 255, np.random.randint(100, 100000), dtype=np.uint8) for _ in range(20)]
    container = av.open(str(path), "w", format="h264" if codec == "libx264" else "matroska")
    container.flags |= av.container.Flags.bitexact.value
    stream = container.add_stream(codec, rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    stream.options = options
    for n, array in enumerate(arrays):
        frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
        frame.pts = n
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    del noise
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    arrays = frames(args.frames, 96, 160)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"PyAV {av.__version__}, FFmpeg {av.library_versions['libavcodec']} (libavcodec); "
              f"{args.runs} encodes of the same {args.frames} frames of 160x96, one thread")
        for name, (codec, options) in SETTINGS.items():
            counts = collections.Counter(encode(arrays, codec, options, Path(tmp) / "out")[:8]
                                         for _ in range(args.runs))
            print(f"  {name:22s} {len(counts)} distinct output(s): {dict(counts)}")
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg:
            raw = Path(tmp) / "in.yuv"
            raw.write_bytes(b"".join(a.tobytes() for a in arrays))
            counts = collections.Counter()
            for _ in range(args.runs):
                out = subprocess.run([ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "160x96",
                                      "-i", str(raw), "-c:v", "libx264", "-crf", "14", "-threads", "1",
                                      "-f", "h264", "-"], capture_output=True, check=True).stdout
                counts[hashlib.sha256(out).hexdigest()[:8]] += 1
            print(f"  {'ffmpeg CLI x264 crf 14':22s} {len(counts)} distinct output(s): {dict(counts)}")


if __name__ == "__main__":
    main()
