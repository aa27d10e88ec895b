"""Train any recipe on a borrowed GPU in one command: pack here, train there, validate here.

A GPU machine that is lent for minutes must not spend them preparing data, and it
may have no PyAV and no room for the prepared dataset. So:

1. ``pack`` (here, with PyAV and the prepared dataset): cut the recipe's training data
   into one compressed pack (:func:`codecave.data.packed.pack_dataset`) that fits what
   can travel, write the recipe beside it, and check it by running a few training
   steps from the pack on this CPU (printing the size and the steps per second the
   packed format allows).
2. ``train`` (there, one command): train from the pack, with batches drawn on the GPU
   (:class:`codecave.data.packed.PackedWindows`), stopping after ``--minutes``; the run
   folder (``model.safetensors``, ``checkpoint.pt``, ``metrics.jsonl``, ``config.yaml``)
   is written under ``--out``. Running it again on the same folder resumes.
3. Back here: validate and ship as for any run (``scripts/ship_weights.py RUN VAL``).

``dry-run`` does 1 and 2 on this CPU with a tiny budget and a few steps (CI runs it).

Usage:
    python scripts/gpu_train.py pack configs/pnp_vcve/fast.yaml --out gpu_pack [--set data.root=...]
        [--budget-mib auto] [--tile 96] [--frames 5]
    python scripts/gpu_train.py train gpu_pack --out OUT [--minutes 8] [--set train.batch_size=64 ...]
    python scripts/gpu_train.py dry-run configs/pnp_vcve/fast.yaml --set data.root=... [--steps 3]

See the README ("Training on a borrowed GPU") for the device tool's command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a copy of the repository without installing it

from codecave.cli.train import parse_overrides
from codecave.engine.checkpoint import load_checkpoint
from codecave.engine.config import TrainConfig, load_config, save_config

#: What may travel to the device machine in all (working tree plus carried paths).
TRAVEL_LIMIT_MIB = 64
#: Left free for files that appear in the working tree before the call.
MARGIN_MIB = 2
PACK = "pack.npz"
RECIPE = "config.yaml"


def tracked_mib() -> float:
    """Size of the repository's tracked files (they travel with every call)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 8.0  # not a git checkout: assume a repository of typical size
    return sum((ROOT / n).stat().st_size for n in names.decode().split("\0") if n and (ROOT / n).is_file()) / 2**20


def pack(cfg: TrainConfig, out: Path, budget_mib: float | None, tile: int, frames: int,
         check_steps: int, compress: bool = True) -> dict[str, object]:
    """Write ``out/pack.npz`` and ``out/config.yaml``; time ``check_steps`` training steps from them."""
    from codecave.data.packed import pack_dataset

    if budget_mib is None:
        budget_mib = TRAVEL_LIMIT_MIB - tracked_mib() - MARGIN_MIB
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    info = pack_dataset(cfg.data.root, out / PACK, cfg.data.window_spec(), budget_mib=budget_mib, tile=tile,
                        frames=frames, seed=cfg.train.seed, compress=compress)
    seconds = time.perf_counter() - start
    recipe = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, packed=PACK))
    save_config(recipe, out / RECIPE)
    summary: dict[str, object] = {
        "pack": str(info.path), "mib": round(info.bytes / 2**20, 2), "budget_mib": round(budget_mib, 2),
        "raw_mib": round(info.raw_bytes / 2**20, 1), "tiles": info.tiles, "clips": info.clips,
        "tile": tile, "frames": frames, "pack_seconds": round(seconds, 1)}
    if check_steps:
        with tempfile.TemporaryDirectory() as tmp:
            summary["check"] = train(out, Path(tmp), minutes=0, steps=check_steps, device="cpu",
                                     overrides={"train.checkpoint_every": check_steps})
    return summary


def recipe_of(folder: Path, out: Path, overrides: dict[str, object]) -> TrainConfig:
    """The packed recipe of ``folder`` with its pack, run folder ``out/run`` and overrides."""
    return load_config(folder / RECIPE, {**overrides, "data.packed": str((folder / PACK).resolve()),
                                         "out": str((out / "run").resolve())})


def train(folder: Path, out: Path, minutes: float, steps: int | str | None, device: str,
          overrides: dict[str, object]) -> dict[str, object]:
    """Train the packed recipe; returns steps, seconds and steps per second of this call.

    ``steps="auto"`` sizes the schedule to the time: the steps per second are measured
    first (30 steps after 10 of warm-up) and the cosine schedule is set to end when
    ``minutes`` run out, so that a short loan ends with a finished schedule.
    """
    import torch

    from codecave.engine.trainer import measure_step_rate
    from codecave.engine.trainer import train as run

    begin = time.perf_counter()
    if device != "cpu" and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    rate = None
    if steps == "auto":
        if not minutes:
            raise SystemExit("--steps auto needs --minutes")
        probe = recipe_of(folder, out, overrides)
        rate = measure_step_rate(probe, device)
        left = 60 * minutes - (time.perf_counter() - begin) - 20  # start-up and the last checkpoint
        steps = max(1, int(rate * left))
        print(f"{rate:.1f} steps/s measured: a {steps}-step schedule for the {minutes:g} minutes", flush=True)
    if steps:
        overrides = {**overrides, "train.steps": int(steps)}
    cfg = recipe_of(folder, out, overrides)
    # the whole command keeps to ``minutes``: the rate probe and start-up come out of the training time
    budget = max(0.05, minutes - (time.perf_counter() - begin) / 60) if minutes else 0.0
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=budget))
    state = load_checkpoint(Path(cfg.out))
    first = int(state["step"]) if state is not None else 0
    start = time.perf_counter()
    result = run(cfg, progress=False, device=device)
    seconds = time.perf_counter() - start
    done = result.step - first
    return {"run": str(result.out), "step": result.step, "finished": result.finished, "loss": result.loss,
            "seconds": round(seconds, 1), "steps_per_second": round(done / seconds, 2) if seconds else None,
            "samples_per_second": round(done * cfg.train.batch_size / seconds, 1) if seconds else None,
            "measured_steps_per_second": None if rate is None else round(rate, 2),
            "device": device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack a recipe's training data and check it here")
    p.add_argument("config")
    p.add_argument("--out", default="gpu_pack")
    p.add_argument("--budget-mib", type=float, default=None,
                   help=f"pack size limit (default: {TRAVEL_LIMIT_MIB} MiB less the repository and a margin)")
    p.add_argument("--tile", type=int, default=96)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--check-steps", type=int, default=5)
    p.add_argument("--no-compress", action="store_true",
                   help="store the arrays uncompressed (a pack for training on this machine; the budget is their size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    t = sub.add_parser("train", help="train from a pack (on the GPU machine)")
    t.add_argument("folder", help="the folder `pack` wrote")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=8.0, help="stop after this much training time")
    t.add_argument("--steps", default=None,
                   help="schedule length: a number, or 'auto' to fit the schedule to --minutes (default: the recipe's)")
    t.add_argument("--device", default="auto")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d = sub.add_parser("dry-run", help="pack with a tiny budget and train a few steps on this CPU")
    d.add_argument("config")
    d.add_argument("--steps", type=int, default=3)
    d.add_argument("--budget-mib", type=float, default=2.0)
    d.add_argument("--tile", type=int, default=64)
    d.add_argument("--frames", type=int, default=3)
    d.add_argument("--out", default=None)
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.command == "pack":
        result = pack(load_config(args.config, overrides), Path(args.out), args.budget_mib, args.tile, args.frames,
                      args.check_steps, compress=not args.no_compress)
    elif args.command == "train":
        steps = args.steps if args.steps in (None, "auto") else int(args.steps)
        result = train(Path(args.folder), Path(args.out), args.minutes, steps, args.device, overrides)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out or tmp)
            cfg = load_config(args.config, overrides)
            result = {"pack": pack(cfg, out / "pack", args.budget_mib, args.tile, args.frames, 0),
                      "train": train(out / "pack", out, 0, args.steps, "cpu", {})}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
