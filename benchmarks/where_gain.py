"""Where the gain is: the shipped default against FFmpeg's ``spp`` on the same frames, split
by what the picture holds there.

For each clip and rate point of a prepared ``yuv420`` dataset, the Y planes of the ground
truth, the decoded input, the default's output (as ``codecave evaluate`` runs it) and
``spp=quality=4:qp=Q`` at the given Q are cut into 8x8 blocks. Blocks are binned by the
ground truth's activity (the standard deviation of its Y inside the block, in 8-bit levels:
flat < 2, smooth 2-6, texture 6-16, strong >= 16: sharp edges or strong texture) and,
separately, each pixel by its place in the codec's 8x8 grid (on a block edge: column or row
0 or 7 of its block; inside). Per bin:
the share of pixels, the input's mean squared error, and each filter's *contribution* to the
frame's PSNR gain: ``10 log10(MSE_in / (MSE_in - ΔMSE_bin))`` with ``ΔMSE_bin`` that bin's
reduction of the whole frame's squared error (the contributions of the bins add up to about
the whole gain when gains are small). The same by frame type (I, P, B: the whole frame and
the strong bin). So it says in which kind of picture ``spp`` finds the gain the model misses.
8-bit clips only (``spp`` is read back as 8-bit; the bins are in 8-bit levels).

Needs the ``ffmpeg`` command (Debian: ``apt-get install ffmpeg``).

    python benchmarks/where_gain.py data/val_yuv6 --clips temple --crf 25,35 --q 4,8 --frames 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from spp_anchor import spp_luma

from codecave.data.prepare import load_clip, load_manifest
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import enhance_prepared
from codecave.grid import luma
from codecave.models import create_model

ACTIVITY = ((0.0, 2.0, "flat"), (2.0, 6.0, "smooth"), (6.0, 16.0, "texture"), (16.0, float("inf"), "strong"))


def y_plane(packed: np.ndarray) -> np.ndarray:
    """The Y planes ``(T, H, W)`` (float64, code values) of packed frames ``(T, 24, H/4, W/4)``."""
    return luma(torch.from_numpy(np.asarray(packed).astype(np.float64))).numpy()


def block_std(y: np.ndarray) -> np.ndarray:
    """Per-pixel standard deviation of the 8x8 block each pixel lies in; ``y`` is ``(T, H, W)``."""
    t, h, w = y.shape
    b = y[:, : h // 8 * 8, : w // 8 * 8].reshape(t, h // 8, 8, w // 8, 8)
    std = b.std(axis=(2, 4))
    return np.repeat(np.repeat(std, 8, axis=1), 8, axis=2)


def edge_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """True where a pixel sits on the edge of its 8x8 block (row or column 0 or 7)."""
    _, h, w = shape
    rows, cols = np.arange(h // 8 * 8) % 8, np.arange(w // 8 * 8) % 8
    edge = np.isin(rows, (0, 7))[:, None] | np.isin(cols, (0, 7))[None, :]
    return np.broadcast_to(edge, (shape[0], h // 8 * 8, w // 8 * 8))


def contributions(gt: np.ndarray, inp: np.ndarray, out: np.ndarray, masks: dict[str, np.ndarray],
                  types: str) -> dict[str, dict[str, object]]:
    """Per bin: pixel share, input MSE inside the bin, and the output's contribution (dB) to
    the whole frame's PSNR gain (``10 log10(mse_in / (mse_in - dmse_bin))``): the mean over
    frames and the mean over the frames of each type in ``types`` (one letter per frame)."""
    e_in, e_out = (inp - gt) ** 2, (out - gt) ** 2
    frame_in = e_in.reshape(len(gt), -1).mean(axis=1)

    def row(share: float, mse_in: float, per_frame: np.ndarray) -> dict[str, object]:
        by_type = {t: float(per_frame[[c == t for c in types]].mean()) for t in sorted(set(types))}
        return {"share": share, "mse_in": mse_in, "gain_db": float(per_frame.mean()), "by_type": by_type}

    rows = {}
    for name, m in masks.items():
        d = ((e_in - e_out) * m).reshape(len(gt), -1).sum(axis=1) / e_in[0].size
        rows[name] = row(float(m.mean()), float(e_in[m].mean()) if m.any() else float("nan"),
                         10 * np.log10(frame_in / (frame_in - d)))
    rows["all"] = row(1.0, float(frame_in.mean()), 10 * np.log10(frame_in / e_out.reshape(len(gt), -1).mean(axis=1)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--clips", default="temple")
    ap.add_argument("--crf", default="25")
    ap.add_argument("--q", default="4", help="spp's Q per rate point, comma-separated like --crf (one for all)")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found (apt-get install ffmpeg)")
    if load_manifest(args.dataset).get("domain") != "yuv420":
        sys.exit(f"{args.dataset}: not a yuv420 dataset")
    crfs, qs = args.crf.split(","), args.q.split(",")
    qs = qs * len(crfs) if len(qs) == 1 else qs
    if len(qs) != len(crfs):
        ap.error(f"--q gives {len(qs)} values for {len(crfs)} rate points; give one, or one per --crf")
    enhancer = Enhancer(create_model("pnp_vcve"), EnhanceOptions(device="cpu"))
    result = {}
    for crf, q in zip(crfs, qs):
        for name in args.clips.split(","):
            clip = load_clip(args.dataset, name, f"crf{crf}")
            if clip.bit_depth != 8:
                sys.exit(f"{name}: {clip.bit_depth}-bit; where_gain reads spp and bins in 8-bit levels")
            n = min(args.frames, len(clip.gt))
            types = "".join("IPB"[int(t)] for t in clip.priors["frame_type"][:n])
            gt, dec, model = (y_plane(a) for a in (clip.gt[:n], clip.decoded[:n], enhance_prepared(enhancer, clip, n)))
            video = args.dataset / "clips" / name / f"crf{crf}" / clip.info["variants"][f"crf{crf}"]["file"]
            spp = spp_luma(video, int(q), n, *gt.shape[-2:]).astype(np.float64)
            h, w = gt.shape[1] // 8 * 8, gt.shape[2] // 8 * 8
            gt, dec, model, spp = (a[:, :h, :w] for a in (gt, dec, model, spp))
            std = block_std(gt)
            masks = {label: (std >= lo) & (std < hi) for lo, hi, label in ACTIVITY}
            edge = edge_mask(gt.shape)
            masks |= {"on 8x8 edge": edge, "inside": ~edge}
            rows = {"model": contributions(gt, dec, model, masks, types),
                    "spp": contributions(gt, dec, spp, masks, types)}
            result[f"{name}/crf{crf}"] = {"spp_q": int(q), "frame_types": types, **rows}
            print(f"\n{name}, CRF {crf}, first {n} frames ({types}), spp Q={q}")
            print("| bin | pixels | MSE in | default: gain from the bin (dB) | spp | spp - default |")
            print("|---|---|---|---|---|---|")
            for b in rows["model"]:
                m, s = rows["model"][b], rows["spp"][b]
                print(f"| {b} | {m['share']:.1%} | {m['mse_in']:.2f} | {m['gain_db']:+.3f} | {s['gain_db']:+.3f} | "
                      f"{s['gain_db'] - m['gain_db']:+.3f} |")
            print("| frame type | frames | default: all | spp: all | default: strong | spp: strong |")
            print("|---|---|---|---|---|---|")
            m, s = rows["model"], rows["spp"]
            for t in sorted(set(types), key="IPB".index):
                print(f"| {t} | {types.count(t)} | {m['all']['by_type'][t]:+.3f} | {s['all']['by_type'][t]:+.3f} | "
                      f"{m['strong']['by_type'][t]:+.3f} | {s['strong']['by_type'][t]:+.3f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
