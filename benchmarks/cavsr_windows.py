"""What streaming CAVSR in overlapping windows costs against one whole-clip run.

CAVSR's recurrence runs both ways over the whole clip; ``codecave enhance`` streams a
file in windows of ``chunk`` output frames with ``radius`` frames of context on each side
(``CAVSR.temporal_radius``), so memory stays bounded. For each (radius, chunk) this prints
the 8-bit output's difference to the whole-clip output (mean and largest absolute
difference, PSNR-Y between the two) and both outputs' PSNR-Y against the high-resolution
ground truth, with the time per frame, on one prepared validation clip.

    python benchmarks/cavsr_windows.py data/sr_val --clip temple --variant crf25 \\
        --weights runs/cavsr_small --radii 1,2,4,8 --chunk 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.metrics.quality import psnr_y
from codecave.models import create_model


def _t(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2).float().div(255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--clip", default="temple")
    ap.add_argument("--variant", default="crf25")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--radii", default="1,2,4,8")
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--frames", type=int, default=None, help="first N frames (default all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model("cavsr", weights=args.weights)
    clip = load_clip(args.dataset, args.clip, args.variant)
    n = len(clip.decoded) if args.frames is None else min(args.frames, len(clip.decoded))
    frames = np.asarray(clip.decoded[:n])
    priors = {k: v[:n] for k, v in clip.priors.items()}
    crf = variant_crf(clip.info, args.variant)
    gt = _t(clip.gt[:n])

    def run(radius: int, chunk: int) -> tuple[np.ndarray, float]:
        enhancer = Enhancer(model, EnhanceOptions(device="cpu", chunk=chunk, precision="fp32"))
        enhancer.radius = radius
        start = time.perf_counter()
        out = enhancer.enhance_clip(frames, priors, crf)
        return out, 1000 * (time.perf_counter() - start) / n

    whole, whole_ms = run(0, n)
    whole_psnr = float(psnr_y(_t(whole), gt).mean())
    print(f"{args.clip} {args.variant}, {n} frames of {frames.shape[2]}x{frames.shape[1]} -> 4x, "
          f"{torch.get_num_threads()} threads; whole clip in one run: PSNR-Y {whole_psnr:.3f} dB, {whole_ms:.0f} ms/frame")
    print("| context each side | chunk | mean abs diff to whole clip (8-bit) | largest | PSNR-Y vs whole-clip output "
          "| PSNR-Y vs ground truth | difference to whole clip (dB) | ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for radius in (int(r) for r in args.radii.split(",")):
        out, ms = run(radius, args.chunk)
        diff = np.abs(out.astype(np.int16) - whole.astype(np.int16))
        agreement = float(psnr_y(_t(out), _t(whole)).mean())
        p = float(psnr_y(_t(out), gt).mean())
        print(f"| {radius} | {args.chunk} | {diff.mean():.4f} | {diff.max()} | {agreement:.2f} | {p:.3f} | "
              f"{p - whole_psnr:+.4f} | {ms:.0f} |")


if __name__ == "__main__":
    main()
