"""CRDS claims 1-3 (SPECS 1.7): arms of the first training stage, matched in steps.

Every arm trains ``configs/crds/small.yaml`` (same seed, data order and, where it has one,
the same pre-trained auto-encoder start) with one change, for the same number of steps:

* ``full``: the recipe (MuNA, the LDR-AE pre-trained and frozen at the start, intermediate
  supervision); ``full_s1``: the same with seed 1, for the spread;
* ``warping``: MuNA replaced by plain warping of the neighbours' latents with the same
  motion and the same fusion (claim 1; paper Table 3, A against B);
* ``scratch``: no auto-encoder pre-training, nothing frozen (claim 2, iteration-matched);
  ``scratch_time``: the same given the pre-training's minutes as extra steps
  (claim 2, time-matched);
* ``final_only``, ``final_only_s1``: the final loss only, no intermediate supervision
  (claim 3, two seeds each).

``score`` runs ``codecave evaluate`` on every arm over the validation set and prints
mean ΔPSNR-Y over the decoded input per rate point, and Temple's alone.

    taskset -c 0 python benchmarks/crds_claims.py train runs/crds_claims --arm full --steps 600 &
    taskset -c 1 python benchmarks/crds_claims.py train runs/crds_claims --arm warping --steps 600
    python benchmarks/crds_claims.py score runs/crds_claims --val data/vig_val --frames 8
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from codecave.engine.config import load_config
from codecave.engine.trainer import train
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import evaluate, write_report
from codecave.models import create_model

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs/crds/small.yaml"
SCRATCH = {"train.init": "", "objective.settings": {"encoder_frozen": 0.0, "intermediate_weight": 1.0}}
FINAL_ONLY = {"objective.settings": {"encoder_frozen": 0.14, "intermediate_weight": 0.0}}
ARMS: dict[str, dict[str, object]] = {
    "full": {},
    "full_s1": {"train.seed": 1},
    "warping": {"model.overrides": {"muna": False}, "train.init_strict": False},
    "scratch": SCRATCH,
    "scratch_time": SCRATCH,
    "final_only": FINAL_ONLY,
    "final_only_s1": {**FINAL_ONLY, "train.seed": 1},
}


def pretraining_seconds(init: str) -> float:
    """Wall time of the auto-encoder pre-training run ``init`` (its last logged ``seconds``)."""
    rows = (Path(init) / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(rows[-1])["seconds"])


def train_arm(out: Path, arm: str, steps: int, threads: int, init: str) -> None:
    """Train one arm for ``steps`` (``scratch_time``: plus the pre-training's time in steps,
    timed by a 12-step probe); resumable."""
    folder = out / arm
    plan = folder / "plan.json"
    base = {"train.threads": threads, "train.init": init, **ARMS[arm]}
    if not plan.exists():
        extra, per_step = 0, None
        if arm == "scratch_time":
            probe = folder / "probe"
            shutil.rmtree(probe, ignore_errors=True)
            train(load_config(RECIPE, {**base, "train.steps": 12, "train.log_every": 1, "train.snapshot_every": 0,
                                       "out": str(probe)}), progress=False)
            rows = [json.loads(x) for x in (probe / "metrics.jsonl").read_text().splitlines()]
            per_step = (rows[-1]["seconds"] - rows[1]["seconds"]) / (rows[-1]["step"] - rows[1]["step"])
            extra = round(pretraining_seconds(init) / per_step)
            shutil.rmtree(probe)
        folder.mkdir(parents=True, exist_ok=True)
        plan.write_text(json.dumps({"arm": arm, "steps": steps + extra, "extra_steps_for_pretraining": extra,
                                    "seconds_per_step_probe": per_step, "overrides": ARMS[arm]}, indent=1))
    steps = json.loads(plan.read_text())["steps"]
    cfg = load_config(RECIPE, {**base, "train.steps": steps, "train.snapshot_every": 0, "out": str(folder / "run")})
    result = train(cfg, progress=False)
    record = {**json.loads(plan.read_text()), "trained_seconds": round(result.seconds, 1), "finished": result.finished}
    (folder / "arm.json").write_text(json.dumps(record, indent=1))


def score(out: Path, val: str, frames: int, variants: list[str], arms: list[str] | None, again: bool) -> None:
    """Evaluate the arms (or those named) and print the table of every arm scored so far;
    a report made with other settings is evaluated again or, when not named, left out."""
    rows = {}
    for folder in sorted(p for p in out.iterdir() if (p / "arm.json").exists()):
        report_json = folder / "validation" / "scores.json"
        settings = {"val": str(val), "frames": frames, "variants": variants}
        stale = report_json.exists() and any(
            json.loads(report_json.read_text())["model"].get(k) != v for k, v in settings.items())
        if (arms is None or folder.name in arms) and (again or stale or not report_json.exists()):
            model = create_model("crds", weights=str(folder / "run"))
            enhancer = Enhancer(model, EnhanceOptions(device="cpu", precision="fp32"))
            report = evaluate(enhancer, val, variants, max_frames=frames,
                              model_info={"name": "crds", "arm": folder.name, "weights": str(folder / "run"),
                                          "precision": "fp32", **settings})
            write_report(report, folder / "validation")
            stale = False
        if not report_json.exists() or stale:
            if stale:
                print(f"{folder.name}: its report was made with other --val/--frames/--variants; left out")
            continue
        scored = json.loads(report_json.read_text())
        temple = [c for c in scored["clips"] if c["clip"] == "temple"]
        rows[folder.name] = {"arm": json.loads((folder / "arm.json").read_text()),
                             "mean": {v: m["delta_psnr"] for v, m in scored["mean"].items()},
                             "temple": {c["variant"]: c["delta_psnr"] for c in temple}}
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    head = " | ".join(variants)
    print(f"| arm | steps | minutes | mean ΔPSNR-Y over the input: {head} | Temple: {head} |")
    print("|---|---|---|" + "---|" * (2 * len(variants)))
    for name, r in rows.items():
        cells = " | ".join(f"{r['mean'].get(v, float('nan')):+.4f}" for v in variants)
        temple = " | ".join(f"{r['temple'].get(v, float('nan')):+.4f}" for v in variants)
        print(f"| {name} | {r['arm']['steps']} | {r['arm']['trained_seconds'] / 60:.1f} | {cells} | {temple} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", choices=sorted(ARMS), required=True)
    t.add_argument("--steps", type=int, default=600)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--init", default="runs/crds_ldr", help="the auto-encoder pre-training run the arms start from")
    s = sub.add_parser("score")
    s.add_argument("out", type=Path)
    s.add_argument("--val", default="data/vig_val")
    s.add_argument("--frames", type=int, default=8)
    s.add_argument("--variants", default="ldp37,ldp22,crf35")
    s.add_argument("--arms", default=None, help="comma-separated arms to evaluate (default: all); the table lists all")
    s.add_argument("--again", action="store_true", help="evaluate arms that already have a report")
    s.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "score" and args.arms and set(args.arms.split(",")) - set(ARMS):
        ap.error(f"unknown arms {sorted(set(args.arms.split(',')) - set(ARMS))}; choose from {sorted(ARMS)}")
    if args.cmd == "train":
        train_arm(args.out, args.arm, args.steps, args.threads, args.init)
    else:
        torch.set_num_threads(args.threads)
        score(args.out, args.val, args.frames, args.variants.split(","), args.arms and args.arms.split(","), args.again)


if __name__ == "__main__":
    main()
