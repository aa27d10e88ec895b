"""``codecave probe VIDEO``: stream facts, encoder settings, per-frame priors table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecave.probe import probe_video


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("probe", help="show a video's codec priors",
                       description="Show stream facts, encoder settings and per-frame codec priors.")
    p.add_argument("video", help="any video file FFmpeg can read")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--viz", metavar="DIR", help="write PNGs of vectors, partitions and QP to DIR")
    p.add_argument("--viz-frames", default="0:8", metavar="START:END",
                   help="frames drawn with --viz (default 0:8)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="read only the first N frames")
    p.set_defaults(run=run)


def _range(text: str) -> range:
    start, _, end = text.partition(":")
    return range(int(start or 0), int(end) if end else 1 << 62)


def run(args: argparse.Namespace) -> int:
    """Probe and print."""
    result = probe_video(args.video, max_frames=args.frames, viz_dir=args.viz,
                         viz_frames=_range(args.viz_frames))
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(result.to_text())
    if args.viz:
        print(f"\nwrote {len(result.figures)} pictures to {Path(args.viz)}")
    return 0 if result.report_ok else 1


