"""``codecave prepare SOURCES... --out DIR``: encode ground truth, cache frames and priors."""

from __future__ import annotations

import argparse

from codecave.data.prepare import PrepareSettings, held_out_names, prepare_dataset


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("prepare", help="make a compressed dataset with a real encoder",
                       description="Encode ground-truth clips at each rate point, decode them back "
                       "and cache frames plus compact codec priors. Resumable.")
    p.add_argument("sources", nargs="+", help="videos, y4m, raw yuv, PNG-frame folders, photos, or folders of them")
    p.add_argument("--out", required=True, help="dataset folder")
    p.add_argument("--codec", default="x264", help="x264 (default), x265, svtav1, mpeg2, mpeg4")
    p.add_argument("--crf", type=_floats, metavar="LIST",
                   help="CRF rate points, comma-separated (default 15,25,35 unless --qp or --ldp-qp "
                        "is given; 0 = lossless x264)")
    p.add_argument("--qp", type=_floats, default=(), metavar="LIST", help="fixed-QP rate points")
    p.add_argument("--ldp-qp", type=_floats, default=(), metavar="LIST",
                   help="HEVC low-delay P base QPs (x265 with HM's QP cascade, as VIG and CRDS were "
                        "trained), e.g. 22,27,32,37; variants ldp22...")
    p.add_argument("--preset", default="medium")
    p.add_argument("--bframes", type=int)
    p.add_argument("--keyint", type=int)
    p.add_argument("--ref", type=int)
    p.add_argument("--tune")
    p.add_argument("--frames", type=int, default=32, help="frames taken per source (default 32)")
    p.add_argument("--scale", type=int, default=1, choices=(1, 2, 4),
                   help="4: blur (sigma 1.5) and downscale 4x before encoding, for super-resolution")
    p.add_argument("--stills", action="store_true",
                   help="images inside folders are photos to animate by camera motion, not frames")
    p.add_argument("--still-frames", type=int, default=7, help="clip length made from each photo")
    p.add_argument("--still-size", type=_size, default=(448, 256), metavar="WxH",
                   help="clip size made from photos (default 448x256)")
    p.add_argument("--yuv-size", type=_size, metavar="WxH", help="size of raw .yuv sources")
    p.add_argument("--yuv-format", default="yuv420p", help="pixel format of raw .yuv sources")
    p.add_argument("--domain", choices=("yuv420", "rgb"),
                   help="what the dataset stores: yuv420 (4:2:0 planes, the default) or rgb "
                        "(for RGB models; the default with --scale)")
    p.add_argument("--exclude-split", metavar="FILE",
                   help="leave out the clips a validation split lists (configs/validation_split.yaml)")
    p.add_argument("--workers", type=int, default=2, help="clips prepared in parallel processes (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="encoder threads per worker or Ray task (default: the cores divided among --workers; "
                        "1 per Ray task)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="prepare each clip as a Ray task: auto (the cluster this machine is in), an address "
                        "(ray://head:10001) or local; the sources and --out must be on storage that every node "
                        "sees at the same paths; needs pip install 'codecave[ray]'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Parse settings, prepare, summarise."""
    crfs = args.crf if args.crf is not None else () if args.qp or args.ldp_qp else (15.0, 25.0, 35.0)
    settings = PrepareSettings(
        codec=args.codec, crfs=crfs, qps=args.qp, ldp_qps=tuple(int(q) for q in args.ldp_qp),
        preset=args.preset, bframes=args.bframes,
        keyint=args.keyint, ref=args.ref, tune=args.tune, max_frames=args.frames, scale=args.scale,
        still_frames=args.still_frames, still_size=(args.still_size[1], args.still_size[0]),
        yuv_size=args.yuv_size, yuv_format=args.yuv_format,
        domain=args.domain or ("yuv420" if args.scale == 1 else "rgb"),
    )
    exclude = held_out_names(args.exclude_split) if args.exclude_split else ()
    bar = None

    def progress(done: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None and not args.no_progress:  # made at the first clip, so errors come first
            from tqdm import tqdm

            bar = tqdm(unit="clip", desc="prepare", total=total)
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(name)
            bar.refresh()

    try:
        result = prepare_dataset(args.sources, args.out, settings, workers=args.workers,
                                 stills=args.stills, progress=progress, exclude=exclude, ray=args.ray, threads=args.threads)
    finally:
        if bar is not None:
            bar.close()
    extended = f" ({len(result.extended)} of them given the new rate points)" if result.extended else ""
    print(f"{result.root}: {len(result.prepared)} clip(s) prepared{extended}, {len(result.skipped)} already there, "
          f"{len(result.failed)} failed, {result.seconds:.1f} s")
    for name, error in result.failed.items():
        print(f"  failed {name}: {error}")
    return 1 if result.failed else 0
