"""``codecave demo``: compress a built-in clip, enhance it, show before and after."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="enhance a built-in compressed clip and show the gain",
                       description="Make a clip from a photo shipped with matplotlib (synthetic camera motion), "
                                   "compress it with x264, enhance it with the default model and print PSNR/SSIM "
                                   "before and after. Writes the videos and a side-by-side PNG.")
    p.add_argument("--out", default="codecave-demo", help="output folder (default ./codecave-demo)")
    p.add_argument("--crf", type=float, default=35.0, help="x264 CRF of the compressed clip (default 35)")
    p.add_argument("--frames", type=int, default=16, help="clip length (default 16)")
    p.add_argument("--photo", default=None, help="animate this photo instead of the built-in one")
    p.add_argument("--model", default="pnp_vcve", help="registered model (default pnp_vcve)")
    p.add_argument("--weights", default="default",
                   help="'default' (shipped), a .safetensors file, a run folder, or none (untrained)")
    p.add_argument("--variant", default=None, help="model variant (default: the shipped default's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codecave.demo import run_demo
    from codecave.enhance import Enhancer
    from codecave.models import create_model

    enhancer = Enhancer(create_model(args.model, weights=args.weights, variant=args.variant))
    result = run_demo(args.out, crf=args.crf, frames=args.frames, photo=args.photo, model=enhancer,
                      progress=not args.no_progress)
    print(result.table())
    for role, path in result.files.items():
        print(f"{role}: {path}")
    return 0
