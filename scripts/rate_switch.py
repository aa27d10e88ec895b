"""Choose where the shipped default switches to its high-CRF weights, and record it.

The default (``pnp_vcve_fast``) is one set of weights for every rate point; a second set of
the same architecture, trained further on the high rate points
(``configs/pnp_vcve/fast_stage7_high.yaml``) and shipped with
``scripts/ship_weights.py RUN VAL --entry pnp_vcve_fast_high --no-pass-through``, gains more
there and less at low CRF. Both entries' validation (same clips and frames, pass-through
off) gives the switch point (:func:`codecave.evaluate.choose_rate_switch`); ``--ship``
writes it into the default's entry as ``high_crf``, which
:meth:`codecave.enhance.Enhancer.for_crf` follows per stream (sequence CRF).

    python scripts/rate_switch.py [--low pnp_vcve_fast] [--high pnp_vcve_fast_high] [--ship]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecave.evaluate import choose_rate_switch

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "codecave" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--low", default="pnp_vcve_fast", help="the main weights' manifest entry")
    ap.add_argument("--high", default="pnp_vcve_fast_high", help="the high-CRF weights' manifest entry")
    ap.add_argument("--ship", action="store_true", help="record the switch point in the main entry")
    args = ap.parse_args()
    path = WEIGHTS / "manifest.json"
    manifest = json.loads(path.read_text())
    try:
        low, high = (manifest[k]["validation"] for k in (args.low, args.high))
    except KeyError as exc:
        raise SystemExit(f"no validated manifest entry {exc}") from None
    for key in ("clips", "frames"):
        if low[key] != high[key]:
            raise SystemExit(f"{args.low} and {args.high} were validated on other {key}: validate both on the same")
    switch = choose_rate_switch(low["frame_qp"], high["frame_qp"])
    print(f"mean ΔPSNR-Y, 8-bit, pass-through off ({len(low['clips'])} clips, first {low['frames']['frame_qp']} frames)")
    print(f"| rate point | {args.low} | {args.high} |\n|---|---|---|")
    for v in sorted(set(low["frame_qp"]) & set(high["frame_qp"]), key=lambda v: float(v.removeprefix("crf"))):
        print(f"| {v} | {low['frame_qp'][v]['delta_psnr']:+.4f} | {high['frame_qp'][v]['delta_psnr']:+.4f} |")
    print(f"switch: sequence CRF >= {switch:g}" if switch is not None else "no switch: the high-CRF weights are not ahead")
    if args.ship:
        entry = manifest[args.low]
        if switch is None:
            entry.pop("high_crf", None)
        else:
            entry["high_crf"] = {"entry": args.high, "from_crf": switch,
                                 "chosen_on": {v: {args.low: low["frame_qp"][v]["delta_psnr"],
                                                   args.high: high["frame_qp"][v]["delta_psnr"]}
                                               for v in low["frame_qp"] if v in high["frame_qp"]}}
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"recorded in {path}")


if __name__ == "__main__":
    main()
