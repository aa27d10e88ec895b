"""Learning curves at equal wall time: validation gain of a training recipe after 10, 30, 60 minutes.

One *arm* is a training config plus ``--set`` overrides. It is trained in pieces
(``train.max_minutes`` per piece; the run resumes from its checkpoint) and after each
wall-clock point it is scored on a prepared validation set: ΔPSNR on the Y plane of
the output against the decoded input, both **before** 8-bit rounding (the model's
float output, clamped to [0, 1]) and **after** it (what ``codecave enhance`` writes).
Every point is appended to ``<out>/curve.jsonl``; an arm already past a point is not
trained again, so the script can be re-run to continue to a later point.

All arms of a comparison should run under the same conditions (threads, cores,
nothing else heavy beside them): pin with ``taskset -c 0`` and ``--threads 1`` to
leave the other core free, for example.

Usage:
    python benchmarks/learning_curves.py configs/pnp_vcve/fast.yaml --arm base \\
        --val /work/runs/data/val_yuv --out runs/curves --minutes 10,30 --threads 1 \\
        [--set train.loss=mse ...] [--frames 6] [--variants crf15,crf25,crf35]
    python benchmarks/learning_curves.py --table runs/curves     # every arm's points as a table
    python benchmarks/learning_curves.py --score RUN_OR_WEIGHTS data/val_yuv   # one model, same scoring
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from codecave.cli.train import parse_overrides
from codecave.codec.rasterize import grid_priors
from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.engine.checkpoint import load_checkpoint
from codecave.engine.config import load_config
from codecave.engine.trainer import train
from codecave.grid import luma, peak, to_unit
from codecave.models import create_model


def psnr(err2: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) from per-frame mean squared errors in [0, 1] units."""
    return 10 * torch.log10(1 / err2.clamp_min(1e-12))


@torch.inference_mode()
def score(model: torch.nn.Module, root: str, variants: list[str], frames: int) -> dict[str, object]:
    """Mean ΔPSNR-Y (float output and 8-bit output) per rate point and per clip.

    Every clip's first ``frames`` frames are enhanced in one call (the clip's own
    neighbours as context); per-frame PSNRs are averaged per clip, clips averaged per
    rate point.
    """
    model.eval()
    clips = sorted(load_manifest(root)["clips"])
    per: dict[str, dict[str, dict[str, float]]] = {}
    for variant in variants:
        for name in clips:
            data = load_clip(root, name, variant)
            n = min(frames, len(data.decoded))
            top = peak(data.bit_depth)
            x = to_unit(torch.from_numpy(np.array(data.decoded[:n])), data.bit_depth)
            gt = to_unit(torch.from_numpy(np.array(data.gt[:n])), data.bit_depth)
            priors = {k: v.unsqueeze(0) for k, v in grid_priors({k: v[:n] for k, v in data.priors.items()}).items()}
            priors["crf"] = torch.tensor([variant_crf(data.info, variant)])
            y = model(x.unsqueeze(0), priors)[0].float().clamp(0, 1)
            y_8bit = torch.round(y * top) / top
            g = luma(gt).double()

            def mse(a: torch.Tensor, g: torch.Tensor = g) -> torch.Tensor:
                return (luma(a).double() - g).pow(2).flatten(1).mean(1)

            base = psnr(mse(x))
            per.setdefault(variant, {})[name] = {
                "float": float((psnr(mse(y)) - base).mean()),
                "8bit": float((psnr(mse(y_8bit)) - base).mean()),
            }
    model.train()
    summary = {v: {k: float(np.mean([c[k] for c in per[v].values()])) for k in ("float", "8bit")} for v in per}
    return {"by_variant": summary, "by_clip": per}


def table(folder: Path) -> str:
    """Every arm's every point under ``folder`` as a Markdown table (mean ΔPSNR-Y, float / 8-bit)."""
    rows = [json.loads(line) for log in sorted(folder.glob("*/curve.jsonl")) for line in log.read_text().splitlines()]
    rows.sort(key=lambda r: (r["minutes"], r["arm"]))
    variants = list(rows[0]["by_variant"]) if rows else []
    lines = ["| arm | setting | minutes | steps | " + " | ".join(f"{v} float / 8-bit" for v in variants) + " |",
             "|---|---|---|---|" + "---|" * len(variants)]
    for r in rows:
        changed = {k: v for k, v in r["overrides"].items() if k not in ("data.root", "train.threads")}
        setting = ", ".join(f"{k} {v}" for k, v in changed.items()) or "the recipe"
        scores = " | ".join(f"{r['by_variant'][v]['float']:+.4f} / {r['by_variant'][v]['8bit']:+.4f}" for v in variants)
        lines.append(f"| {r['arm']} | {setting} | {r['minutes']:g} | {r['step']} | {scores} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print(table(Path(sys.argv[2])))
        return
    if len(sys.argv) >= 4 and sys.argv[1] == "--score":  # --score WEIGHTS VAL [VARIANTS]: one model, same scoring
        model = create_model("pnp_vcve", weights=sys.argv[2], variant="fast" if sys.argv[2] == "default" else None)
        variants = (sys.argv[4] if len(sys.argv) > 4 else "crf15,crf25,crf35").split(",")
        for v, s in score(model, sys.argv[3], variants, 6)["by_variant"].items():
            print(f"{v}: float {s['float']:+.4f}, 8-bit {s['8bit']:+.4f}")
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--arm", required=True, help="name of this arm (a subfolder of --out)")
    ap.add_argument("--val", required=True, help="prepared yuv420 validation set")
    ap.add_argument("--out", default="runs/curves")
    ap.add_argument("--minutes", default="10", help="comma-separated wall-clock points, cumulative")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--variants", default="crf15,crf25,crf35")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    folder = Path(args.out) / args.arm
    overrides["out"] = str(folder / "run")
    if args.threads:
        overrides["train.threads"] = args.threads
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, overrides)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "curve.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    scored = {round(r["minutes"], 3) for r in done}
    variants = args.variants.split(",")
    for point in (float(m) for m in args.minutes.split(",")):
        if point in scored:
            continue
        state = load_checkpoint(folder / "run")
        seconds = float(state["extra"]["seconds"]) if state is not None else 0.0
        left = point - seconds / 60
        if left > 0.05:
            piece = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=left))
            result = train(piece, progress=False)
            seconds, step = result.seconds, result.step
        else:
            step = int(state["step"])
        model = create_model(cfg.model.name, weights=str(folder / "run"), variant=cfg.model.variant,
                             **cfg.model.overrides)
        start = time.perf_counter()
        scores = score(model, args.val, variants, args.frames)
        record = {"arm": args.arm, "minutes": point, "trained_minutes": round(seconds / 60, 2), "step": step,
                  "overrides": {k: v for k, v in overrides.items() if k != "out"},
                  "score_seconds": round(time.perf_counter() - start, 1), **scores}
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
        summary = "  ".join(f"{v} {s['float']:+.4f}/{s['8bit']:+.4f}" for v, s in scores["by_variant"].items())
        print(f"{args.arm} {point:g} min (step {step}): ΔPSNR-Y float/8-bit {summary}", flush=True)
        if not math.isfinite(seconds):
            break


if __name__ == "__main__":
    main()
