"""``codecave enhance IN OUT``: enhance a whole video file into a new one."""

from __future__ import annotations

import argparse

from codecave.errors import ConfigError

#: --codec choices -> encoder settings.
OUTPUT_CODECS = {
    "x264": {"codec": "x264"},
    "x264-lossless": {"codec": "x264", "crf": None, "qp": 0.0},
    "x265": {"codec": "x265"},
    "svtav1": {"codec": "svtav1"},
    "ffv1": {"codec": "ffv1", "crf": None},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="enhance a video file into a new file",
                       description="Enhance every frame of IN with a model that reads IN's codec priors, and "
                                   "write OUT with IN's timestamps, frame rate, colour metadata, rotation, audio "
                                   "and subtitles. OUT appears only when complete. Many videos: IN may be a "
                                   "folder, a list file (.txt, one path per line) or a quoted glob ('clips/**/*.mp4'); "
                                   "each video is enhanced into the same relative path under the folder OUT, which "
                                   "keeps a manifest (codecave-manifest.jsonl): a second run skips what is done, "
                                   "retries what failed and redoes what changed; one bad file does not stop the rest "
                                   "(exit status 1 if any failed). With --ray, IN and OUT must be on storage that "
                                   "every node of the cluster sees at the same paths.")
    p.add_argument("input", metavar="IN", help="video to enhance, or a folder, list file or glob of videos")
    p.add_argument("output", metavar="OUT", help="new video file (.mp4, .mkv, ...), or a folder for many videos")
    p.add_argument("--model", default="pnp_vcve", help="registered model (default pnp_vcve)")
    p.add_argument("--variant", default=None, help="model variant (default: the one saved with --weights, else the shipped default's)")
    p.add_argument("--weights", default="default",
                   help="'default' (shipped), a .safetensors file, a run folder, or none (untrained)")
    p.add_argument("--codec", default=None, choices=sorted(OUTPUT_CODECS),
                   help="output encoding at CRF 14 (default: x264, or the first of x265, svtav1, ffv1 that OUT's "
                        "container can carry, e.g. svtav1 for .webm; x265 for HDR10 input, which only x265 keeps); "
                        "x264-lossless and ffv1 are lossless")
    p.add_argument("--crf", type=float, default=None, help="output CRF for x264/x265 (default 14)")
    p.add_argument("--pix-fmt", default="source",
                   help="output pixel format (default: the input's own, e.g. yuv420p10le stays 10-bit)")
    p.add_argument("--preset", default="medium", help="x264/x265 preset (default medium)")
    p.add_argument("--frames", default=None, metavar="START:END", help="enhance only these frames (END exclusive)")
    p.add_argument("--input-crf", type=float, default=None,
                   help="sequence CRF of IN (default: read from IN's encoder settings or estimated from its QPs)")
    p.add_argument("--tile", type=int, default=0, help="process frames in tiles of this many pixels (multiple of 16)")
    p.add_argument("--tile-overlap", type=int, default=64, help="context around each tile in pixels (default 64)")
    p.add_argument("--chunk", type=int, default=None,
                   help="frames per model call (default: the model's, 4; CAVSR 16)")
    p.add_argument("--pass-through-qp", type=float, default=None, metavar="QP",
                   help="pass frames at or below this QP through unchanged (default: the model's own, measured "
                        "on validation and listed with its weights; a negative value turns it off)")
    p.add_argument("--one-weights", action="store_true",
                   help="the shipped default enhances high-CRF streams with its high-CRF weights (the switch point "
                        "is listed with them); this keeps its main weights for every stream")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the model (default: all cores); with many videos, per worker or Ray task "
                        "(default: the cores divided among --workers; 1 per Ray task)")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="run the model in fp32 or under bf16 autocast (default: the model's choice: "
                        "bf16 for PnP-VCVE fast, VIG, CAVSR and CRDS, fp32 otherwise)")
    p.add_argument("--on-damage", default="stop", choices=("stop", "keep", "skip"),
                   help="when IN is damaged (frames missing, undecodable or concealed, found by decoding it "
                        "all first): stop (default) writes nothing and names the lost frames; keep enhances every "
                        "frame that decodes; skip also leaves out concealed frames, keeping the others' timestamps")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    many = p.add_argument_group("many videos (IN a folder, list file or glob; OUT a folder)")
    many.add_argument("--workers", type=int, default=1,
                      help="files enhanced at once by worker processes on this machine (default 1)")
    many.add_argument("--ray", metavar="ADDRESS",
                      help="run each file as a Ray task: auto (the cluster this machine is in), an address "
                           "(ray://head:10001) or local (start Ray here); IN and OUT on shared storage; needs "
                           "pip install 'codecave[ray]'")
    many.add_argument("--gpus-per-task", type=float, default=0.0,
                      help="GPUs each Ray task requests (default 0; above 0 the model runs on CUDA)")
    many.add_argument("--suffix", default=None,
                      help="output extension for every file (default: each source's own where FFmpeg writes it, "
                           "else .mkv)")
    many.add_argument("--per-file", action="store_true",
                      help="print one line per file: done, failed, skipped or already done")
    many.add_argument("--redo", action="store_true",
                      help="enhance again files done before with the same source, model and settings")
    p.set_defaults(run=run)


def is_many(text: str) -> bool:
    """Whether IN names many videos: a folder, a list file, or a glob pattern that is not a file."""
    import glob
    from pathlib import Path

    from codecave.fleet import LIST_SUFFIXES

    path = Path(text)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in LIST_SUFFIXES) or (
        not path.exists() and glob.has_magic(text))


def parse_range(text: str | None) -> tuple[int, int | None] | None:
    """``"10:20"`` -> ``(10, 20)``, ``"10:"`` -> ``(10, None)``."""
    if not text:
        return None
    start, sep, end = text.partition(":")
    try:
        first = int(start) if start else 0
        last = int(end) if end else None
    except ValueError:
        raise ConfigError(f"--frames {text!r}: expected START:END with integers") from None
    if not sep or first < 0 or (last is not None and last <= first):
        raise ConfigError(f"--frames {text!r}: expected START:END with 0 <= START < END")
    return first, last


def run(args: argparse.Namespace) -> int:
    import torch

    from codecave.codec.encode import EncodeSettings
    from codecave.enhance import EnhanceOptions, Enhancer, enhance_video
    from codecave.models import create_model

    many = is_many(args.input)
    if not many and (args.workers != 1 or args.ray or args.gpus_per_task or args.suffix or args.per_file
                     or args.redo):
        raise ConfigError("--workers, --ray, --gpus-per-task, --suffix, --per-file and --redo are for many videos "
                          "(IN a folder, list file or glob)")
    if args.threads and not many:
        torch.set_num_threads(args.threads)
    codec = args.codec
    if many:
        return run_many(args)
    if codec is None:
        from codecave.codec.reader import check_input_file, read_info
        from codecave.codec.writer import choose_codec

        check_input_file(args.input)
        codec = choose_codec(args.output, None, read_info(args.input).hdr)
    fields = encode_fields(args, codec)
    frames = parse_range(args.frames)
    options = EnhanceOptions(chunk=args.chunk, tile=args.tile, tile_overlap=args.tile_overlap, device=args.device,
                             precision=args.precision, pass_through_qp=args.pass_through_qp,
                             high_crf=not args.one_weights)
    enhancer = Enhancer(create_model(args.model, weights=args.weights, variant=args.variant), options)
    result = enhance_video(args.input, args.output, model=enhancer, encode=EncodeSettings(**fields), frames=frames,
                           crf=args.input_crf, overwrite=args.overwrite, progress=not args.no_progress,
                           on_damage=args.on_damage)
    print(f"{result.output}: {result.frames} frames in {result.seconds:.1f} s ({result.fps:.2f} fps) with "
          f"{args.model} {result.variant}" + (f" ({result.weights} weights)" if result.weights else "")
          + f"; input CRF {result.crf:g} ({result.crf_source})")
    if result.passed_through:
        print(f"{result.passed_through} frame(s) at QP <= {result.pass_through_qp:g} passed through unchanged "
              "(the model was measured not to help there; --pass-through-qp -1 enhances them too)")
    for line in result.decode_problems:
        print(f"warning: {line}")
    if result.skipped:
        print(f"{result.skipped} damaged frame(s) left out (--on-damage skip)")
    return 0


def encode_fields(args: argparse.Namespace, codec: str | None) -> dict[str, object]:
    """EncodeSettings fields from --codec, --crf, --preset and --pix-fmt (``codec`` None: chosen
    per output file)."""
    from codecave.enhance import DEFAULT_OUTPUT

    fields: dict[str, object] = {**DEFAULT_OUTPUT, "preset": args.preset, "pix_fmt": args.pix_fmt,
                                 **(OUTPUT_CODECS[codec] if codec else {"codec": None})}
    if args.crf is not None:
        if fields.get("crf") is None:
            raise ConfigError(f"--crf does not apply to --codec {codec} (lossless)")
        fields["crf"] = args.crf
    if codec == "ffv1":
        fields["preset"] = None
    return fields


def run_many(args: argparse.Namespace) -> int:
    """IN a folder, list file or glob: :func:`codecave.fleet.enhance_folder`."""
    from codecave.enhance import EnhanceOptions
    from codecave.fleet import enhance_folder

    device = "cuda" if args.gpus_per_task > 0 and args.device == "auto" else args.device
    options = EnhanceOptions(chunk=args.chunk, tile=args.tile, tile_overlap=args.tile_overlap, device=device,
                             precision=args.precision, pass_through_qp=args.pass_through_qp,
                             high_crf=not args.one_weights)
    result = enhance_folder(args.input, args.output, model=args.model, weights=args.weights, variant=args.variant,
                            options=options, encode=encode_fields(args, args.codec), suffix=args.suffix,
                            frames=parse_range(args.frames), crf=args.input_crf, on_damage=args.on_damage,
                            overwrite=args.overwrite, redo=args.redo, workers=args.workers, threads=args.threads or None,
                            ray=args.ray, gpus=args.gpus_per_task, progress=not args.no_progress,
                            report=print if args.per_file else None)
    print(f"{result.out_dir}: {len(result.done)} enhanced ({result.frames} frames), {len(result.unchanged)} "
          f"already done, {len(result.skipped)} skipped, {len(result.failed)} failed, {result.seconds:.1f} s; "
          f"manifest {result.manifest}")
    for name, why in result.skipped.items():
        print(f"  skipped {name}: {why}")
    for name, error in result.failed.items():
        print(f"  failed {name}: {error}")
    return 1 if result.failed else 0
