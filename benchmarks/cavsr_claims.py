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

``twin`` trains the codec-free twin of the codec-aware chain shipped until session 22 from
scratch (its plan is ``configs/cavsr/twin_plan.json``; ``--probe-manifest`` plans afresh against
a manifest's ``cavsr_fast`` chain): every stage of that chain (``small``, its continuation,
``fast``) again with ``plain``'s switches,
each stage given the steps that take the codec-aware stage's compute on this machine (both
timed by a probe here, over the second half of 80 steps: steps x codec-aware seconds per step / codec-free seconds per step;
the ranker's compute is added to the first stage, which the twin does not need). The
arm's folder is ``OUT/twin`` (``OUT/twin/stageN/run``; the last stage's run is the arm's)
and ``score OUT`` scores it beside any other arm in OUT (the shipped weights: ``codecave
evaluate`` with the same set, frames and ``--precision fp32``). "Codec-free" is ``plain``'s
switches: without the decoder's vectors the twin has no alignment at all, so the comparison
prices the codec information and the alignment it brings together. Equal compute is only as
good as the probes: one probe each, so a few per cent either way (the two ``small`` stages'
codec-free probes, the same network, came out 0.518 and 0.552 s/step in one run).

    taskset -c 0 python benchmarks/cavsr_claims.py train runs/cavsr_claims --arm full --minutes 60 &
    taskset -c 1 python benchmarks/cavsr_claims.py train runs/cavsr_claims --arm plain --minutes 60
    python benchmarks/cavsr_claims.py score runs/cavsr_claims --val data/sr_val --frames 8
    python benchmarks/cavsr_claims.py twin runs/cavsr_twin      # about 70 minutes of one core here
    python benchmarks/cavsr_claims.py score runs/cavsr_twin --val data/sr_val --frames 8

(``score --arms full,plain --threads 1`` on one core and the rest on the other, then a
plain ``score`` tabulates the reports already written.)

``after-twin`` asks the question the other way round: starting from the twin's weights (a network
that learned without codec information), does a last stage *with* it beat the same time spent
going on without it? ``after_codec`` turns the codec information on (``configs/cavsr/
fast_after_twin.yaml``: the twin's tensors, the ranker's frozen compression encoder from the
shipped ``cavsr`` weights, the CAM layers starting as the identity (``gamma = 1``, ``beta = 0``:
their last 1x1 convolutions zero, ``gamma``'s bias one) and the alignment's offsets at zero, so
the first step is the twin plus decoder-vector warping and B momentum); ``after_plain`` goes on
with ``plain``'s switches. Same recipe, seed and data order; each arm's steps fit ``--minutes``
by a probe of both, timed one after the other in one process (``--plan``):

    python benchmarks/cavsr_claims.py after-twin runs/cavsr_twin --plan --minutes 30
    taskset -c 0 python benchmarks/cavsr_claims.py after-twin runs/cavsr_twin --arm after_codec &
    taskset -c 1 python benchmarks/cavsr_claims.py after-twin runs/cavsr_twin --arm after_plain; wait
    python benchmarks/cavsr_claims.py score runs/cavsr_twin --val data/sr_val --frames 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from arms import add_score_parser, check_arms, score_arms, seconds_per_step, train_planned

from codecave.engine.config import load_config
from codecave.engine.trainer import train

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


SHIPPED = ROOT / "src/codecave/weights/manifest.json"


TWIN_PLAN = ROOT / "configs/cavsr/twin_plan.json"


def train_twin(out: Path, threads: int, probe_steps: int, manifest: Path | None) -> None:
    """Train the codec-free twin of the ``cavsr`` weights, stage by stage (resumable).

    The stages and steps are ``configs/cavsr/twin_plan.json`` (the plan of session 21, made by
    probing against the chain shipped then: ranker, ``small``, ``small_stage2``, ``fast``), unless
    ``manifest`` names a weights manifest whose ``cavsr_fast`` chain is to be probed afresh."""
    folder = out / "twin"
    plan_file = folder / "plan.json"
    if not plan_file.exists() and manifest is None:
        folder.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(TWIN_PLAN.read_text())
    if not plan_file.exists():
        stages = json.loads(manifest.read_text())["cavsr_fast"]["training"]["stages"]
        odd = [st["run"] for st in stages if st.get("recipe") is None or st["settings"]["model"].get("overrides")]
        if odd:  # e.g. the chain shipped since session 23, whose middle stages are a twin already
            raise SystemExit(f"{manifest}: stages {odd} have no recipe or changed switches; probe against a "
                             "codec-aware chain of plain recipes (the manifest of commit 9407f44)")
        planned, extra = [], 0.0
        timing = {"train.threads": threads, "train.init": ""}
        for stage in stages:
            recipe = ROOT / stage["recipe"]
            full = seconds_per_step(recipe, timing, folder, probe_steps, probe_steps // 2)
            if stage["settings"]["objective"]["name"] != "super_resolution":  # the ranker: its compute goes on
                extra += stage["steps"] * full
                print(f"{stage['recipe']}: {full:.3f} s/step, {stage['steps']} steps: "
                      f"{extra / 60:.1f} min carried to the next stage")
                continue
            plain = seconds_per_step(recipe, {**timing, "model.overrides": PLAIN}, folder, probe_steps, probe_steps // 2)
            steps = round((stage["steps"] * full + extra) / plain)
            print(f"{stage['recipe']}: codec-aware {full:.3f} s/step x {stage['steps']} "
                  f"(+{extra / 60:.1f} min) -> codec-free {plain:.3f} s/step x {steps}")
            planned.append({"recipe": stage["recipe"], "shipped_steps": stage["steps"],
                         "shipped_minutes": stage["wall_minutes"], "seconds_per_step_codec": full,
                         "seconds_per_step_plain": plain, "carried_seconds": extra, "steps": steps})
            extra = 0.0
        folder.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(json.dumps({"arm": "twin", "stages": planned, "overrides": PLAIN}, indent=1))
    plan = json.loads(plan_file.read_text())
    init, seconds = "", 0.0
    for i, stage in enumerate(plan["stages"]):
        run = folder / f"stage{i}" / "run"
        overrides = {"model.overrides": PLAIN, "train.threads": threads, "train.init": init,
                     "train.steps": stage["steps"], "train.max_minutes": 0.0, "out": str(run)}
        result = train(load_config(ROOT / stage["recipe"], overrides), progress=False)
        if not result.finished:
            raise SystemExit(f"{run}: stopped before its {stage['steps']} steps; run again to resume")
        seconds += result.seconds
        init = str(run)
    last = folder / f"stage{len(plan['stages']) - 1}" / "run"
    (folder / "run").unlink(missing_ok=True)
    (folder / "run").symlink_to(last.relative_to(folder))
    (folder / "arm.json").write_text(json.dumps({**plan, "steps": sum(s["steps"] for s in plan["stages"]),
                                                 "trained_seconds": round(seconds, 1), "finished": True},
                                                indent=1))


AFTER_TWIN = ROOT / "configs/cavsr/fast_after_twin.yaml"
AFTER_ARMS = {"after_codec": {}, "after_plain": {"model.overrides": PLAIN},
              # both arms again with another seed (crops and their order): the spread
              "after_codec_s1": {"train.seed": 6}, "after_plain_s1": {"model.overrides": PLAIN, "train.seed": 6}}


def after_twin_init(out: Path, ranker_run: Path) -> Path:
    """The codec-aware arm's start: the twin's tensors, the shipped compression encoder, CAM as
    the identity, alignment offsets at zero (the rest of a fresh ``fast`` model's init).

    The compression encoder is the ranker run's (``ranker_run``, stage 1), else the shipped
    ``cavsr`` weights' (frozen since stage 1: the same tensors). The file records the stages its
    tensors come from (metadata ``stages_before``: the ranker's stage, then the twin's), which
    ``scripts/ship_weights.py`` lists in the manifest before the arm's own stage. Built once
    (remove it to build it again)."""
    import sys

    from safetensors.torch import load_file, save_file

    from codecave.models import create_model

    path = out / "after_twin_init.safetensors"
    if path.exists():
        return path
    if not json.loads((out / "twin" / "arm.json").read_text() if (out / "twin" / "arm.json").exists()
                      else "{}").get("finished"):
        raise SystemExit(f"{out / 'twin'}: the twin has not finished; run `cavsr_claims.py twin {out}` first")
    sys.path.insert(0, str(ROOT / "scripts"))
    from ship_weights import training_stages

    if (ranker_run / "model.safetensors").exists():  # the encoder as stage 1 trained it
        encoder = load_file(str(ranker_run / "model.safetensors"))
        ranker = training_stages(ranker_run.resolve())
    else:  # the shipped one: frozen since stage 1, so the same tensors (and its stage's record)
        print(f"{ranker_run}: no such run; the compression encoder comes from the shipped cavsr weights")
        encoder = load_file(str(ROOT / "src/codecave/weights/cavsr_fast.safetensors"))
        ranker = [st for st in json.loads(SHIPPED.read_text())["cavsr_fast"]["training"]["stages"]
                  if st["settings"]["objective"]["name"] != "super_resolution"]
    before = ranker + training_stages((out / "twin" / "run").resolve())
    torch.manual_seed(0)
    state = create_model("cavsr", weights=None, variant="fast").state_dict()
    twin = load_file(str(out / "twin" / "run" / "model.safetensors"))
    state.update({k: v for k, v in twin.items() if not k.startswith("compression_encoder.")})
    state.update({k: v for k, v in encoder.items() if k.startswith("compression_encoder.")})
    for key in state:  # CAM: gamma(rep) = 1, beta(rep) = 0 whatever the representation
        if ".cam" in key and (".gamma.2." in key or ".beta.2." in key):
            fill = 1.0 if key.endswith("gamma.2.bias") else 0.0
            state[key] = torch.full_like(state[key], fill)
    partial = path.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial),
              metadata={"stages_before": json.dumps(before)})
    partial.rename(path)
    return path


def train_after_twin(out: Path, arm: str | None, minutes: float, threads: int, probe_steps: int,
                     ranker_run: Path) -> None:
    """``--plan``: build the start and time both arms; ``--arm``: train one of them (resumable)."""
    init = after_twin_init(out, ranker_run) if arm is None else out / "after_twin_init.safetensors"
    inits = {"after_codec": str(init), "after_plain": str(out / "twin" / "run")}
    inits.update({f"{name}_s1": inits[name] for name in list(inits)})
    if arm is None:
        for name, change in AFTER_ARMS.items():
            folder = out / name
            if (folder / "plan.json").exists():
                continue
            first = out / name.removesuffix("_s1") / "plan.json"
            if name.endswith("_s1") and first.exists():  # the same network: the same steps
                folder.mkdir(parents=True, exist_ok=True)
                plan = json.loads(first.read_text())
                (folder / "plan.json").write_text(json.dumps({**plan, "arm": name, "overrides": change}, indent=1))
                continue
            base = {**change, "train.threads": threads, "train.init": inits[name]}
            per_step = seconds_per_step(AFTER_TWIN, base, folder, probe_steps, probe_steps // 2)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "plan.json").write_text(json.dumps(
                {"arm": name, "minutes": minutes, "seconds_per_step": per_step, "steps": int(minutes * 60 / per_step),
                 "init": inits[name], "overrides": change}, indent=1))
            print(f"{name}: {per_step:.3f} s/step -> {int(minutes * 60 / per_step)} steps")
        return
    folder = out / arm
    if not (folder / "plan.json").exists():
        raise SystemExit(f"{folder}: no plan; run with --plan first")
    steps = json.loads((folder / "plan.json").read_text())["steps"]
    train_planned(AFTER_TWIN, {**AFTER_ARMS[arm], "train.threads": threads, "train.init": inits[arm],
                               "train.snapshot_every": max(1, steps // 4)}, folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", choices=sorted(ARMS), required=True)
    t.add_argument("--minutes", type=float, default=35.0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--init", default="runs/cavsr_ranker", help="the ranker run (stage 1) every arm starts from")
    w = sub.add_parser("twin", help="train the codec-free twin of the shipped weights at equal compute")
    w.add_argument("out", type=Path)
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--probe-steps", type=int, default=80, help="timed over the second half")
    w.add_argument("--probe-manifest", type=Path, default=None,
                   help="plan by probing against this weights manifest's cavsr_fast chain instead of "
                        "configs/cavsr/twin_plan.json (e.g. the manifest of commit 9407f44)")
    a = sub.add_parser("after-twin", help="a last stage from the twin's weights, with and without codec information")
    a.add_argument("out", type=Path, help="the twin's folder (OUT of `twin`)")
    a.add_argument("--plan", action="store_true", help="build the start and time both arms")
    a.add_argument("--arm", choices=sorted(AFTER_ARMS))
    a.add_argument("--minutes", type=float, default=30.0)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--probe-steps", type=int, default=80, help="timed over the second half")
    a.add_argument("--ranker", type=Path, default=Path("runs/cavsr_ranker"),
                   help="the ranker run whose compression encoder the codec-aware arm takes (default "
                        "runs/cavsr_ranker; without it, the shipped cavsr weights' encoder)")
    add_score_parser(sub, "data/sr_val", "crf0,crf15,crf25,crf35")
    args = ap.parse_args()
    check_arms(ap, args, {**ARMS, "twin": {}, **AFTER_ARMS})
    if args.cmd == "train":
        train_arm(args.out, args.arm, args.minutes, args.threads, args.init)
    elif args.cmd == "twin":
        torch.set_num_threads(args.threads)
        train_twin(args.out, args.threads, args.probe_steps, args.probe_manifest)
    elif args.cmd == "after-twin":
        if args.plan == (args.arm is not None):
            ap.error("after-twin: give --plan or --arm")
        torch.set_num_threads(args.threads)
        train_after_twin(args.out, args.arm, args.minutes, args.threads, args.probe_steps, args.ranker)
    else:
        torch.set_num_threads(args.threads)
        score_arms(args.out, "cavsr", args.val, args.frames, args.variants.split(","),
                   args.arms and args.arms.split(","), args.again, "bicubic")


if __name__ == "__main__":
    main()
