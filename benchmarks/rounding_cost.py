"""How much of a model's gain survives storing its output as 8-bit frames.

``codecave enhance`` and ``codecave evaluate`` round the model's output to 8 bits
per channel, as any 8-bit video holds it. On high-quality inputs (CRF 15: about
45 dB, a mean squared error near 2 levels squared on Y) the rounding error of a
non-integer output is of the same order as the model's whole correction. This
script runs a model once per rate point and prints, per frame, the PSNR-Y change
of the float output and of the 8-bit output against the decoded input.

Usage:
    python benchmarks/rounding_cost.py data/pnp_val --weights default --crf 15,35 --frames 6 [--clip temple]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from codecave.codec.rasterize import dense_priors
from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.losses import round_8bit
from codecave.metrics.quality import psnr_y
from codecave.models import create_model

_TYPES = "IPB"


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float().div(255)


@torch.inference_mode()
def rounding_cost(model: torch.nn.Module, root: str, clip: str, variant: str, frames: int) -> dict[str, object]:
    """Per-frame PSNR-Y gains of the float and the 8-bit output on one prepared clip."""
    data = load_clip(root, clip, variant)
    n = min(frames, len(data.decoded))
    decoded = np.asarray(data.decoded[:n])
    stacked = {k: v[:n] for k, v in data.priors.items()}
    h, w = decoded.shape[1:3]
    priors = {k: v.unsqueeze(0) for k, v in dense_priors(stacked, h, w).items()}
    priors["crf"] = torch.tensor([variant_crf(data.info, variant)])
    x, gt = _tensor(decoded), _tensor(data.gt[:n])
    y = model(x.unsqueeze(0), priors)[0].clamp(0, 1)
    y8 = round_8bit(y)  # the 8-bit grid train.round_output trains on
    base = psnr_y(x, gt)
    gain_float, gain_8bit = psnr_y(y, gt) - base, psnr_y(y8, gt) - base
    return {
        "clip": clip, "variant": variant,
        "frame_types": "".join(_TYPES[int(t)] for t in stacked["frame_type"]),
        "psnr_in": float(base.mean()),
        "gain_float": [round(float(g), 4) for g in gain_float],
        "gain_8bit": [round(float(g), 4) for g in gain_8bit],
        "mean_gain_float": float(gain_float.mean()),
        "mean_gain_8bit": float(gain_8bit.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="prepared RGB dataset (codecave prepare --domain rgb)")
    parser.add_argument("--weights", default="default", help="'default', a .safetensors file or a run folder")
    parser.add_argument("--crf", default="15,35", help="rate points, e.g. 15,35")
    parser.add_argument("--frames", type=int, default=6, help="first N frames of each clip")
    parser.add_argument("--clip", default=None, help="one clip (default: every clip)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--variant", default=None,
                        help="RGB variant (default: small with shipped weights, the run's own with a run folder)")
    args = parser.parse_args()
    if args.variant is None and args.weights == "default":
        args.variant = "small"  # an RGB dataset: the shipped RGB model
    model = create_model("pnp_vcve", weights=args.weights, variant=args.variant).eval()
    clips = [args.clip] if args.clip else sorted(load_manifest(args.dataset)["clips"])
    rows = []
    print("| clip | rate point | frames | PSNR-Y in | gain, float output | gain, 8-bit output | rounding cost |")
    print("|---|---|---|---|---|---|---|")
    for clip in clips:
        for crf in args.crf.split(","):
            row = rounding_cost(model, args.dataset, clip, f"crf{crf.strip()}", args.frames)
            rows.append(row)
            cost = row["mean_gain_float"] - row["mean_gain_8bit"]
            print(f"| {clip} | {row['variant']} | {row['frame_types']} | {row['psnr_in']:.3f} | "
                  f"{row['mean_gain_float']:+.4f} | {row['mean_gain_8bit']:+.4f} | {cost:.4f} |")
            print(f"|  per frame | | | | {row['gain_float']} | {row['gain_8bit']} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
