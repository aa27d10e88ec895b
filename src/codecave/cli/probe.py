"""``codecave probe VIDEO``: stream facts, encoder settings, per-frame priors table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecave.errors import ConfigError
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
    p.add_argument("--frames", type=positive_int, default=None, metavar="N", help="read only the first N frames")
    p.set_defaults(run=run)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _range(text: str) -> range:
    """``"START:END"`` (either may be left out) -> a range of frame indices."""
    start, sep, end = text.partition(":")
    try:
        first, last = int(start or 0), (int(end) if end else 1 << 62)
    except ValueError:
        raise ConfigError(f"--viz-frames {text!r}: expected START:END with whole numbers, e.g. 0:8") from None
    if not sep or first < 0 or last <= first:
        raise ConfigError(f"--viz-frames {text!r}: expected START:END with 0 <= START < END, e.g. 0:8")
    return range(first, last)


def run(args: argparse.Namespace) -> int:
    """Probe and print."""
    viz_frames = _range(args.viz_frames)
    result = probe_video(args.video, max_frames=args.frames, viz_dir=args.viz, viz_frames=viz_frames)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(result.to_text())
    if args.viz:
        print(f"\nwrote {len(result.figures)} pictures to {Path(args.viz)}")
    return 0 if result.report_ok else 1


