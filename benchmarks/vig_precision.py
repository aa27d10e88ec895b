"""VIG in bfloat16 against float32 on a validation set: what ``codecave enhance`` writes.

For each clip and rate point, the first ``--frames`` frames are enhanced twice by the
:class:`codecave.enhance.Enhancer` (8-bit output, the Y plane recurrent, chroma kept),
once in fp32 and once under bf16 autocast; printed: ΔPSNR-Y of both against the decoded
input, their difference, and how many output samples differ and by how much.

    python benchmarks/vig_precision.py data/vig_val [--weights default] [--variants ldp22,ldp37,crf35]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.grid import luma
from codecave.models import create_model


def psnr_y(codes: np.ndarray, gt: np.ndarray, top: float) -> float:
    a, g = (luma(torch.from_numpy(x.astype(np.float64))) for x in (codes, gt))
    return float((10 * torch.log10(top**2 / (a - g).pow(2).flatten(1).mean(1))).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("val")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--variants", default="ldp22,ldp37,crf35")
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()
    model = create_model("vig", weights=args.weights)
    runs = {p: Enhancer(model, EnhanceOptions(precision=p)) for p in ("fp32", "bf16")}
    print("| rate point | ΔPSNR-Y fp32 | ΔPSNR-Y bf16 | bf16 - fp32 | Y samples differing | max difference (codes) |")
    print("|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        gains = {p: [] for p in runs}
        differing, total, worst = 0, 0, 0
        for name in sorted(load_manifest(args.val)["clips"]):
            clip = load_clip(args.val, name, variant)
            n = min(args.frames, len(clip.decoded))
            decoded, gt = np.asarray(clip.decoded[:n]), np.asarray(clip.gt[:n])
            top = float((1 << clip.bit_depth) - 1)
            outs = {p: e.enhance_clip(decoded, {k: v[:n] for k, v in clip.priors.items()},
                                      variant_crf(clip.info, variant), clip.bit_depth) for p, e in runs.items()}
            base = psnr_y(decoded, gt, top)
            for p, out in outs.items():
                gains[p].append(psnr_y(out, gt, top) - base)
            diff = np.abs(outs["bf16"][:, :16].astype(int) - outs["fp32"][:, :16].astype(int))
            differing += int((diff > 0).sum())
            total += diff.size
            worst = max(worst, int(diff.max()))
        g32, g16 = float(np.mean(gains["fp32"])), float(np.mean(gains["bf16"]))
        print(f"| {variant} | {g32:+.4f} | {g16:+.4f} | {g16 - g32:+.4f} | {100 * differing / total:.3f}% | {worst} |",
              flush=True)


if __name__ == "__main__":
    main()
