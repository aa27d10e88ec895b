"""Choose where the shipped default switches to its high-CRF weights, and record it.

The default (``pnp_vcve_fast``) is one set of weights for every rate point; a second set of
the same architecture, trained further on the high rate points
(``configs/pnp_vcve/fast_stage7_high.yaml``) and shipped with
``scripts/ship_weights.py RUN VAL --entry pnp_vcve_fast_high --no-pass-through``, gains more
there and less at low CRF. The two runs' validation reports (``RUN/validation/frame_qp/
scores.json``, written by ``ship_weights.py``: same clips and frames, pass-through off) give
the switch point (:func:`codecave.evaluate.choose_rate_switch`: from there up the high-CRF
weights are not worse on any validation clip); ``--ship`` writes it into the default's
manifest entry as ``high_crf``, which :meth:`codecave.enhance.Enhancer.for_crf` follows per
stream (sequence CRF).

    python scripts/rate_switch.py runs/pnp_vcve_fast_stage4/validation/frame_qp/scores.json \\
        runs/pnp_vcve_fast_stage7_high/validation/frame_qp/scores.json [--ship]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecave.evaluate import choose_rate_switch

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "codecave" / "weights"


def per_clip(report: Path) -> tuple[dict[str, dict[str, float]], dict[str, object]]:
    """``{rate point: {clip: ΔPSNR-Y}}`` of an evaluation report, and its frame counts."""
    data = json.loads(report.read_text())
    table: dict[str, dict[str, float]] = {}
    frames: dict[str, object] = {}
    for c in data["clips"]:
        table.setdefault(c["variant"], {})[c["clip"]] = round(float(c["delta_psnr"]), 4)
        frames[f"{c['clip']} {c['variant']}"] = c.get("frames")
    return table, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("low_report", type=Path, help="scores.json of the main weights, pass-through off")
    ap.add_argument("high_report", type=Path, help="scores.json of the high-CRF weights, same clips and frames")
    ap.add_argument("--low", default="pnp_vcve_fast", help="the main weights' manifest entry")
    ap.add_argument("--high", default="pnp_vcve_fast_high", help="the high-CRF weights' manifest entry")
    ap.add_argument("--ship", action="store_true", help="record the switch point in the main entry")
    args = ap.parse_args()
    (low, low_frames), (high, high_frames) = per_clip(args.low_report), per_clip(args.high_report)
    if low_frames != high_frames:
        raise SystemExit("the two reports scored other clips or frames: validate both on the same")
    points = sorted((v for v in set(low) & set(high) if v.startswith("crf") and set(low[v]) == set(high[v])),
                    key=lambda v: float(v.removeprefix("crf")))
    if not points:
        raise SystemExit("the reports share no CRF rate point scored on the same clips")
    low, high = {v: low[v] for v in points}, {v: high[v] for v in points}
    switch = choose_rate_switch(low, high)
    print(f"ΔPSNR-Y per clip (dB), 8-bit, pass-through off: {args.low} -> {args.high}")
    clips = sorted(low[points[0]])
    print("| rate point | " + " | ".join(clips) + " |\n|---|" + "---|" * len(clips))
    for v in points:
        print(f"| {v} | " + " | ".join(f"{low[v][c]:+.3f} -> {high[v][c]:+.3f}" for c in clips) + " |")
    print(f"switch: sequence CRF >= {switch:g}" if switch is not None else "no switch: the high-CRF weights are not ahead")
    if args.ship:
        path = WEIGHTS / "manifest.json"
        manifest = json.loads(path.read_text())
        if args.high not in manifest:
            raise SystemExit(f"no manifest entry {args.high}: ship the weights first (scripts/ship_weights.py --entry)")
        entry = manifest[args.low]
        if switch is None:
            entry.pop("high_crf", None)
        else:
            entry["high_crf"] = {"entry": args.high, "from_crf": switch,
                                 "chosen_on": {v: {c: [low[v][c], high[v][c]] for c in clips} for v in points}}
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"recorded in {path}")


if __name__ == "__main__":
    main()
