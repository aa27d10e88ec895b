"""Calibrate the default's ``shrink_ip_qp_offset``: the shrinkage QP of I and P pictures.

The shrinkage stage in front of PnP-VCVE ``fast`` (:class:`codecave.layers.dct.ShiftedDCTShrinkage`)
takes each picture's threshold from its own QP, with one learned law for every picture type.
x264 codes I and P pictures (the references) at lower QP than the B pictures between them
(``ipratio`` 1.4, ``pbratio`` 1.3, and the macroblock-tree lowers referenced blocks further).
This sweeps a QP offset added to I and P pictures' QP for the thresholds only, on a prepared
``yuv420`` dataset (use the default's *training* clips: the choice must not be made on the
validation split), and prints two tables:

1. the shrinkage stage alone (the main weights' learned thresholds), mean 8-bit ΔPSNR-Y of
   the frames by picture type, per rate point and offset: where the thresholds fall short;
2. the whole default as ``codecave evaluate`` runs it (main weights, high-CRF weights from
   their switch point, pass-through at the main weights' QP), mean ΔPSNR-Y of the clips per
   rate point, and their mean over the rate points: the offset with the largest such mean
   is printed as the choice (ties: the smaller offset); the same for ΔSSIM-Y beside it (the
   choice is made on PSNR-Y, the metric the default is trained and judged on; SSIM shows what
   the stronger filtering costs in structure).

    python benchmarks/shrink_offset.py data/train_yuv --clips baseball_720p,davis_bmxtrees_01,\
davis_bmxtrees_02,davis_tennis_01,tabletennis_sif_01,sintel_market,sintel_bamboo,vimeo_00001_0001,\
openh264_vt2people --crf 12,15,18,25,35 --frames 8 --offsets 0,2,4,5,6,7,8,10 --pass-through-qp 18.736

(``--pass-through-qp 18.736``: the threshold of the weights before the offset, with which it
was chosen; the shipped threshold was chosen again after it.)

The sweep sets the offset of both sets of weights (it replaces what the shipped entries carry,
it does not add to it). Ship the choice with
``scripts/graft_weights.py ENTRY --set shrink_ip_qp_offset=Q`` (no donor: no tensor changes).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from codecave.codec.priors import FrameType
from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import evaluate
from codecave.grid import to_codes
from codecave.metrics.quality import psnr_plane
from codecave.models import create_model


def stage_alone(model: torch.nn.Module, root: Path, clips: list[str], variant: str, frames: int,
                offsets: list[float]) -> dict[float, dict[str, float]]:
    """Mean 8-bit ΔPSNR-Y per picture type (``"I"``, ``"P"``, ``"B"``, ``"all"``) of the
    shrinkage stage alone at each offset."""
    gains: dict[float, dict[str, list[float]]] = {o: {"I": [], "P": [], "B": []} for o in offsets}
    for name in clips:
        clip = load_clip(root, name, variant)
        gt, dec = clip.luma_planes(frames)
        n = len(gt)
        kinds = np.asarray(clip.priors["frame_type"][:n]).astype(np.int64)
        qp = torch.from_numpy(np.asarray(clip.priors["qp"][:n], dtype=np.float32))
        reference = torch.from_numpy(kinds != int(FrameType.B))
        p_in = psnr_plane(dec, gt)
        for offset in offsets:
            # as the model: the offset on I and P pictures' known QP, the sequence CRF where unknown
            shifted = torch.where(torch.isfinite(qp), qp + offset * reference, torch.tensor(variant_crf(clip.info, variant)))
            with torch.no_grad():
                out = model.shrink((dec / 255).float().unsqueeze(1), shifted).squeeze(1).double()
            gain = psnr_plane(to_codes(out, 8), gt) - p_in
            for kind, g in zip(kinds, gain.tolist()):
                gains[offset][FrameType(int(kind)).name].append(g)
    return {o: {**{k: float(np.mean(v)) if v else math.nan for k, v in by.items()},
                "all": float(np.mean([g for v in by.values() for g in v]))} for o, by in gains.items()}


def training_clips(dataset: Path, names: str | None) -> list[str]:
    """The clips ``names`` (comma-separated; all when None) of a ``yuv420`` dataset.

    Raises:
        SystemExit: not a ``yuv420`` dataset.
    """
    if load_manifest(dataset).get("domain") != "yuv420":
        raise SystemExit(f"{dataset}: not a yuv420 dataset")
    return names.split(",") if names else sorted(load_manifest(dataset)["clips"])


def sweep(enhancer: Enhancer, set_offset: Callable[[float], None], dataset: Path, variants: list[str],
          clips: list[str], frames: int, offsets: list[float]
          ) -> tuple[dict[float, dict[str, float]], dict[float, dict[str, float]]]:
    """``evaluate`` at each offset (``set_offset`` puts it on the model): mean ΔPSNR-Y and ΔSSIM-Y
    of the clips per rate point and over them (``"mean"``), by offset."""
    whole: dict[float, dict[str, float]] = {}
    ssim: dict[float, dict[str, float]] = {}
    for o in offsets:
        set_offset(o)
        report = evaluate(enhancer, dataset, variants, clips, frames)
        whole[o] = {v: m["delta_psnr"] for v, m in report.by_variant().items()}
        whole[o]["mean"] = float(np.mean([whole[o][v] for v in variants]))
        ssim[o] = {v: m["delta_ssim"] for v, m in report.by_variant().items()}
        ssim[o]["mean"] = float(np.mean([ssim[o][v] for v in variants]))
        print(f"offset {o:g}: mean {whole[o]['mean']:+.4f}", flush=True)
    return whole, ssim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a yuv420 dataset made by codecave prepare (training clips)")
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default all)")
    ap.add_argument("--crf", default="12,15,18,25,35")
    ap.add_argument("--frames", type=int, default=8, help="first N frames of each clip")
    ap.add_argument("--offsets", default="0,2,4,6,8,10", help="QP offsets to try")
    ap.add_argument("--pass-through-qp", type=float, default=None,
                    help="pass-through QP of the whole-model runs (default: the shipped weights', chosen again "
                         "after the offset; 18.736, the threshold before it, repeats the calibration)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    clips = training_clips(args.dataset, args.clips)
    variants = [f"crf{c}" for c in args.crf.split(",")]
    offsets = [float(o) for o in args.offsets.split(",")]
    torch.set_grad_enabled(False)
    print(f"machine: {platform.machine()}, torch {torch.__version__}; {len(clips)} clips of {args.dataset}, "
          f"first {args.frames} frames, PSNR on the Y plane, 8-bit output")

    main_model = create_model("pnp_vcve")
    if getattr(main_model, "shrink", None) is None:
        raise SystemExit("the shipped default has no shrinkage stage")
    alone = {v: stage_alone(main_model, args.dataset, clips, v, args.frames, offsets) for v in variants}
    print("\nShrinkage stage alone (main weights' thresholds), mean ΔPSNR-Y of the frames, I / P / B / all (dB)\n")
    print("| offset | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for o in offsets:
        print(f"| {o:g} | " + " | ".join("{I:+.3f} / {P:+.3f} / {B:+.3f} / {all:+.3f}".format(**alone[v][o])
                                        for v in variants) + " |")

    enhancer = Enhancer(main_model, EnhanceOptions(pass_through_qp=args.pass_through_qp))
    high = enhancer.for_crf(math.inf)
    print(f"\nwhole model: pass-through at frame QP <= {enhancer.pass_through_qp}, high-CRF weights from CRF "
          f"{(enhancer.high_crf or {}).get('from_crf')}", flush=True)

    def set_offset(o: float) -> None:
        for model in {id(m): m for m in (enhancer.model, high.model)}.values():
            model.shrink_ip_qp_offset = o

    whole, ssim = sweep(enhancer, set_offset, args.dataset, variants, clips, args.frames, offsets)
    print("\nThe default as `codecave evaluate` runs it, mean ΔPSNR-Y of the clips (dB)\n")
    print("| offset | " + " | ".join(variants) + " | mean |")
    print("|---|" + "---|" * (len(variants) + 1))
    for o in offsets:
        print(f"| {o:g} | " + " | ".join(f"{whole[o][v]:+.4f}" for v in [*variants, "mean"]) + " |")
    print("\nThe same runs, mean ΔSSIM-Y of the clips\n")
    print("| offset | " + " | ".join(variants) + " | mean |")
    print("|---|" + "---|" * (len(variants) + 1))
    for o in offsets:
        print(f"| {o:g} | " + " | ".join(f"{ssim[o][v]:+.5f}" for v in [*variants, "mean"]) + " |")
    best = max(offsets, key=lambda o: (round(whole[o]["mean"], 4), -o))
    print(f"\nchosen offset (largest mean over the rate points): {best:g}")
    if args.json:
        args.json.write_text(json.dumps({"clips": clips, "frames": args.frames, "stage_alone": alone,
                                         "whole": whole, "whole_ssim": ssim, "chosen": best}, indent=1, default=str))


if __name__ == "__main__":
    main()
