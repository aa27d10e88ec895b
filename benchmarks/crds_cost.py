"""CRDS's speed and memory: enhancing a 640x360 file on these cores.

Makes a 640x360 x264 clip (CRF 35; a panned texture, no data needed), then times, in one
run: DIS optical flow alone (both directions, per frame), the model alone streamed over
the decoded Y planes (:class:`codecave.models.crds.CRDSStream`: chunks with context,
flow included) in float32 and under bfloat16 autocast, and the whole file through
``enhance_video`` (decode, CRDS on Y, x264 encode) in frames per second, with the
process's peak resident memory after a short and after a three times longer file (flat
memory: the same peak). The issue's target for the small variant: at least 2 frames per
second at 640x360 on two cores.

    python benchmarks/crds_cost.py --threads 2 --weights runs/crds_small
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cavsr_cost import pan

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video
from codecave.enhance import EnhanceOptions, Enhancer, enhance_video
from codecave.models import create_model
from codecave.models.crds import CRDSStream, count, dis_flow


def peak_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x360", help="WxH")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=None, help="frames per model call (default: the model's)")
    ap.add_argument("--variant", default="small")
    ap.add_argument("--weights", default="none", help="a run folder or .safetensors (speed does not depend on it)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    model = create_model("crds", weights=args.weights, variant=args.variant)
    chunk = args.chunk or model.config.chunk
    print(f"CRDS {model.variant} ({count(model.variant) / 1e6:.2f} M parameters), {w}x{h}, "
          f"{torch.get_num_threads()} threads, chunk {chunk}, context {model.config.context} frames each side, "
          f"motion {model.config.motion}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        src, long_src = Path(tmp) / "in.mp4", Path(tmp) / "long.mp4"
        frames = pan(3 * args.frames, h, w)
        encode_frames(frames[: args.frames], src, EncodeSettings(codec="x264", crf=35, threads=1))
        encode_frames(frames, long_src, EncodeSettings(codec="x264", crf=35, threads=1))
        with open_video(src) as video:
            luma = np.stack([f.planes.y for f in video])
        print("| run | ms/frame | frames/s |")
        print("|---|---|---|")
        start = time.perf_counter()
        for step in (-1, 1):
            dis_flow(luma, step)
        ms = 1000 * (time.perf_counter() - start) / len(luma)
        print(f"| DIS flow alone (to t-1 and t+1) | {ms:.0f} | {1000 / ms:.2f} |")
        y = torch.from_numpy(luma.astype(np.float32) / 255)[:, None, None]  # (T, 1, 1, H, W)
        for precision in ("fp32", "bf16"):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                stream = CRDSStream(model, chunk=chunk, qp=torch.tensor([35.0]))  # the clips' CRF
                for t in range(chunk + model.config.context):  # warm-up
                    stream.push(y[t])
                stream = CRDSStream(model, chunk=chunk, qp=torch.tensor([35.0]))  # the clips' CRF
                start = time.perf_counter()
                for t in range(len(y)):
                    stream.push(y[t])
                stream.flush()
            ms = 1000 * (time.perf_counter() - start) / len(y)
            print(f"| model streamed (flow included), {precision} | {ms:.0f} | {1000 / ms:.2f} |")
        for precision in ("fp32", "bf16"):
            enhancer = Enhancer(model, EnhanceOptions(device="cpu", precision=precision))
            start = time.perf_counter()
            result = enhance_video(src, Path(tmp) / f"out_{precision}.mp4", model=enhancer, overwrite=True)
            seconds = time.perf_counter() - start
            print(f"| `enhance_video` file to file, {precision} | {1000 * seconds / result.frames:.0f} | "
                  f"{result.frames / seconds:.2f} |")
        short_peak = peak_mib()
        enhancer = Enhancer(model, EnhanceOptions(device="cpu"))
        result = enhance_video(long_src, Path(tmp) / "out_long.mp4", model=enhancer, overwrite=True)
        print(f"\npeak resident memory: {short_peak:.0f} MiB after the {args.frames}-frame files, "
              f"{peak_mib():.0f} MiB after a {result.frames}-frame file")


if __name__ == "__main__":
    main()
