"""CRDS claim 4 (evaluation only): how close MuNA's motion comes to the codec's own vectors.

The paper shows (Fig. 5, qualitative) that the motion its attention finds looks like
x264's. Here, on x264-encoded validation clips (vectors read from the bitstream), the
end-point error against the codec's ``mv_past`` on the 4x4 blocks that carry a real
vector (``mv_valid``; frames after the first), for: zero motion, DIS flow alone (what
MuNA starts from, averaged to the 4x4 grid), and MuNA's refined motion ``OF +
sum_j softmax_j(A_ij) delta_j`` (paper eq. 20) in each of the four denoising blocks.

    python benchmarks/crds_motion.py data/vig_val --weights runs/crds_small --variant crf35 --frames 8
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from codecave.codec.rasterize import grid_priors
from codecave.data.prepare import load_clip, load_manifest
from codecave.grid import luma
from codecave.models import create_model


@torch.inference_mode()
def refined_motion(model: torch.nn.Module, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """DIS motion to ``t-1`` and MuNA's refined motion in each block, ``(T, 2, h, w)`` latent units."""
    motion = model.motion(y)
    z = model.encode(y)
    refined = []
    for block in model.blocks:
        x_bar, moved = block.predict(z, motion, return_motion=True)
        refined.append(moved[-1][0])
        z = x_bar + block.rpn(z - x_bar, motion)
    return motion[-1][0], refined


def errors(field: torch.Tensor, codec: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    """Mean end-point error in pixels and the share of blocks within one pixel, on ``valid`` blocks."""
    epe = (4 * (field - codec)).norm(dim=1)[valid]
    return float(epe.mean()), float((epe <= 1).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--variant", default="crf35", help="an x264 rate point (HEVC exports no vectors)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model("crds", weights=args.weights)
    if not model.config.muna:
        raise SystemExit(f"{args.weights}: a model without MuNA (the warping ablation) has no attention motion")
    names = ["zero", "DIS", *(f"MuNA block {4 - i}" for i in range(len(model.blocks)))]
    totals = {n: [] for n in names}
    for clip_name in load_manifest(args.dataset)["clips"]:
        clip = load_clip(args.dataset, clip_name, args.variant)
        if clip.info["variants"][args.variant].get("prior_source") != "bitstream":
            raise SystemExit(f"{clip_name} {args.variant}: no vectors in the bitstream; choose an x264 rate point")
        n = min(args.frames, len(clip.decoded))
        y = luma(torch.from_numpy(np.array(clip.decoded[:n])).float() / 255)[None, :, None]
        priors = grid_priors({k: v[:n] for k, v in clip.priors.items()})
        codec, valid = priors["mv_past"][1:], priors["mv_valid"][1:, 0]
        if not valid.any():
            continue
        dis, refined = refined_motion(model, y)
        for name, field in zip(names, [torch.zeros_like(codec), dis[1:], *(r[1:] for r in refined)]):
            totals[name].append((*errors(field.float(), codec, valid), int(valid.sum())))
    print(f"CRDS motion against x264's mv_past on {args.dataset} {args.variant}, first {args.frames} frames, "
          f"weights {args.weights}")
    print("| motion | end-point error (px) | blocks within 1 px |")
    print("|---|---|---|")
    table = {}
    for name, rows in totals.items():
        weights = np.array([r[2] for r in rows], dtype=float)
        epe = float(np.average([r[0] for r in rows], weights=weights))
        within = float(np.average([r[1] for r in rows], weights=weights))
        table[name] = {"epe_px": epe, "within_1px": within, "blocks": int(weights.sum())}
        print(f"| {name} | {epe:.2f} | {100 * within:.1f}% |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
