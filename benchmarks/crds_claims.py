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
from pathlib import Path

import torch
from arms import add_score_parser, check_arms, score_arms, seconds_per_step, train_planned

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
            per_step = seconds_per_step(RECIPE, base, folder)
            extra = round(pretraining_seconds(init) / per_step)
        folder.mkdir(parents=True, exist_ok=True)
        plan.write_text(json.dumps({"arm": arm, "steps": steps + extra, "extra_steps_for_pretraining": extra,
                                    "seconds_per_step_probe": per_step, "overrides": ARMS[arm]}, indent=1))
    train_planned(RECIPE, {**base, "train.snapshot_every": 0}, folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", choices=sorted(ARMS), required=True)
    t.add_argument("--steps", type=int, default=600)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--init", default="runs/crds_ldr", help="the auto-encoder pre-training run the arms start from")
    add_score_parser(sub, "data/vig_val", "ldp37,ldp22,crf35")
    args = ap.parse_args()
    check_arms(ap, args, ARMS)
    if args.cmd == "train":
        train_arm(args.out, args.arm, args.steps, args.threads, args.init)
    else:
        torch.set_num_threads(args.threads)
        score_arms(args.out, "crds", args.val, args.frames, args.variants.split(","),
                   args.arms and args.arms.split(","), args.again, "the input")


if __name__ == "__main__":
    main()
