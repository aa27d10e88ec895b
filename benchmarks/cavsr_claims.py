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
from pathlib import Path

import torch
from arms import add_score_parser, check_arms, score_arms, seconds_per_step, train_planned

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
        per_step = seconds_per_step(RECIPE, base, folder)
        steps = int(minutes * 60 / per_step)
        folder.mkdir(parents=True, exist_ok=True)
        plan.write_text(json.dumps({"arm": arm, "minutes": minutes, "seconds_per_step": per_step, "steps": steps,
                                    "overrides": ARMS[arm]}, indent=1))
    steps = json.loads(plan.read_text())["steps"]
    train_planned(RECIPE, {**base, "train.snapshot_every": max(1, steps // 4)}, folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", choices=sorted(ARMS), required=True)
    t.add_argument("--minutes", type=float, default=35.0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--init", default="runs/cavsr_ranker", help="the ranker run (stage 1) every arm starts from")
    add_score_parser(sub, "data/sr_val", "crf0,crf15,crf25,crf35")
    args = ap.parse_args()
    check_arms(ap, args, ARMS)
    if args.cmd == "train":
        train_arm(args.out, args.arm, args.minutes, args.threads, args.init)
    else:
        torch.set_num_threads(args.threads)
        score_arms(args.out, "cavsr", args.val, args.frames, args.variants.split(","),
                   args.arms and args.arms.split(","), args.again, "bicubic")


if __name__ == "__main__":
    main()
