"""Validate a training run and ship its weights in the package with a manifest entry.

Evaluates the run's ``model.safetensors`` on a prepared validation set (frame-QP
and slice-type modes), copies the weights to ``src/codecave/weights/`` and writes
the entry of ``weights/manifest.json``: architecture, training data and settings,
steps, wall time, and the measured validation scores. Reports go to
``RUN/validation``.

Usage:
    python scripts/ship_weights.py runs/pnp_vcve_small data/pnp_val [--crf 15,25,35,18,28,38]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
from pathlib import Path

import torch

from codecave.data.prepare import load_manifest
from codecave.engine.config import load_config
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import evaluate, write_report
from codecave.models import create_model

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "codecave" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="training run folder (config.yaml, checkpoint.pt, model.safetensors)")
    ap.add_argument("val", type=Path, help="prepared validation dataset")
    ap.add_argument("--crf", default="15,25,35,18,28,38", help="rate points to validate at")
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default all)")
    args = ap.parse_args()
    cfg = load_config(args.run / "config.yaml")
    state = torch.load(args.run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = create_model(cfg.model.name, weights=args.run / "model.safetensors", variant=cfg.model.variant)
    variants = [f"crf{c}" for c in args.crf.split(",")]
    results = {}
    for mode, slice_type in (("frame_qp", False), ("slice_type", True)):
        report = evaluate(Enhancer(model, EnhanceOptions(slice_type=slice_type)), args.val, variants,
                          max_frames=args.frames, model_info={"name": cfg.model.name, "weights": str(args.run)},
                          progress=lambda m, mode=mode: print(f"[{mode}] {m}", flush=True))
        write_report(report, args.run / "validation" / mode)
        results[mode] = {v: {k: round(x, 4) for k, x in m.items()} for v, m in report.by_variant().items()}
        print(report.to_markdown())
    name = f"{cfg.model.name}_{cfg.model.variant}"
    target = WEIGHTS / f"{name}.safetensors"
    shutil.copyfile(args.run / "model.safetensors", target)
    val_manifest = load_manifest(args.val)
    train_manifest = load_manifest(cfg.data.root)
    entry = {
        "model": cfg.model.name,
        "variant": cfg.model.variant,
        "file": target.name,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "config": model.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "recipe": f"configs/{cfg.model.name}/{cfg.model.variant}.yaml",
            "data": {"clips": sorted(train_manifest["clips"]), "settings": train_manifest["settings"]},
            "settings": cfg.to_dict() | {"data": {k: v for k, v in cfg.to_dict()["data"].items() if k != "root"}},
            "steps": int(state["step"]),
            "wall_minutes": round(float(state["extra"]["seconds"]) / 60, 1),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        },
        "validation": {
            "clips": {n: c.get("source") for n, c in val_manifest["clips"].items()},
            "frames": args.frames or "all",
            "metric": "PSNR/SSIM on BT.601 Y; psnr_in = decoded x264, psnr_out = enhanced",
            **results,
        },
    }
    path = WEIGHTS / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[name] = entry
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"shipped {target} ({target.stat().st_size / 1e6:.1f} MB) and its entry in {path}")


if __name__ == "__main__":
    main()
