"""How well a sequence CRF is estimated from frame QPs when a file carries no settings.

Over every clip and compressed rate point of a prepared dataset, measures the mean
frame QP minus the CRF per slice type (the offsets that
``codecave.codec.priors.CRF_QP_OFFSET`` holds) and the error of
``estimate_crf`` against the true CRF.

Usage: python benchmarks/crf_estimate.py data/pnp_train
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from codecave.codec.priors import FrameType, estimate_crf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    args = ap.parse_args()
    manifest = json.loads((args.dataset / "manifest.json").read_text())
    offsets: dict[int, list[float]] = defaultdict(list)
    errors: list[float] = []
    for name, clip in manifest["clips"].items():
        for variant, v in clip["variants"].items():
            crf = v.get("encoder_crf")
            if not crf:
                continue
            with np.load(args.dataset / "clips" / name / variant / "priors.npz") as z:
                qp, types = z["qp"], z["frame_type"]
            for t in FrameType:
                if (types == t).any():
                    offsets[int(t)].append(float(qp[types == t].mean()) - crf)
            errors.append(estimate_crf(qp.tolist(), types.tolist()) - crf)
    print("| slice type | mean QP - CRF | std | clips |")
    print("|---|---|---|---|")
    for t in FrameType:
        o = offsets[int(t)]
        print(f"| {t.name} | {np.mean(o):+.2f} | {np.std(o):.2f} | {len(o)} |")
    e = np.array(errors)
    print(f"estimate_crf error: mean {e.mean():+.2f}, mean absolute {np.abs(e).mean():.2f}, "
          f"max absolute {np.abs(e).max():.2f} over {e.size} clip rate points")


if __name__ == "__main__":
    main()
