"""VIG's claims re-measured at this scale (issue 15): truth-guidance distillation (TGD) against
the same total steps without it, and pixel-unshuffle down/up-sampling (UD) against a
full-resolution base.

``train`` runs one arm with the recipes in ``configs/vig/``: with ``--tgd``, the TGD
pre-training stage (``small_tgd.yaml``) for ``--pre`` steps, then fine-tuning
(``small.yaml``) for the rest of ``--steps``; without, fine-tuning for all ``--steps``
(same seed, so the same batches in the same order, and the same schedule shape). Weights
are kept every ``--every`` steps. ``score`` runs every kept snapshot of every arm over a
prepared validation set (Y-plane PSNR gain over the decoded input of the float output
and of the 8-bit output, as ``codecave enhance`` writes it; per clip, then averaged)
and appends to ``<arm>/curve.jsonl``; ``table`` prints the curves, ``plot`` draws them.

    taskset -c 0 python benchmarks/vig_claims.py train runs/vig_claims3k --arm tgd_s0 --tgd --seed 0 &
    taskset -c 1 python benchmarks/vig_claims.py train runs/vig_claims3k --arm plain_s0 --seed 0
    python benchmarks/vig_claims.py score runs/vig_claims3k --val data/vig_val --frames 8 \
        --variants ldp22,ldp37,crf35
    python benchmarks/vig_claims.py table runs/vig_claims3k
    python benchmarks/vig_claims.py plot runs/vig_claims3k docs/vig_tgd_curve.png

Pin arms that run side by side to one core each (``taskset -c 0`` / ``-c 1``); they
use one thread (the recipes say so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.engine.config import load_config
from codecave.engine.trainer import train
from codecave.grid import luma, peak, to_unit
from codecave.models import create_model

ROOT = Path(__file__).resolve().parents[1]
PRE, FINE = ROOT / "configs/vig/small_tgd.yaml", ROOT / "configs/vig/small.yaml"


def train_arm(out: Path, arm: str, tgd: bool, seed: int, steps: int, pre: int, every: int,
              overrides: dict[str, object]) -> None:
    """Train one arm (resumable: a finished stage is skipped by the trainer)."""
    folder = out / arm
    common = {"train.seed": seed, "train.snapshot_every": every, "train.checkpoint_every": every, **overrides}
    fine_init = ""
    if tgd:
        cfg = load_config(PRE, {**common, "train.steps": pre, "out": str(folder / "pre")})
        train(cfg, progress=False)
        fine_init = str(folder / "pre")
    cfg = load_config(FINE, {**common, "train.steps": steps - (pre if tgd else 0), "train.init": fine_init,
                             "out": str(folder / "fine")})
    result = train(cfg, progress=False)
    record = {"arm": arm, "tgd": tgd, "seed": seed, "steps": steps, "pre": pre if tgd else 0,
              "overrides": overrides, "fine_seconds": round(result.seconds, 1)}
    (folder / "arm.json").write_text(json.dumps(record, indent=1))


def _snapshots(folder: Path) -> list[tuple[int, Path]]:
    """(total step, weights) of an arm's kept snapshots: pre-training ones count from 0,
    fine-tuning ones after the pre-training steps."""
    arm = json.loads((folder / "arm.json").read_text())
    out = {int(p.stem[4:]): p for p in (folder / "pre" / "snapshots").glob("step*.safetensors")}
    out.update({arm["pre"] + int(p.stem[4:]): p for p in (folder / "fine" / "snapshots").glob("step*.safetensors")})
    if arm["pre"] and (folder / "pre" / "model.safetensors").exists():
        out.setdefault(arm["pre"], folder / "pre" / "model.safetensors")
    out.setdefault(arm["steps"], folder / "fine" / "model.safetensors")  # the final weights
    return sorted(out.items())


@torch.inference_mode()
def score_weights(weights: Path, val: str, variants: list[str], frames: int) -> dict[str, dict[str, object]]:
    """Mean ΔPSNR-Y per rate point (clips averaged) of the float output and of the 8-bit output,
    each clip's first ``frames`` frames enhanced as one recurrent clip."""
    model = create_model("vig", weights=str(weights))
    clips = sorted(load_manifest(val)["clips"])
    out = {}
    for variant in variants:
        gains: dict[str, list[float]] = {"float": [], "8bit": []}
        per_clip = {}
        for name in clips:
            data = load_clip(val, name, variant)
            n = min(frames, len(data.decoded))
            top = peak(data.bit_depth)
            x = luma(to_unit(torch.from_numpy(np.array(data.decoded[:n])), data.bit_depth)).double()
            g = luma(to_unit(torch.from_numpy(np.array(data.gt[:n])), data.bit_depth)).double()
            y = model(x.float()[None, :, None], torch.tensor([variant_crf(data.info, variant)]))[0, :, 0]
            y = y.double().clamp(0, 1)

            def psnr(a: torch.Tensor, g: torch.Tensor = g) -> float:
                return float((10 * torch.log10(1 / (a - g).pow(2).flatten(1).mean(1).clamp_min(1e-12))).mean())

            base = psnr(x)
            clip_gain = {"float": psnr(y) - base, "8bit": psnr(torch.round(y * top) / top) - base}
            per_clip[name] = clip_gain
            for k, values in gains.items():
                values.append(clip_gain[k])
        out[variant] = {"mean": statistics.fmean(gains["8bit"]), "float": statistics.fmean(gains["float"]),
                        "by_clip": per_clip}
    return out


def score_arms(out: Path, val: str, variants: list[str], frames: int) -> None:
    for folder in sorted(p for p in out.iterdir() if (p / "arm.json").exists()):
        log = folder / "curve.jsonl"
        done = {json.loads(line)["weights"] for line in log.read_text().splitlines()} if log.exists() else set()
        for step, weights in _snapshots(folder):
            if str(weights) in done or not weights.exists():
                continue
            start = time.perf_counter()
            by_variant = score_weights(weights, val, variants, frames)
            record = {"arm": folder.name, "step": step, "weights": str(weights), "frames": frames,
                      "seconds": round(time.perf_counter() - start, 1), "by_variant": by_variant}
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(folder.name, step, {v: f"{s['float']:+.4f}/{s['mean']:+.4f}" for v, s in by_variant.items()},
                  "(float/8-bit)", flush=True)


def _curves(out: Path) -> dict[str, list[dict[str, object]]]:
    curves = {}
    for log in sorted(out.glob("*/curve.jsonl")):
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        curves[log.parent.name] = sorted(rows, key=lambda r: r["step"])
    return curves


def table(out: Path) -> str:
    curves = _curves(out)
    variants = next(iter(curves.values()))[0]["by_variant"].keys() if curves else []
    lines = ["| arm | step | " + " | ".join(f"{v} ΔPSNR-Y float / 8-bit (dB)" for v in variants) + " |",
             "|---|---|" + "---|" * len(variants)]
    for arm, rows in curves.items():
        for r in rows:
            lines.append(f"| {arm} | {r['step']} | " + " | ".join(
                f"{r['by_variant'][v].get('float', float('nan')):+.4f} / {r['by_variant'][v]['mean']:+.4f}"
                for v in variants) + " |")
    return "\n".join(lines)


def plot(out: Path, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(out)
    variants = list(next(iter(curves.values()))[0]["by_variant"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.4), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        for arm, rows in curves.items():
            style = "-" if arm.startswith("tgd") else "--"
            ax.plot([r["step"] for r in rows], [r["by_variant"][variant]["mean"] for r in rows], style, marker=".",
                    label=arm)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(variant)
        ax.set_xlabel("training step (pre-training + fine-tuning)")
        ax.set_ylabel("validation ΔPSNR-Y, 8-bit output (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", required=True)
    t.add_argument("--tgd", action="store_true", help="TGD pre-training for --pre steps first")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=3000, help="total steps of both stages")
    t.add_argument("--pre", type=int, default=450, help="TGD steps (15%% of 3000, SPECS 2.7)")
    t.add_argument("--every", type=int, default=500, help="keep weights every this many steps (and the last)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    s = sub.add_parser("score")
    s.add_argument("out", type=Path)
    s.add_argument("--val", required=True)
    s.add_argument("--variants", default="ldp22,ldp37,crf35")
    s.add_argument("--frames", type=int, default=16)
    sub.add_parser("table").add_argument("out", type=Path)
    p = sub.add_parser("plot")
    p.add_argument("out", type=Path)
    p.add_argument("path")
    args = ap.parse_args()
    if args.cmd == "train":
        from codecave.cli.train import parse_overrides

        train_arm(args.out, args.arm, args.tgd, args.seed, args.steps, args.pre, args.every,
                  parse_overrides(args.set))
    elif args.cmd == "score":
        score_arms(args.out, args.val, args.variants.split(","), args.frames)
    elif args.cmd == "table":
        print(table(args.out))
    else:
        plot(args.out, args.path)


if __name__ == "__main__":
    main()
