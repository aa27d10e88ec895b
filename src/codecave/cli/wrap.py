"""``codecave wrap encode IN OUT``: pre-process with a neural wrapper, then encode."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("wrap", help="encode through a neural wrapper's pre-processor",
                       description="Neural wrapping (CVPR 2025): a pre-processor before a standard encoder and a "
                                   "post-processor after its decoder. `wrap encode` writes a standard file any "
                                   "player reads; restore it with `codecave enhance OUT RESTORED --model "
                                   "neural_wrapper`.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    enc = actions.add_parser("encode", help="pre-process a video and encode it",
                             description="Pre-process IN frame by frame and encode it with a standard encoder.")
    enc.add_argument("input", help="video file, folder of frames, or raw .yuv (8-bit; RGB sources are converted "
                                   "once to BT.601 4:2:0)")
    enc.add_argument("output", help="file to write (.mp4, .mkv, .264, .ivf...)")
    enc.add_argument("--codec", default="x264", choices=("x264", "x265", "svtav1"), help="encoder (default x264)")
    rate = enc.add_mutually_exclusive_group()
    rate.add_argument("--crf", type=float, default=None, help="constant rate factor (default 28; svtav1 35)")
    rate.add_argument("--qp", type=float, default=None, help="constant quantiser instead of CRF")
    enc.add_argument("--preset", default=None, help="encoder preset (default: medium; SVT-AV1 8)")
    enc.add_argument("--weights", default="default",
                     help="'default' (shipped), a .safetensors file or a training run folder")
    enc.add_argument("--variant", default=None, help="wrapper variant (default: saved with the weights, else small)")
    enc.add_argument("--frames", type=int, default=None, help="encode only the first N frames")
    enc.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    enc.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    enc.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codecave.codec.encode import EncodeSettings
    from codecave.models import create_model
    from codecave.wrap import wrap_encode

    model = create_model("neural_wrapper", weights=args.weights, variant=args.variant)
    crf = args.crf if args.crf is not None or args.qp is not None else (35.0 if args.codec == "svtav1" else 28.0)
    settings = EncodeSettings(codec=args.codec, crf=crf, qp=args.qp,
                              preset=args.preset or ("8" if args.codec == "svtav1" else "medium"))
    result = wrap_encode(args.input, args.output, model, settings, max_frames=args.frames, overwrite=args.overwrite,
                         device=args.device, progress=not args.no_progress)
    print(f"wrote {result.path}: {result.frames} frames, {result.width}x{result.height}, {result.bytes} bytes "
          f"({settings.encoder}, {'qp ' + format(args.qp, 'g') if args.qp is not None else 'crf ' + format(crf, 'g')})")
    print(f"restore it with: codecave enhance {result.path} RESTORED.mp4 --model neural_wrapper"
          + (f" --weights {args.weights}" if args.weights != "default" else ""))
    return 0
