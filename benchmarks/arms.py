"""The arms of a claims study (``cavsr_claims.py``, ``crds_claims.py``): timing an arm's
steps, training it and recording what it took, and scoring: each arm's run evaluated on a
validation set once, and every arm scored so far tabulated together."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from codecave.engine.config import load_config
from codecave.engine.trainer import train
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import evaluate, write_report
from codecave.models import create_model


def seconds_per_step(recipe: Path, overrides: dict[str, object], folder: Path, steps: int = 12,
                     skip: int = 1) -> float:
    """An arm's seconds per step: ``steps`` steps of ``recipe`` with ``overrides`` in ``folder/probe``
    (removed after), timed from logged step ``skip + 1`` to the last (the first steps of a run
    are slower while its data loads: a ranker's first 20 took 0.5-0.9 s, the rest 0.16 s)."""
    probe = folder / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    train(load_config(recipe, {**overrides, "train.steps": steps, "train.log_every": 1, "train.snapshot_every": 0,
                               "out": str(probe)}), progress=False)
    rows = [json.loads(x) for x in (probe / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(probe)
    return (rows[-1]["seconds"] - rows[skip]["seconds"]) / (rows[-1]["step"] - rows[skip]["step"])


def train_planned(recipe: Path, overrides: dict[str, object], folder: Path) -> None:
    """Train an arm for the steps in ``folder/plan.json`` into ``folder/run`` (resumable) and
    write ``folder/arm.json``: the plan, the wall seconds trained and whether it finished."""
    plan = json.loads((folder / "plan.json").read_text())
    result = train(load_config(recipe, {**overrides, "train.steps": plan["steps"], "out": str(folder / "run")}),
                   progress=False)
    record = {**plan, "trained_seconds": round(result.seconds, 1), "finished": result.finished}
    (folder / "arm.json").write_text(json.dumps(record, indent=1))


def score_arms(out: Path, model: str, val: str, frames: int, variants: list[str], arms: list[str] | None,
               again: bool, baseline: str) -> dict[str, dict[str, object]]:
    """Evaluate the arms under ``out`` (or those named) in fp32 and print the table of every arm
    scored so far (mean ΔPSNR-Y over ``baseline`` per rate point, and Temple's alone).

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
            enhancer = Enhancer(create_model(model, weights=str(folder / "run")),
                                EnhanceOptions(device="cpu", precision="fp32"))
            report = evaluate(enhancer, val, variants, max_frames=frames,
                              model_info={"name": model, "arm": folder.name, "weights": str(folder / "run"),
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
                             "input_temple": {c["variant"]: c["psnr_in"] for c in temple}}
        print(folder.name, json.dumps(rows[folder.name]["mean"]))
    (out / "scores.json").write_text(json.dumps(rows, indent=1))
    head = " | ".join(variants)
    print(f"| arm | steps | minutes | split mean ΔPSNR-Y over {baseline}: {head} | Temple: {head} |")
    print("|---|---|---|" + "---|" * (2 * len(variants)))
    for name, r in rows.items():
        cells = " | ".join(f"{r['mean'].get(v, float('nan')):+.4f}" for v in variants)
        temple = " | ".join(f"{r['temple'].get(v, float('nan')):+.4f}" for v in variants)
        print(f"| {name} | {r['arm']['steps']} | {r['arm']['trained_seconds'] / 60:.1f} | {cells} | {temple} |")
    return rows


def add_score_parser(sub: argparse._SubParsersAction, val: str, variants: str) -> argparse.ArgumentParser:
    """The ``score`` sub-command's arguments."""
    s = sub.add_parser("score")
    s.add_argument("out", type=Path)
    s.add_argument("--val", default=val)
    s.add_argument("--frames", type=int, default=8)
    s.add_argument("--variants", default=variants)
    s.add_argument("--arms", default=None, help="comma-separated arms to evaluate (default: all); the table lists all")
    s.add_argument("--again", action="store_true", help="evaluate arms that already have a report")
    s.add_argument("--threads", type=int, default=2)
    return s


def check_arms(ap: argparse.ArgumentParser, args: argparse.Namespace, known: dict[str, object]) -> None:
    """Refuse ``score --arms`` naming arms the study does not have."""
    if args.cmd == "score" and args.arms and set(args.arms.split(",")) - set(known):
        ap.error(f"unknown arms {sorted(set(args.arms.split(',')) - set(known))}; choose from {sorted(known)}")
