"""``codecave evaluate DATASET``: PSNR/SSIM-Y of a model's input and output."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model on a prepared dataset (PSNR/SSIM-Y)",
                       description="Enhance every clip of a prepared dataset at the given rate points and score "
                                   "input and output against the ground truth. Writes scores.json, scores.md "
                                   "and psnr_per_frame.png.")
    p.add_argument("dataset", help="folder made by `codecave prepare` (e.g. with --crf 15,25,35,18,28,38)")
    p.add_argument("--model", default="pnp_vcve", help="registered model name (default pnp_vcve)")
    p.add_argument("--variant", default=None,
                   help="model variant (default: the one saved with --weights, else the shipped default's)")
    p.add_argument("--weights", default="default",
                   help="'default' (shipped), a .safetensors file or a training run folder")
    p.add_argument("--crf", default=None, help="rate points to score, e.g. 15,25,35 (default: all in the dataset)")
    p.add_argument("--variants", default=None,
                   help="rate points by variant name instead, e.g. ldp22,ldp37,crf35 (prepare --ldp-qp)")
    p.add_argument("--clips", default=None, help="comma-separated clip names (default: all)")
    p.add_argument("--frames", type=int, default=None, help="score only the first N frames of each clip")
    p.add_argument("--slice-type", action="store_true", help="hide frame QPs: condition on slice types only")
    p.add_argument("--out", default="evaluation", help="output folder (default ./evaluation)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--chunk", type=int, default=None,
                   help="frames per model call (default: the model's, 4; CAVSR 16)")
    p.add_argument("--pass-through-qp", type=float, default=None, metavar="QP",
                   help="pass frames at or below this QP through (default: the model's own; negative: off)")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="run the model in fp32 or under bf16 autocast, as `enhance --precision` (default: the "
                        "model's choice)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codecave.enhance import EnhanceOptions, Enhancer
    from codecave.evaluate import evaluate, write_report
    from codecave.models import create_model

    model = create_model(args.model, weights=args.weights, variant=args.variant)
    enhancer = Enhancer(model, EnhanceOptions(chunk=args.chunk, device=args.device, slice_type=args.slice_type,
                                                pass_through_qp=args.pass_through_qp,
                                                precision=args.precision))
    variants = [f"crf{v.strip()}" for v in args.crf.split(",")] if args.crf else None
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    clips = args.clips.split(",") if args.clips else None
    report = evaluate(enhancer, args.dataset, variants, clips, args.frames,
                      model_info={"name": args.model, "variant": getattr(model, "variant", args.variant),
                                  "weights": str(args.weights), "precision": enhancer.precision},
                      progress=lambda m: print(f"evaluating {m}", file=sys.stderr))
    paths = write_report(report, args.out)
    print(report.to_markdown())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0
