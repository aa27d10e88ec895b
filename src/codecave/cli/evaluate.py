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
    p.add_argument("--model", default="pnp_vcve",
                   help="registered model name (default pnp_vcve; with --rd name the model to put around the "
                        "codec, e.g. neural_wrapper, or none for the plain codec alone)")
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
    p.add_argument("--one-weights", action="store_true",
                   help="keep the shipped default's main weights at every CRF (default: its high-CRF weights "
                        "take streams at or above their switch point, as `enhance` does)")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="run the model in fp32 or under bf16 autocast, as `enhance --precision` (default: the "
                        "model's choice)")
    rd = p.add_argument_group("rate-distortion (--rd)", "encode each clip's ground truth for real at 4+ rate points, "
                              "plain and with the model around the codec (a neural wrapper: pre + post; any other "
                              "model: post); bitrate against PSNR-Y, SSIM-Y, MS-SSIM-Y and VMAF (vmaf-torch), "
                              "BD-rates against the plain codec; writes rd.json, rd.md and rd.png")
    rd.add_argument("--rd", action="store_true", help="rate-distortion evaluation instead of enhancement scores")
    rd.add_argument("--codec", default="x264", choices=("x264", "x265", "svtav1"), help="encoder (default x264)")
    rd.add_argument("--points", default=None,
                    help="rate points (default: CRF 23,28,33,38 for x264/x265; 28,35,41,47 for svtav1, the same "
                         "share of its 0-63 range)")
    rd.add_argument("--rate-control", default="crf", choices=("crf", "qp"), help="what --points are (default crf)")
    rd.add_argument("--preset", default=None, help="encoder preset (default: medium; SVT-AV1 8)")
    p.set_defaults(run=run)


#: Default rate points of ``evaluate --rd`` per codec.
RD_POINTS = {"x264": "23,28,33,38", "x265": "23,28,33,38", "svtav1": "28,35,41,47"}


#: Enhancement-evaluation options that ``--rd`` does not take, with their defaults.
_NOT_RD = {"crf": None, "variants": None, "chunk": None, "precision": None, "pass_through_qp": None,
           "slice_type": False}


def run_rd(args: argparse.Namespace) -> int:
    from codecave.codec.encode import EncodeSettings
    from codecave.errors import ConfigError

    given = [f"--{k.replace('_', '-')}" for k, v in _NOT_RD.items() if getattr(args, k) != v]
    if given:
        raise ConfigError(f"{', '.join(given)}: not taken with --rd (rate points are --points, e.g. --points "
                          "23,28,33,38)")
    from codecave.models import create_model
    from codecave.rate_distortion import dataset_sources, rate_distortion, write_rd_report

    clips = dataset_sources(args.dataset, args.clips.split(",") if args.clips else None, args.frames)
    model = None if args.model == "none" else create_model(args.model, weights=args.weights, variant=args.variant)
    points = [float(v) for v in (args.points or RD_POINTS[args.codec]).split(",")]
    preset = args.preset or ("8" if args.codec == "svtav1" else "medium")
    # One encoder thread: with x264's automatic threading, identical pictures were measured to
    # encode to different sizes from run to run (up to 0.8 % here), which BD-rates would count.
    settings = EncodeSettings(codec=args.codec, preset=preset, threads=1)
    report = rate_distortion(clips, settings, points, args.rate_control,
                             model, args.device, progress=lambda m: print(f"encoding {m}", file=sys.stderr))
    paths = write_rd_report(report, args.out)
    print(report.to_markdown())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.rd:
        return run_rd(args)
    from codecave.enhance import EnhanceOptions, Enhancer
    from codecave.evaluate import evaluate, write_report
    from codecave.models import create_model

    model = create_model(args.model, weights=args.weights, variant=args.variant)
    enhancer = Enhancer(model, EnhanceOptions(chunk=args.chunk, device=args.device, slice_type=args.slice_type,
                                                pass_through_qp=args.pass_through_qp,
                                                precision=args.precision, high_crf=not args.one_weights))
    variants = [f"crf{v.strip()}" for v in args.crf.split(",")] if args.crf else None
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    clips = args.clips.split(",") if args.clips else None
    report = evaluate(enhancer, args.dataset, variants, clips, args.frames,
                      model_info={"name": args.model, "variant": getattr(model, "variant", args.variant),
                                  "weights": str(args.weights), "precision": enhancer.precision,
                                  **({"high_crf_weights": {k: enhancer.high_crf[k] for k in ("entry", "from_crf")}}
                                     if enhancer.high_crf else {})},
                      progress=lambda m: print(f"evaluating {m}", file=sys.stderr))
    paths = write_report(report, args.out)
    print(report.to_markdown())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0
