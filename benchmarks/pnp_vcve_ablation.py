"""PnP-VCVE ablations at one small training budget, reported like the paper's Table 5.

Trains the small variant four times with the same recipe, steps and seed: full,
without motion-vector alignment (neighbours concatenated unwarped), without
region-aware refinement, and without CAA (one expert, no frame-wise transfer);
then scores each on the validation set. Runs resume, so the script can be stopped
and started again.

Usage:
    python benchmarks/pnp_vcve_ablation.py --train data/pnp_train --val data/pnp_val \\
        [--steps 300] [--crf 25,35] [--frames 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import torch

from codecave.engine.config import load_config
from codecave.engine.trainer import train
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import evaluate
from codecave.models import create_model

ABLATIONS = {
    "full": {},
    "w/o MV alignment": {"mv_align": False},
    "w/o region refinement": {"region_refine": False},
    "w/o CAA (one expert)": {"caa": False},
}
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "pnp_vcve" / "small.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True, help="prepared RGB training set (CRF 0,15,25,35, --domain rgb)")
    ap.add_argument("--val", required=True, help="prepared validation set")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--crf", default="25,35")
    ap.add_argument("--frames", type=int, default=12, help="first N validation frames")
    ap.add_argument("--runs", default="runs/ablation", help="folder for the runs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    variants = [f"crf{c}" for c in args.crf.split(",")]
    rows = []
    for label, overrides in ABLATIONS.items():
        slug = label.split(" (")[0].replace("/", "").replace(" ", "_")
        cfg = load_config(RECIPE, {"data.root": str(Path(args.train).resolve()), "train.steps": args.steps,
                                   "out": str(Path(args.runs, slug).resolve()), "name": f"ablation_{slug}"})
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, overrides=overrides))
        result = train(cfg, progress=False)
        model = create_model("pnp_vcve", weights=Path(cfg.out) / "model.safetensors")
        report = evaluate(Enhancer(model, EnhanceOptions()), args.val, variants, max_frames=args.frames)
        means = report.by_variant()
        row = {"ablation": label, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
               "steps": result.step, "train_minutes": result.seconds / 60,
               **{f"dpsnr_{v}": means[v]["delta_psnr"] for v in variants},
               **{f"dssim_{v}": means[v]["delta_ssim"] for v in variants}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nmachine: {platform.machine()}, {torch.get_num_threads()} threads; {args.steps} steps each; "
          f"validation: first {args.frames} frames of {args.val}")
    head = " | ".join(f"ΔPSNR {v} (dB)" for v in variants)
    print(f"| model | params (M) | {head} |")
    print("|---|---|" + "---|" * len(variants))
    for r in rows:
        cells = " | ".join(f"{r[f'dpsnr_{v}']:+.3f}" for v in variants)
        print(f"| {r['ablation']} | {r['params_M']:.3f} | {cells} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
