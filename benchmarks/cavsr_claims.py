"""CAVSR claims 2 and 3 and the issue's "without codec information" target, at equal wall time.

Every arm trains ``configs/cavsr/small.yaml`` (same seed, data order and initialisation)
with one change, for the same number of minutes: a short probe times the arm's steps, and
its cosine schedule is set to the steps that fit the budget.

* ``full``: the recipe (compression-aware modulation, refined decoder vectors, B momentum);
* ``no_cam``: no compression-aware modulation (claim 2, paper Table 2);
* ``mv``: decoder vectors without the learned refinement; ``none``: no alignment (claim 3,
  Table 4);
* ``plain``: the same network without any codec information (no modulation, no vectors,
  no residual, no frame-type momentum): the target's baseline;
* ``full_s1``: the recipe with seed 1, for the spread.

``score`` runs ``codecave evaluate`` on every arm over a prepared ``--scale 4`` validation
set and prints mean ΔPSNR-Y over bicubic per rate point, and Temple's alone.

    taskset -c 0 python benchmarks/cavsr_claims.py train runs/cavsr_claims --arm full --minutes 60 &
    taskset -c 1 python benchmarks/cavsr_claims.py train runs/cavsr_claims --arm plain --minutes 60
    python benchmarks/cavsr_claims.py score runs/cavsr_claims --val data/sr_val --frames 8

(``score --arms full,plain --threads 1`` on one core and the rest on the other, then a
plain ``score`` tabulates the reports already written.)
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
RECIPE = ROOT / "configs/cavsr/small.yaml"
PLAIN = {"cam": False, "alignment": "none", "momentum": 1.0}
ARMS: dict[str, dict[str, object]] = {
    "full": {},
    "full_s1": {"train.seed": 1},
    "no_cam": {"model.overrides": {"cam": False}},
    "mv": {"model.overrides": {"alignment": "mv"}},
    "none": {"model.overrides": {"alignment": "none"}},
    "plain": {"model.overrides": PLAIN},
}


def train_arm(out: Path, arm: str, minutes: float, threads: int, init: str) -> None:
    """Probe the arm's speed, then train it for ``minutes`` (resumable: the steps are kept)."""
    folder = out / arm
    plan = folder / "plan.json"
    # Arms without some layers take the ranker's tensors that fit (its compression encoder).
    base = {**ARMS[arm], "train.threads": threads, "train.init": init,
            "train.init_strict": "model.overrides" not in ARMS[arm]}
    if not plan.exists():
        probe = folder / "probe"
        shutil.rmtree(probe, ignore_errors=True)
        train(load_config(RECIPE, {**base, "train.steps": 12, "train.log_every": 1, "train.snapshot_every": 0,
                                   "out": str(probe)}), progress=False)
        rows = [json.loads(x) for x in (probe / "metrics.jsonl").read_text().splitlines()]
        per_step = (rows[-1]["seconds"] - rows[1]["seconds"]) / (rows[-1]["step"] - rows[1]["step"])
        steps = int(minutes * 60 / per_step)
        shutil.rmtree(probe)
        folder.mkdir(parents=True, exist_ok=True)
        plan.write_text(json.dumps({"arm": arm, "minutes": minutes, "seconds_per_step": per_step, "steps": steps,
                                    "overrides": ARMS[arm]}, indent=1))
    steps = json.loads(plan.read_text())["steps"]
    cfg = load_config(RECIPE, {**base, "train.steps": steps, "train.snapshot_every": max(1, steps // 4),
                               "out": str(folder / "run")})
    result = train(cfg, progress=False)
    record = {**json.loads(plan.read_text()), "trained_seconds": round(result.seconds, 1), "finished": result.finished}
    (folder / "arm.json").write_text(json.dumps(record, indent=1))


def score(out: Path, val: str, frames: int, variants: list[str], arms: list[str] | None, again: bool) -> None:
    """Evaluate the arms (or those named) and print the table of every arm scored so far.

    An arm's report (``ARM/validation/scores.json``) is reused unless ``again`` or it was made
    with other settings, so the arms can be scored on several cores at once and tabulated
    together; a report with other settings that is not evaluated again is left out.
    """
    rows = {}
    for folder in sorted(p for p in out.iterdir() if (p / "arm.json").exists()):
        report_json = folder / "validation" / "scores.json"
        settings = {"val": str(val), "frames": frames, "variants": variants}
        stale = report_json.exists() and any(
            json.loads(report_json.read_text())["model"].get(k) != v for k, v in settings.items())
        if (arms is None or folder.name in arms) and (again or stale or not report_json.exists()):
            model = create_model("cavsr", weights=str(folder / "run"))
            enhancer = Enhancer(model, EnhanceOptions(device="cpu", precision="fp32"))
            report = evaluate(enhancer, val, variants, max_frames=frames,
                              model_info={"name": "cavsr", "arm": folder.name, "weights": str(folder / "run"),
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
                             "temple": {c["variant"]: c["delta_psnr"] for c in temple},
                             "bicubic_temple": {c["variant"]: c["psnr_in"] for c in temple}}
        print(folder.name, json.dumps(rows[folder.name]["mean"]))
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    head = " | ".join(variants)
    print(f"| arm | steps | minutes | split mean ΔPSNR-Y over bicubic: {head} | Temple: {head} |")
    print("|---|---|---|" + "---|" * (2 * len(variants)))
    for name, r in rows.items():
        cells = " | ".join(f"{r['mean'].get(v, float('nan')):+.3f}" for v in variants)
        temple = " | ".join(f"{r['temple'].get(v, float('nan')):+.3f}" for v in variants)
        print(f"| {name} | {r['arm']['steps']} | {r['arm']['trained_seconds'] / 60:.1f} | {cells} | {temple} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", choices=sorted(ARMS), required=True)
    t.add_argument("--minutes", type=float, default=35.0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--init", default="runs/cavsr_ranker", help="the ranker run (stage 1) every arm starts from")
    s = sub.add_parser("score")
    s.add_argument("out", type=Path)
    s.add_argument("--val", default="data/sr_val")
    s.add_argument("--frames", type=int, default=8)
    s.add_argument("--variants", default="crf0,crf15,crf25,crf35")
    s.add_argument("--arms", default=None, help="comma-separated arms to evaluate (default: all); the table lists all")
    s.add_argument("--again", action="store_true", help="evaluate arms that already have a report")
    s.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "score" and args.arms and set(args.arms.split(",")) - set(ARMS):
        ap.error(f"unknown arms {sorted(set(args.arms.split(',')) - set(ARMS))}; choose from {sorted(ARMS)}")
    if args.cmd == "train":
        train_arm(args.out, args.arm, args.minutes, args.threads, args.init)
    else:
        torch.set_num_threads(args.threads)
        score(args.out, args.val, args.frames, args.variants.split(","), args.arms and args.arms.split(","), args.again)


if __name__ == "__main__":
    main()
