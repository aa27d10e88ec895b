"""How often the reference-resolution rule names the frame a vector really points to.

Clips are made with an irregular, known camera path (a different integer shift per
frame), so the displacement to frame t-j is different for every j. Each vector is
assigned the distance j whose true displacement it matches best (within 0.5 px),
and compared with the distance the reader resolved. Counted over vectors of
textured blocks that match some j at all.

Usage: python benchmarks/reference_accuracy.py [--frames 48] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch


def path_offsets(frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.choice([1, 2, 3, 4, 5], size=(frames, 2)) * rng.choice([1, 1, 1, -1], size=(frames, 2))
    steps[0] = 0
    return np.cumsum(steps, axis=0)  # (T, 2) offset of frame t into the texture


def make_frames(frames: int, height: int, width: int) -> tuple[list[np.ndarray], np.ndarray]:
    off = path_offsets(frames)
    off -= off.min(axis=0)
    g = torch.Generator().manual_seed(1)
    span = off.max(axis=0)
    big = torch.nn.functional.interpolate(
        torch.rand(1, 3, (height + span[1]) // 6 + 4, (width + span[0]) // 6 + 4, generator=g),
        size=(height + span[1] + 8, width + span[0] + 8), mode="bicubic")
    big = (big.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    out = [np.ascontiguousarray(big[y : y + height, x : x + width]) for x, y in off]
    return out, off


def measure(frames: list[np.ndarray], off: np.ndarray, path: Path, bframes: int, ref: int) -> dict[str, float]:
    from codecave.codec.encode import EncodeSettings, encode_frames
    from codecave.codec.reader import open_video

    encode_frames(frames, path, EncodeSettings(codec="x264", crf=23, bframes=bframes, ref=ref,
                                               params={"scenecut": "0"}))
    right = total = 0
    for f in open_video(path):
        for direction, resolved in ((-1, f.priors.ref_past), (1, f.priors.ref_future)):
            rows = f.priors.mvs[f.priors.mvs["direction"] == direction]
            if not len(rows) or resolved is None:
                continue
            t = f.index
            cands = [j for j in range(1, 17) if 0 <= t + direction * j < len(off)]
            # pixel (x, y) of frame t shows texture (x + off_t); in frame s it sits at x + off_t - off_s
            true = np.array([off[t] - off[t + direction * j] for j in cands], dtype=np.float32)
            mv = np.stack([rows["dx"], rows["dy"]], axis=1)
            err = np.abs(mv[:, None, :] - true[None]).max(axis=2)
            best = err.argmin(axis=1)
            ok = err[np.arange(len(rows)), best] <= 0.5
            total += int(ok.sum())
            right += int((np.array(cands)[best[ok]] == resolved).sum())
    return {"vectors": total, "right": right, "accuracy": right / max(total, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="320x192")
    ap.add_argument("--json")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    frames, off = make_frames(args.frames, h, w)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bframes in (0, 3):
            for ref in (1, 3, 5):
                r = measure(frames, off, Path(tmp) / f"b{bframes}r{ref}.mp4", bframes, ref)
                rows.append({"bframes": bframes, "ref": ref, **r})
    print(f"machine: {platform.machine()}, python {platform.python_version()}; x264 CRF 23, {args.size}, "
          f"{args.frames} frames, irregular pan")
    print(f"{'bframes':>7} {'ref':>4} {'vectors':>8} {'right':>8} {'accuracy':>9}")
    for r in rows:
        print(f"{r['bframes']:>7} {r['ref']:>4} {r['vectors']:>8} {r['right']:>8} {r['accuracy']:>9.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
