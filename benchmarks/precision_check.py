"""Does bf16 autocast change a model's validation scores? ΔPSNR-Y (float and 8-bit output)
with the forward pass in float32 and under bfloat16 autocast, side by side.

Usage: python benchmarks/precision_check.py VAL [--weights default|RUN] [--variant fast] [--frames 6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curves import score

from codecave.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("val")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--variant", default="fast")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--variants", default="crf15,crf25,crf35")
    args = ap.parse_args()
    model = create_model("pnp_vcve", weights=args.weights, variant=args.variant)
    rows = {}
    for name, enabled in (("fp32", False), ("bf16", True)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            rows[name] = score(model, args.val, args.variants.split(","), args.frames)["by_variant"]
    print("rate point | fp32 float / 8-bit | bf16 float / 8-bit | difference (8-bit)")
    for v in rows["fp32"]:
        a, b = rows["fp32"][v], rows["bf16"][v]
        print(f"{v} | {a['float']:+.4f} / {a['8bit']:+.4f} | {b['float']:+.4f} / {b['8bit']:+.4f} | "
              f"{b['8bit'] - a['8bit']:+.4f}")


if __name__ == "__main__":
    main()
