"""What 8-bit storage keeps of a YUV model's gain: float, 10-bit and 8-bit output, and 8-bit
with a dead zone.

For each rate point the model enhances the first ``--frames`` frames of every clip of
a prepared ``yuv420`` validation set (whole clip in one call, pass-through off), and
the mean ΔPSNR-Y against the decoded input is printed for: the float output; the
output rounded to 10 bits (codes x 4, what a ``yuv420p10le`` file would hold); the
8-bit output (round to nearest, what ``codecave enhance`` writes for 8-bit input);
and 8-bit outputs that keep a correction only where ``|output - input| >= tau`` codes
(a dead zone, ``tau`` > 0.5), to see whether the corrections lost to rounding are the
small, uncertain ones.

Usage:
    python benchmarks/rounding_yuv.py data/val_yuv6 [--weights default --variant fast] \\
        [--crf 15,18,25,35] [--frames 6] [--tau 0.6,0.8,1.0]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from codecave.codec.rasterize import grid_priors
from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.grid import luma
from codecave.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("val")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--variant", default="fast")
    ap.add_argument("--crf", default="15,18,25,35")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--tau", default="0.6,0.8,1.0")
    args = ap.parse_args()
    model = create_model("pnp_vcve", weights=args.weights, variant=args.variant)
    if model.domain != "yuv420":
        raise SystemExit("a yuv420 model is needed (benchmarks/rounding_cost.py covers RGB models)")
    taus = [float(t) for t in args.tau.split(",")]
    names = ["float", "10-bit", "8-bit", *(f"8-bit, tau {t:g}" for t in taus)]
    print("| rate point | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for c in args.crf.split(","):
        variant = f"crf{c}"
        gains: dict[str, list[float]] = {n: [] for n in names}
        for clip in sorted(load_manifest(args.val)["clips"]):
            data = load_clip(args.val, clip, variant)
            if data.bit_depth != 8:
                raise SystemExit(f"{clip}: {data.bit_depth}-bit; this script compares against 8-bit storage")
            n = min(args.frames, len(data.decoded))
            x = torch.from_numpy(np.array(data.decoded[:n])).float()
            priors = {k: v.unsqueeze(0) for k, v in grid_priors({k: a[:n] for k, a in data.priors.items()}).items()}
            priors["crf"] = torch.tensor([variant_crf(data.info, variant)])
            with torch.inference_mode():
                y = model((x / 255).unsqueeze(0), priors)[0].clamp(0, 1) * 255
            ref = luma(torch.from_numpy(np.array(data.gt[:n]))).double()
            x_y, y_y = luma(x).double(), luma(y).double()

            def psnr(a: torch.Tensor, ref: torch.Tensor = ref) -> torch.Tensor:
                return 10 * torch.log10(255**2 / (a - ref).pow(2).flatten(1).mean(1))

            base = psnr(x_y)
            delta = y_y - x_y
            outputs = {"float": y_y, "10-bit": torch.round(y_y * 4) / 4, "8-bit": torch.round(y_y)}
            for t, name in zip(taus, names[3:]):
                outputs[name] = x_y + torch.where(delta.abs() >= t, torch.round(delta), torch.zeros_like(delta))
            for name, out in outputs.items():
                gains[name].append(float((psnr(out) - base).mean()))
        print(f"| {variant} | " + " | ".join(f"{np.mean(gains[n]):+.4f}" for n in names) + " |", flush=True)


if __name__ == "__main__":
    main()
