"""The classical anchor: FFmpeg's ``spp`` post-filter on a prepared YUV dataset's bitstreams.

For every clip and rate point of a ``yuv420`` dataset (``codecave prepare``), the
stored file (x264, or x265 low-delay P) is decoded by the ``ffmpeg`` command through
``spp=quality=4:qp=Q`` for Q in 2, 4, 8, 12, 16 (without a forced Q the filter does
nothing on files that export no QP) and scored on the Y plane against the dataset's
ground-truth planes, like ``codecave evaluate``. Printed per rate point: the input
PSNR-Y, the gain of each Q and the best Q (mean over clips), optionally beside a
``codecave evaluate`` report (``scores.json``) of the same frames.

``--shrink SOURCE`` (repeatable) adds the default's shifted-DCT shrinkage stage alone
(:class:`codecave.layers.dct.ShiftedDCTShrinkage`: spp's method with thresholds set by each
frame's QP, the rate point's CRF where the file has none, rounded to 8 bits) as a column: ``init`` for its untrained start (1.0, 0.5),
``fixed:S:G`` for thresholds ``S x Qstep(QP)^G`` code values at every frequency, or a
weights file / run folder whose ``shrink.*`` tensors it loads (the learned thresholds). Every
picture is shrunk at its own QP: the default's I/P offset (``shrink_ip_qp_offset``) is not
applied here (``benchmarks/shrink_offset.py`` measures the stage with it).

Needs the ``ffmpeg`` command (Debian: ``apt-get install ffmpeg``).

Usage: python benchmarks/spp_anchor.py data/val_yuv [--crf 15,25,35 | --variants ldp22,ldp37] [--frames 6]
       [--clips temple,...] [--compare evaluation/scores.json] [--shrink init --shrink RUN] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.errors import CodecaveError
from codecave.grid import to_codes
from codecave.layers.dct import ShiftedDCTShrinkage
from codecave.metrics.quality import psnr_plane
from codecave.models import create_model

QS = (2, 4, 8, 12, 16)


def shrinkage(source: str) -> ShiftedDCTShrinkage:
    """The shrinkage stage at its start (``init``), with fixed thresholds ``fixed:S:G``
    (every ``s_k = S``, exponent ``G``), or with the ``shrink.*`` tensors of a weights file
    or run folder."""
    if source.startswith("fixed:"):
        try:
            scale, exponent = (float(v) for v in source.split(":")[1:])
        except ValueError:
            sys.exit(f"--shrink {source}: write fixed:S:G, e.g. fixed:1.0:0.5")
        return ShiftedDCTShrinkage(scale, exponent).eval()
    if source == "init":
        return ShiftedDCTShrinkage().eval()
    try:
        stage = getattr(create_model("pnp_vcve", weights=source), "shrink", None)
    except CodecaveError as err:
        sys.exit(f"--shrink {source}: {err}")
    if stage is None:
        sys.exit(f"--shrink {source}: not a model trained with dct_shrink")
    return stage.eval()


def spp_luma(video: Path, q: int, frames: int, height: int, width: int) -> np.ndarray:
    """Y planes ``(frames, H, W)`` of ``video`` decoded through spp at quantiser ``q``."""
    cmd = ["ffmpeg", "-loglevel", "error", "-i", str(video), "-vf", f"spp=quality=4:qp={q}",
           "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
    raw = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, dtype=np.uint8)
    size = height * width * 3 // 2
    return np.stack([raw[i * size : i * size + height * width].reshape(height, width) for i in range(frames)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a yuv420 dataset made by codecave prepare")
    ap.add_argument("--crf", default="15,25,35")
    ap.add_argument("--variants", default=None,
                    help="rate points by variant name instead of --crf, e.g. ldp22,ldp37,crf35")
    ap.add_argument("--frames", type=int, default=6, help="first N frames of each clip")
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default all)")
    ap.add_argument("--compare", type=Path, action="append", default=[],
                    help="scores.json of `codecave evaluate` on the same frames (repeatable)")
    ap.add_argument("--shrink", action="append", default=[],
                    help="score the shifted-DCT shrinkage stage alone: 'init', 'fixed:S:G' or a run / weights file "
                         "(repeatable)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    stages = {source: shrinkage(source) for source in args.shrink}
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found (apt-get install ffmpeg)")
    manifest = load_manifest(args.dataset)
    if manifest.get("domain") != "yuv420":
        sys.exit(f"{args.dataset}: not a yuv420 dataset")
    clips = args.clips.split(",") if args.clips else sorted(manifest["clips"])
    variants = args.variants.split(",") if args.variants else [f"crf{c}" for c in args.crf.split(",")]
    print(f"machine: {platform.machine()}, ffmpeg spp quality=4, PSNR on the Y plane, first {args.frames} frames")
    compare = [(path, json.loads(path.read_text())) for path in args.compare]
    for path, c in compare:  # and on the same clips: the column is the report's own mean
        for variant in variants:
            scored = {r["clip"] for r in c["clips"] if r["variant"] == variant}
            if scored and scored != set(clips):
                sys.exit(f"{path}: {variant} was scored on clips {sorted(scored)}, spp here on {sorted(clips)}: "
                         "pass --clips or score the model on the same clips")
    result: dict[str, dict[str, object]] = {}
    for variant in variants:
        gains: dict[int, list[float]] = {q: [] for q in QS}
        shrunk: dict[str, list[float]] = {source: [] for source in stages}
        inputs = []
        for name in clips:
            clip = load_clip(args.dataset, name, variant)
            n = min(args.frames, len(clip.gt))
            for path, c in compare:  # a gain beside spp's is only fair on the same frames
                scored = [len(r["frame_types"]) for r in c["clips"] if r["clip"] == name and r["variant"] == variant]
                if scored and scored[0] != n:
                    sys.exit(f"{path}: {name} {variant} was scored on {scored[0]} frames, spp here on {n}: "
                             f"pass --frames {scored[0]} (or score the model with --frames {n})")
            gt, dec = clip.luma_planes(n)
            p_in = float(psnr_plane(dec, gt).mean())
            inputs.append(p_in)
            video = args.dataset / "clips" / name / variant / clip.info["variants"][variant]["file"]
            for q in QS:
                out = torch.from_numpy(spp_luma(video, q, n, *gt.shape[-2:]).astype(np.float64))
                gains[q].append(float(psnr_plane(out, gt).mean()) - p_in)
            qp = torch.from_numpy(np.asarray(clip.priors["qp"][:n], dtype=np.float32))
            qp = torch.where(torch.isfinite(qp), qp, torch.tensor(variant_crf(clip.info, variant)))  # as the model
            for source, stage in stages.items():
                with torch.no_grad():
                    out = stage((dec / 255).float().unsqueeze(1), qp).squeeze(1).double()
                out = to_codes(out, 8)
                shrunk[source].append(float(psnr_plane(out, gt).mean()) - p_in)
        mean = {q: float(np.mean(g)) for q, g in gains.items()}
        best = max(mean, key=mean.get)  # type: ignore[arg-type]
        result[variant] = {"psnr_in": float(np.mean(inputs)), "gain_by_q": mean, "best_q": best,
                           "best_gain": mean[best], "per_clip_best": dict(zip(clips, gains[best])),
                           "shrink": {src: {"gain": float(np.mean(g)), "per_clip": dict(zip(clips, g))}
                                      for src, g in shrunk.items()}}
    header = "| rate point | PSNR-Y in | " + " | ".join(f"spp Q={q}" for q in QS) + " | best spp |"
    compare = [c for _, c in compare]
    header += "".join(f" shrinkage alone ({src}) |" for src in stages)
    header += "".join(f" {c['model'].get('name')} {c['model'].get('variant', '')} {c['model'].get('precision', '')} |"
                      for c in compare)
    print(header)
    print("|---" * (3 + len(QS) + len(stages) + len(compare)) + "|")
    for variant, r in result.items():
        row = f"| {variant} | {r['psnr_in']:.3f} | " + " | ".join(f"{r['gain_by_q'][q]:+.3f}" for q in QS)
        row += f" | {r['best_gain']:+.3f} (Q={r['best_q']}) |"
        row += "".join(f" {r['shrink'][src]['gain']:+.3f} |" for src in stages)
        for c in compare:
            m = c["mean"].get(variant)
            row += f" {m['delta_psnr']:+.3f} |" if m else " - |"
        print(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"clips": clips, "frames": args.frames, "spp": result}, indent=2))


if __name__ == "__main__":
    main()
