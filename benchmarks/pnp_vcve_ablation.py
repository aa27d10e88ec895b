"""PnP-VCVE ablations like the paper's Table 5: the table, and what each codec prior bought.

Reads the arms trained and scored by ``benchmarks/pnp_vcve_ablation.sh`` (each a
``benchmarks/learning_curves.py`` arm: ``<runs>/<arm>/curve.jsonl``) and prints, at one
wall-clock point, the 8-bit ΔPSNR-Y per rate point (mean over validation clips), the
mean over rate points, and the full model's lead over each ablation. The two seeds of
the full model give the spread: a lead smaller than it is not a measured effect.

Usage:
    python benchmarks/pnp_vcve_ablation.py runs/ablation [--minutes 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from codecave.models import create_model

#: arm -> what it changes (the order of the table).
ARMS = {
    "full": "the full model (seed 0)",
    "full-seed1": "the full model, seed 1",
    "wo-mv": "w/o MV alignment (neighbours concatenated unwarped)",
    "wo-region": "w/o region-aware refinement (no partition filters)",
    "wo-caa": "w/o CAA (one expert, no frame-wise transfer)",
}


def load(runs: Path, minutes: float) -> dict[str, dict[str, object]]:
    """Each arm's record at ``minutes`` (missing arms are left out)."""
    found = {}
    for arm in ARMS:
        log = runs / arm / "curve.jsonl"
        if not log.exists():
            continue
        for record in map(json.loads, log.read_text().splitlines()):
            if abs(record["minutes"] - minutes) < 1e-6:
                found[arm] = record
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = load(args.runs, args.minutes)
    if "full" not in rows:
        raise SystemExit(f"{args.runs}: no 'full' arm scored at {args.minutes:g} minutes yet")
    variants = list(rows["full"]["by_variant"])
    clips = sorted(rows["full"]["by_clip"][variants[0]])

    def gains(arm: str) -> np.ndarray:
        return np.array([rows[arm]["by_variant"][v]["8bit"] for v in variants])

    print(f"ΔPSNR-Y (dB, 8-bit output, mean of {len(clips)} clips: {', '.join(clips)}) after {args.minutes:g} "
          "minutes of training on one core")
    print("| arm | params (M) | steps | " + " | ".join(variants) + " | mean |")
    print("|---|---|---|" + "---|" * (len(variants) + 1))
    for arm, record in rows.items():
        g = gains(arm)
        switches = {k.split(".")[-1]: v for k, v in record["overrides"].items() if k.startswith("model.overrides.")}
        model = create_model("pnp_vcve", weights=None, variant="fast", **switches)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {ARMS[arm]} | {params:.3f} | {record['step']} | " + " | ".join(f"{x:+.3f}" for x in g)
              + f" | {g.mean():+.3f} |")
    full = gains("full")
    spread = np.abs(full - gains("full-seed1")) if "full-seed1" in rows else None
    spread_mean = abs(full.mean() - gains("full-seed1").mean()) if "full-seed1" in rows else None
    print("\nwhat each prior bought (full minus ablation; seed spread |seed 0 - seed 1| below):")
    print("| prior | " + " | ".join(variants) + " | mean |")
    print("|---|" + "---|" * (len(variants) + 1))
    bought = {}
    for arm in ("wo-mv", "wo-region", "wo-caa"):
        if arm in rows:
            d = full - gains(arm)
            bought[arm] = d.tolist()
            print(f"| {ARMS[arm][4:].split(' (')[0]} | " + " | ".join(f"{x:+.3f}" for x in d) + f" | {d.mean():+.3f} |")
    if spread is not None:
        print("| seed spread | " + " | ".join(f"{x:.3f}" for x in spread) + f" | {spread_mean:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"minutes": args.minutes, "variants": variants, "clips": clips,
                                         "rows": rows, "bought": bought,
                                         "spread": None if spread is None else spread.tolist()}, indent=2))


if __name__ == "__main__":
    main()
