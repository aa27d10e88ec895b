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

Claim 1 at equal wall time (``--minutes``: each arm's schedule is sized to the budget
from its measured steps per second), the full-resolution base at matched parameters
(33,173 against 33,185) beside the shipped layout, fine-tuning only, side by side:

    taskset -c 0 python benchmarks/vig_claims.py train runs/vig_claim1 --arm ud_s0 --seed 0 \
        --minutes 35 --every 50 &
    taskset -c 1 python benchmarks/vig_claims.py train runs/vig_claim1 --arm base_s0 --seed 0 \
        --minutes 35 --every 50 --set model.overrides.resample=false \
        --set model.overrides.c1=20 --set model.overrides.c2=20
    python benchmarks/vig_claims.py score runs/vig_claim1 --val data/vig_val --frames 8 --every 100
    python benchmarks/vig_claims.py plot runs/vig_claim1 docs/vig_ud_curve.png --wall-time

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
from codecave.engine.checkpoint import load_checkpoint
from codecave.engine.config import load_config
from codecave.engine.trainer import measure_step_rate, train
from codecave.grid import luma, peak, to_unit
from codecave.models import create_model

ROOT = Path(__file__).resolve().parents[1]
PRE, FINE = ROOT / "configs/vig/small_tgd.yaml", ROOT / "configs/vig/small.yaml"


def train_arm(out: Path, arm: str, tgd: bool, seed: int, steps: int, pre: int, every: int,
              overrides: dict[str, object], minutes: float = 0.0) -> None:
    """Train one arm (resumable: a finished stage is skipped by the trainer).

    With ``minutes`` (fine-tuning only) the arm gets a wall-time budget instead of a step
    count: its steps per second are measured first (2 + 8 steps of a throwaway model on the
    real batches) and the cosine schedule is set to end when the budget runs out, the
    measurement included; ``train.max_minutes`` stops it there in any case. A timed arm
    that was interrupted resumes with what is left of its budget (the probe's time and the
    training time in its checkpoint deducted); one that ended, finished or stopped by the
    budget, is not trained further.
    """
    folder = out / arm
    common = {"train.seed": seed, "train.snapshot_every": every, "train.checkpoint_every": every, **overrides}
    rate, probe_seconds = None, 0.0
    if minutes:
        if tgd:
            raise SystemExit("--minutes sizes a fine-tuning-only arm; give TGD arms --steps")
        begin = time.perf_counter()
        record_path = folder / "arm.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        if record and not record.get("minutes"):
            raise SystemExit(f"{folder} was trained with --steps; give the timed arm another name")
        if "reached" in record:
            print(f"{arm}: its {record['minutes']:g}-minute budget is spent (step {record['reached']}); "
                  "nothing to do", flush=True)
            return
        if record:  # interrupted: keep the schedule the first call chose, with the budget that is left
            steps, rate, probe_seconds = record["steps"], record["rate"], record["probe_seconds"]
            state = load_checkpoint(folder / "fine")
            spent = probe_seconds + (float(state["extra"].get("seconds", 0.0)) if state is not None else 0.0)
        else:
            probe = load_config(FINE, {**common, "train.init": "", "out": str(folder / "probe")})
            rate = measure_step_rate(probe, "cpu", steps=8, warmup=2)
            probe_seconds = time.perf_counter() - begin
            # 3 % and 10 s held back for checkpoints and snapshots
            steps = max(1, int(0.97 * rate * (60 * minutes - probe_seconds - 10)))
            folder.mkdir(parents=True, exist_ok=True)
            record = {"arm": arm, "tgd": False, "seed": seed, "steps": steps, "pre": 0, "overrides": overrides,
                      "minutes": minutes, "rate": rate, "probe_seconds": round(probe_seconds, 1)}
            record_path.write_text(json.dumps(record, indent=1))
            spent = probe_seconds
        print(f"{arm}: {rate:.3f} steps/s measured, a {steps}-step schedule for {minutes:g} minutes "
              f"({spent / 60:.1f} spent)", flush=True)
        common["train.max_minutes"] = max(0.05, minutes - spent / 60)
    fine_init = ""
    if tgd:
        cfg = load_config(PRE, {**common, "train.steps": pre, "out": str(folder / "pre")})
        train(cfg, progress=False)
        fine_init = str(folder / "pre")
    cfg = load_config(FINE, {**common, "train.steps": steps - (pre if tgd else 0), "train.init": fine_init,
                             "out": str(folder / "fine")})
    result = train(cfg, progress=False)
    record = {"arm": arm, "tgd": tgd, "seed": seed, "steps": steps, "pre": pre if tgd else 0,
              "overrides": overrides, "fine_seconds": round(result.seconds, 1), "minutes": minutes or None,
              "rate": rate, "probe_seconds": round(probe_seconds, 1) if minutes else None,
              # total steps, pre-training included, as _snapshots counts them
              "reached": (pre if tgd else 0) + result.step, "finished": result.finished}
    (folder / "arm.json").write_text(json.dumps(record, indent=1))


def _snapshots(folder: Path) -> list[tuple[int, Path]]:
    """(total step, weights) of an arm's kept snapshots: pre-training ones count from 0,
    fine-tuning ones after the pre-training steps."""
    arm = json.loads((folder / "arm.json").read_text())
    out = {int(p.stem[4:]): p for p in (folder / "pre" / "snapshots").glob("step*.safetensors")}
    out.update({arm["pre"] + int(p.stem[4:]): p for p in (folder / "fine" / "snapshots").glob("step*.safetensors")})
    if arm["pre"] and (folder / "pre" / "model.safetensors").exists():
        out.setdefault(arm["pre"], folder / "pre" / "model.safetensors")
    out.setdefault(arm.get("reached", arm["steps"]), folder / "fine" / "model.safetensors")  # the last weights
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


def score_arms(out: Path, val: str, variants: list[str], frames: int, arms: list[str] | None = None,
               every: int = 0) -> None:
    """Score the kept snapshots of every arm (or of ``arms``), each once: with ``every``, only
    the steps that are multiples of it and each arm's last weights."""
    folders = sorted(p for p in out.iterdir() if (p / "arm.json").exists())
    missing = set(arms or []) - {f.name for f in folders}
    if missing:
        raise SystemExit(f"no such arm in {out}: {', '.join(sorted(missing))}")
    for folder in folders:
        if arms and folder.name not in arms:
            continue
        log = folder / "curve.jsonl"
        done = {json.loads(line)["weights"] for line in log.read_text().splitlines()} if log.exists() else set()
        kept = _snapshots(folder)
        for step, weights in kept:
            if str(weights) in done or not weights.exists():
                continue
            if every and step % every and step != kept[-1][0]:
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


def _minutes(out: Path, arm: str, step: int) -> float | None:
    """Training minutes at ``step`` of an arm trained on a wall-time budget (``--minutes``),
    read off its mean rate (the schedule's steps take the same time), the rate probe not
    counted; None for other arms and for an arm still training."""
    record = json.loads((out / arm / "arm.json").read_text())
    if not record.get("minutes") or "fine_seconds" not in record:
        return None
    return step * record["fine_seconds"] / 60 / record["reached"]


def table(out: Path) -> str:
    """The curves as a markdown table; arms trained on a wall-time budget (``--minutes``)
    also give the minutes each row had."""
    curves = _curves(out)
    variants = next(iter(curves.values()))[0]["by_variant"].keys() if curves else []
    lines = ["| arm | step | minutes | " + " | ".join(f"{v} ΔPSNR-Y float / 8-bit (dB)" for v in variants) + " |",
             "|---|---|---|" + "---|" * len(variants)]
    for arm, rows in curves.items():
        for r in rows:
            at = _minutes(out, arm, r["step"])
            minutes = "" if at is None else f"{at:.1f}"
            lines.append(f"| {arm} | {r['step']} | {minutes} | " + " | ".join(
                f"{r['by_variant'][v].get('float', float('nan')):+.4f} / {r['by_variant'][v]['mean']:+.4f}"
                for v in variants) + " |")
    return "\n".join(lines)


def plot(out: Path, path: str, wall_time: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _curves(out)
    untimed = [arm for arm in curves if wall_time and _minutes(out, arm, 0) is None]
    if untimed:
        raise SystemExit(f"--wall-time needs arms trained (to the end) with --minutes: not {', '.join(untimed)}")
    variants = list(next(iter(curves.values()))[0]["by_variant"])
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.4), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        for arm, rows in curves.items():
            style = "-" if arm.startswith(("tgd", "ud")) else "--"
            x = [_minutes(out, arm, r["step"]) if wall_time else r["step"] for r in rows]
            ax.plot(x, [r["by_variant"][variant]["mean"] for r in rows], style, marker=".",
                    label=arm)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(variant)
        ax.set_xlabel("training minutes (one core)" if wall_time else "training step (pre-training + fine-tuning)")
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
    t.add_argument("--minutes", type=float, default=0.0,
                   help="a wall-time budget instead of --steps: the schedule is sized to it (fine-tuning only)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    s = sub.add_parser("score")
    s.add_argument("out", type=Path)
    s.add_argument("--val", required=True)
    s.add_argument("--variants", default="ldp22,ldp37,crf35")
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--arms", default="", help="comma-separated arms to score (default: all)")
    s.add_argument("--every", type=int, default=0, help="score only steps that are multiples of this, and the last")
    sub.add_parser("table").add_argument("out", type=Path)
    p = sub.add_parser("plot")
    p.add_argument("out", type=Path)
    p.add_argument("path")
    p.add_argument("--wall-time", action="store_true", help="x axis: training minutes instead of steps")
    args = ap.parse_args()
    if args.cmd == "train":
        from codecave.cli.train import parse_overrides

        train_arm(args.out, args.arm, args.tgd, args.seed, args.steps, args.pre, args.every,
                  parse_overrides(args.set), args.minutes)
    elif args.cmd == "score":
        score_arms(args.out, args.val, args.variants.split(","), args.frames,
                   [a for a in args.arms.split(",") if a], args.every)
    elif args.cmd == "table":
        print(table(args.out))
    else:
        plot(args.out, args.path, args.wall_time)


if __name__ == "__main__":
    main()
