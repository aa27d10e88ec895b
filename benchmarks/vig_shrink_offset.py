"""Calibrate a luma model's ``shrink_qp_offset``: the shrinkage stage's QP above the sequence QP.

VIG with the default's shrinkage stage after the network (``dct_shrink``, grafted) shrinks
every enhanced picture at its stream's sequence QP: HEVC decoders export no picture QP, and VIG
reads none. The stage learned its law ``s_k x Qstep(QP)^g`` on x264 pictures at their own QP,
while the pictures of a stream sit around its sequence QP (x264's B pictures above its CRF;
HM's low-delay cascade adds 1 to 3, ``docs/low_delay_p.md``). This sweeps a QP offset added to
the sequence QP for the thresholds only (not the network's QP plane) on a prepared ``yuv420``
dataset (use *training* clips: the choice must not be made on the validation split), and
prints:

1. the shrinkage stage alone on the decoded frames (the model's thresholds), mean 8-bit
   ΔPSNR-Y of the frames per rate point and offset;
2. the order (``--order``, VIG; offset 0, float32, whole clips): mean 8-bit ΔPSNR-Y of the
   clips for the stage alone, the network alone, the stage in front of the network (the
   network restores the shrunk frames) and after it (as shipped);
3. the whole model as ``codecave evaluate`` runs it (pass-through at the shipped threshold
   unless ``--pass-through-qp``), mean ΔPSNR-Y of the clips per rate point and their mean over
   the rate points: the offset with the largest such mean (or, with ``--choose-on``, the
   largest gain at that rate point) is printed as the choice (ties: the smaller offset); then
   the same runs' ΔSSIM-Y.

    python benchmarks/vig_shrink_offset.py data/crds_train --clips baseball_720p,davis_bmxtrees_01,\
davis_bmxtrees_02,davis_tennis_01,tabletennis_sif_01,sintel_market,sintel_bamboo,vimeo_00001_0001,\
openh264_vt2people,kodim05,kodim13 --variants ldp37,crf35 --frames 16 --offsets=-2,0,2,4 --order --choose-on ldp37

(VIG's shipped offset, 0, is chosen at QP 37 LDP, the paper's data: a positive offset helps only
x264 streams, whose B pictures sit above the CRF, and costs SSIM-Y at both.)

Ship a non-zero choice with ``python scripts/graft_weights.py vig_small --set shrink_qp_offset=Q
data/vig_val --variants ldp22,ldp27,ldp32,ldp37,crf35 --slice-type-crf none --out runs/vig_offset``
(no donor: no tensor changes; the entry records it under ``calibrations``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import numpy as np
import torch
from shrink_offset import sweep, training_clips  # benchmarks/: the same sweep as the default's I/P offset

from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.grid import to_codes
from codecave.metrics.quality import psnr_plane
from codecave.models import create_model


def stage_alone(model: torch.nn.Module, root: Path, clips: list[str], variant: str, frames: int,
                offsets: list[float]) -> dict[float, float]:
    """Mean 8-bit ΔPSNR-Y of the frames through the shrinkage stage alone at each offset."""
    gains: dict[float, list[float]] = {o: [] for o in offsets}
    for name in clips:
        clip = load_clip(root, name, variant)
        gt, dec = clip.luma_planes(frames)
        n = len(gt)
        crf = variant_crf(clip.info, variant)
        for offset in offsets:
            qp = torch.full((n,), crf + offset)
            with torch.no_grad():
                out = model.shrink((dec / 255).float().unsqueeze(1), qp).squeeze(1).double()
            gains[offset] += (psnr_plane(to_codes(out, 8), gt) - psnr_plane(dec, gt)).tolist()
    return {o: float(np.mean(g)) for o, g in gains.items()}


def order(model: torch.nn.Module, root: Path, clips: list[str], variant: str, frames: int) -> dict[str, float]:
    """Mean 8-bit ΔPSNR-Y of the clips: the stage alone, the network alone, the stage in front
    of the network and after it (VIG; offset 0, float32). The network runs at every QP
    (``stage_only_qp`` is off here: this is the comparison that chooses it)."""
    gains: dict[str, list[float]] = {"stage alone": [], "network alone": [], "stage in front": [], "stage after": []}
    stage, offset, config = model.shrink, model.shrink_qp_offset, model.config
    model.shrink_qp_offset = 0.0
    model.config = dataclasses.replace(config, stage_only_qp=None)
    try:
        for name in clips:
            clip = load_clip(root, name, variant)
            gt, dec = clip.luma_planes(frames)
            qp = torch.tensor([variant_crf(clip.info, variant)])
            x = (dec / 255).float()[None, :, None]  # (1, T, 1, H, W)

            def gain(y: torch.Tensor, gt: torch.Tensor = gt, dec: torch.Tensor = dec) -> float:
                out = to_codes(y[0, :, 0].double(), 8)
                return float((psnr_plane(out, gt) - psnr_plane(dec, gt)).mean())

            shrunk = model.postfilter(x, qp)  # the stage alone (the input is in [0, 1])
            model.shrink = None
            restored, in_front = model(x, qp), model(shrunk, qp)
            model.shrink = stage
            for key, y in (("stage alone", shrunk), ("network alone", restored), ("stage in front", in_front),
                           ("stage after", model(x, qp))):
                gains[key].append(gain(y))
    finally:
        model.shrink, model.shrink_qp_offset, model.config = stage, offset, config
    return {k: float(np.mean(v)) for k, v in gains.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a yuv420 dataset made by codecave prepare (training clips)")
    ap.add_argument("--model", default="vig", help="a luma model with a shrinkage stage (default vig)")
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default all)")
    ap.add_argument("--variants", default="ldp37,crf35", help="rate points by variant name")
    ap.add_argument("--frames", type=int, default=16, help="first N frames of each clip")
    ap.add_argument("--offsets", default="0,1,2,3,4,6", help="QP offsets to try")
    ap.add_argument("--pass-through-qp", type=float, default=None,
                    help="pass-through QP of the whole-model runs (default: the shipped weights')")
    ap.add_argument("--choose-on", default="mean", help="rate point the choice is made on (default: the mean)")
    ap.add_argument("--order", action="store_true", help="also compare the stage in front of the network and after it")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    clips = training_clips(args.dataset, args.clips)
    variants = args.variants.split(",")
    if args.choose_on not in ("mean", *variants):
        raise SystemExit(f"--choose-on {args.choose_on}: not 'mean' or one of --variants {args.variants}")
    offsets = [float(o) for o in args.offsets.split(",")]
    torch.set_grad_enabled(False)
    model = create_model(args.model)
    if getattr(model, "shrink", None) is None or not hasattr(model, "shrink_qp_offset"):
        raise SystemExit(f"the shipped {args.model} has no shrinkage stage with a QP offset (dct_shrink)")
    print(f"machine: {platform.machine()}, torch {torch.__version__}; {args.model}, {len(clips)} clips of "
          f"{args.dataset}, first {args.frames} frames, PSNR on the Y plane, 8-bit output")

    alone = {v: stage_alone(model, args.dataset, clips, v, args.frames, offsets) for v in variants}
    print("\nShrinkage stage alone, mean ΔPSNR-Y of the frames (dB)\n")
    print("| offset | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for o in offsets:
        print(f"| {o:g} | " + " | ".join(f"{alone[v][o]:+.4f}" for v in variants) + " |")

    orders = {}
    if args.order:
        if not hasattr(model, "postfilter"):
            raise SystemExit(f"--order: {args.model} has no post-filter")
        orders = {v: order(model, args.dataset, clips, v, args.frames) for v in variants}
        print("\nOrder (offset 0, float32), mean ΔPSNR-Y of the clips (dB)\n")
        print("| | " + " | ".join(variants) + " |")
        print("|---|" + "---|" * len(variants))
        for key in next(iter(orders.values())):
            print(f"| {key} | " + " | ".join(f"{orders[v][key]:+.4f}" for v in variants) + " |", flush=True)

    enhancer = Enhancer(model, EnhanceOptions(pass_through_qp=args.pass_through_qp))
    print(f"\nwhole model: pass-through at sequence QP <= {enhancer.pass_through_qp}", flush=True)
    whole, ssim = sweep(enhancer, lambda o: setattr(model, "shrink_qp_offset", o), args.dataset, variants,
                        clips, args.frames, offsets)
    for title, table, fmt in (("mean ΔPSNR-Y of the clips (dB)", whole, "+.4f"), ("mean ΔSSIM-Y of the clips", ssim, "+.5f")):
        print(f"\nThe model as `codecave evaluate` runs it, {title}\n")
        print("| offset | " + " | ".join(variants) + " | mean |")
        print("|---|" + "---|" * (len(variants) + 1))
        for o in offsets:
            print(f"| {o:g} | " + " | ".join(format(table[o][v], fmt) for v in [*variants, "mean"]) + " |")
    best = max(offsets, key=lambda o: (round(whole[o][args.choose_on], 4), -o))
    rule = "largest mean over the rate points" if args.choose_on == "mean" else f"largest gain at {args.choose_on}"
    print(f"\nchosen offset ({rule}): {best:g}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "clips": clips, "frames": args.frames,
                                         "stage_alone": alone, "order": orders, "whole": whole, "whole_ssim": ssim, "chosen_on": args.choose_on,
                                         "chosen": best},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()
