"""What CRDS's denoising blocks contribute, apart from the auto-encoder's own bias.

The output is ``x_hat + D(z4, z0)``. With the blocks taken out (``z0 = z4``) it is
``x_hat + D(z4, z4)``, which the LDR-AE pre-training never asked to be zero (its pairs
always differ). Per clip, ΔPSNR-Y (8-bit) of: the output, the blocks taken out, and the
blocks' part alone (``x_hat + D(z4, z0) - D(z4, z4)``). Used to see whether training has
moved the blocks at all (README, CRDS).

    python benchmarks/crds_blocks.py runs/crds_small --val data/vig_val --variant ldp37 --frames 6
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from codecave.data.prepare import load_clip, load_manifest
from codecave.grid import luma
from codecave.models import create_model


def psnr_8bit(y: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR (dB) of ``y`` rounded to 8 bits against ``x``, both in [0, 1]."""
    y8 = torch.round(y.clamp(0, 1) * 255) / 255
    return float(10 * torch.log10(1 / (y8 - x).square().mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--val", default="data/vig_val")
    ap.add_argument("--variant", default="ldp37")
    ap.add_argument("--clips", default=None, help="comma-separated (default: all)")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model("crds", weights=args.weights)
    clips = args.clips.split(",") if args.clips else sorted(load_manifest(args.val)["clips"])
    print(f"{args.weights} on {args.val} {args.variant}, first {args.frames} frames, fp32, 8-bit output")
    print("| clip | PSNR-Y in | output | blocks taken out | the blocks' part alone |")
    print("|---|---|---|---|---|")
    for name in clips:
        clip = load_clip(args.val, name, args.variant)
        x_hat = luma(torch.from_numpy(np.array(clip.decoded[: args.frames])).float() / 255)[None, :, None]
        x = luma(torch.from_numpy(np.array(clip.gt[: args.frames])).float() / 255)[None, :, None]
        with torch.no_grad():
            motion, z4 = model.motion(x_hat), model.encode(x_hat)
            z = z4
            for block in model.blocks:
                z = block(z, motion)
            out, still = model.decode(x_hat, z4, z), model.decode(x_hat, z4, z4)

        base = psnr_8bit(x_hat, x)
        print(f"| {name} | {base:.3f} | {psnr_8bit(out, x) - base:+.4f} | {psnr_8bit(still, x) - base:+.4f} | "
              f"{psnr_8bit(out - still + x_hat, x) - base:+.4f} |")


if __name__ == "__main__":
    main()
