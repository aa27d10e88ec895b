"""Many videos: files per minute for ``codecave enhance IN_DIR OUT_DIR`` with 1 and 2 local
workers and with Ray on this machine, and the overhead per file that Ray adds.

A folder of short 640x360 clips (x264 CRF 30, a camera panning over a texture) is made
once; each arm enhances all of it into a fresh folder with the shipped default model and
the default output (x264 CRF 14), all arms in one run on an otherwise idle machine. Arms:

- ``workers 1``: one process, all cores for the model and the encoder;
- ``workers 2``: two worker processes, the cores divided between them;
- ``ray``: Ray started here (``num_cpus`` = the cores), one task per file, one CPU each.

Ray's overhead per file is the wall-time difference to ``workers 2`` (same parallelism and
threads) divided by the files; a second measure times no-op tasks (scheduling only),
against the local pool's.

    python benchmarks/fleet_throughput.py --files 8 --frames 24
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clips(folder: Path, files: int, frames: int, height: int = 360, width: int = 640) -> None:
    from codecave.codec.encode import EncodeSettings, encode_frames

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        rng = np.random.default_rng(index)
        coarse = rng.random((height // 8 + frames, width // 8 + frames, 3))
        big = np.kron(coarse, np.ones((8, 8, 1)))
        big = (255 * (0.8 * big + 0.2 * rng.random(big.shape))).astype(np.uint8)
        clip = [np.ascontiguousarray(big[t : t + height, 2 * t : 2 * t + width]) for t in range(frames)]
        encode_frames(clip, folder / f"clip{index:02d}.mp4", EncodeSettings(codec="x264", crf=30, threads=1))


def _noop(x: int) -> int:
    return x


def scheduling_overhead(jobs: int, ray: str | None, workers: int) -> float:
    """Seconds per no-op job through :func:`codecave.fleet.run_jobs` (pool or Ray already warm)."""
    from codecave.fleet import run_jobs

    list(run_jobs(_noop, [("warm", (0,))], workers=workers, ray=ray))
    start = time.perf_counter()
    list(run_jobs(_noop, [(str(i), (i,)) for i in range(jobs)], workers=workers, ray=ray))
    return (time.perf_counter() - start) / jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import ray

    from codecave.fleet import available_cores, enhance_folder

    cores = available_cores()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        make_clips(clips, args.files, args.frames)
        arms = [("workers 1", {"workers": 1}), ("workers 2", {"workers": 2}), ("ray", {"ray": "auto", "threads": 1})]
        ray_start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - ray_start
        try:
            for name, kwargs in arms:
                out = Path(tmp) / name.replace(" ", "_")
                start = time.perf_counter()
                result = enhance_folder(clips, out, **kwargs)
                seconds = time.perf_counter() - start
                assert not result.failed, result.failed
                rows.append({"arm": name, "files": len(result.done), "frames": result.frames,
                             "seconds": round(seconds, 2), "files_per_minute": round(60 * len(result.done) / seconds, 2),
                             "frames_per_second": round(result.frames / seconds, 2)})
                shutil.rmtree(out)
            ray_noop = scheduling_overhead(200, "auto", 1)
        finally:
            ray.shutdown()
        pool_noop = scheduling_overhead(200, None, 2)
    by = {r["arm"]: r for r in rows}
    per_file = (by["ray"]["seconds"] - by["workers 2"]["seconds"]) / args.files
    print(f"{args.files} clips of {args.frames} frames, 640x360, x264 CRF 30 in; shipped default model, x264 CRF 14 out; "
          f"{cores} cores ({platform.processor() or platform.machine()})")
    print("| arm | files | frames | seconds | files/min | frames/s | vs workers 1 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['files']} | {r['frames']} | {r['seconds']:.1f} | {r['files_per_minute']:.1f} | "
              f"{r['frames_per_second']:.1f} | {by['workers 1']['seconds'] / r['seconds']:.2f}x |")
    print(f"Ray overhead per file against workers 2: {per_file:+.2f} s (the workers 2 arm includes starting its "
          f"processes; starting Ray here took {ray_start:.1f} s once, not in the table); no-op task: "
          f"Ray {1000 * ray_noop:.1f} ms, local pool {1000 * pool_noop:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ray_overhead_per_file_s": per_file, "ray_init_s": ray_start,
                                         "noop_ms": {"ray": 1000 * ray_noop, "pool": 1000 * pool_noop}}, indent=1))


if __name__ == "__main__":
    main()
