"""Training throughput: samples/s and pixel positions/s of one training step, split into
data, forward, backward and optimiser.

For each registered PnP-VCVE variant and each setting (``fp32``, ``bf16`` autocast,
``compile``; the ``fast`` variant runs its convolutions channels_last itself) and each
``batch x crop``, a few warm-up steps are run and then
``--steps`` timed steps of :func:`codecave.engine.trainer.train_step`, the function the
trainer runs. Data comes from where training takes it:

* ``loader``: the prepared dataset through :class:`~codecave.data.dataset.PreparedWindows`
  (per-sample crops of memory-mapped arrays, priors put on the grid, flips), as
  ``codecave train`` reads it with ``data.workers`` 0;
* ``pack``: a pack (``scripts/gpu_train.py pack``) with whole batches drawn by indexing;
* ``synthetic``: random tensors (no data cost), for variants without a matching dataset.

Pixel positions/s counts output pixels: ``batch x frames x crop^2`` per step.

Usage:
    python benchmarks/train_throughput.py --yuv-data /work/runs/data/train_yuv --pack gpu_pack/pack.npz \\
        [--variants small,fast] [--settings fp32,bf16,compile] [--shapes 16x64,4x128] [--steps 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import time
from collections import defaultdict
from collections.abc import Iterator

import torch

from codecave.engine.config import DataSection, TrainSection
from codecave.engine.trainer import train_step
from codecave.models import create_model
from codecave.models.registry import model_domain


def synthetic(domain: str, batch: int, frames: int, crop: int) -> Iterator[dict[str, torch.Tensor]]:
    """Random batches in a model's layout (no data cost)."""
    g = torch.Generator().manual_seed(0)
    h = crop // 4 if domain == "yuv420" else crop
    c = 24 if domain == "yuv420" else 3
    part = torch.randint(0, 4, (batch, frames, h, h), generator=g)
    sample = {
        "frames": torch.rand(batch, frames, c, h, h, generator=g), "gt": torch.rand(batch, frames, c, h, h, generator=g),
        "crf": torch.full((batch,), 30.0), "qp": torch.full((batch, frames), 32.0),
        "frame_type": torch.ones(batch, frames, dtype=torch.long),
        "mv_past": torch.randn(batch, frames, 2, h, h, generator=g), "mv_future": torch.randn(batch, frames, 2, h, h, generator=g),
        "mv_valid": torch.ones(batch, frames, 2, h, h, dtype=torch.bool),
        "partition": torch.nn.functional.one_hot(part, 4).permute(0, 1, 4, 2, 3).float(),
    }
    while True:
        yield sample


def loader(root: str, batch: int, frames: int, crop: int) -> Iterator[dict[str, torch.Tensor]]:
    from torch.utils.data import DataLoader

    from codecave.data.dataset import PreparedWindows

    spec = dataclasses.replace(DataSection(root=root, frames=frames, crop=crop), compressed=("crf15", "crf25", "crf35"))
    dataset = PreparedWindows(root, spec.window_spec(), length=10**7)
    yield from DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0)


def packed(path: str, batch: int, frames: int, crop: int) -> Iterator[dict[str, torch.Tensor]]:
    from codecave.data.dataset import WindowSpec
    from codecave.data.packed import PackedWindows

    windows = PackedWindows(path, WindowSpec(frames=frames, crop=crop, compressed=("crf15", "crf25", "crf35")))
    i = 0
    while True:
        yield windows.batch(i, batch)
        i += 1


def measure(variant: str, setting: str, source: str, data: Iterator[dict[str, torch.Tensor]], batch: int,
            frames: int, crop: int, steps: int, warmup: int) -> dict[str, object]:
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant=variant)
    net = torch.compile(model, dynamic=False) if setting == "compile" else model
    t = TrainSection(precision="bf16" if setting == "bf16" else "fp32", stage_weight=0.1, grad_clip=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    split: dict[str, float] = defaultdict(float)
    clock = [0.0]

    def mark(name: str) -> None:
        now = time.perf_counter()
        split[name] += now - clock[0]
        clock[0] = now

    for i in range(warmup + steps):
        if i == warmup:
            split.clear()
            begin = time.perf_counter()
        clock[0] = time.perf_counter()
        b = next(data)
        mark("data")
        train_step(net, optimizer, b, t, mark)
    total = time.perf_counter() - begin
    return {
        "variant": variant, "setting": setting, "source": source, "batch": batch, "crop": crop, "frames": frames,
        "step_ms": round(1000 * total / steps, 1),
        "samples_per_s": round(batch * steps / total, 1),
        "mpix_per_s": round(batch * frames * crop * crop * steps / total / 1e6, 3),
        "split_ms": {k: round(1000 * v / steps, 1) for k, v in split.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="small,fast")
    ap.add_argument("--settings", default="fp32,bf16,compile")
    ap.add_argument("--shapes", default="16x64", help="BATCHxCROP,...")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--yuv-data", default=None, help="prepared yuv420 dataset (loader source)")
    ap.add_argument("--rgb-data", default=None, help="prepared rgb dataset (loader source)")
    ap.add_argument("--pack", default=None, help="a pack from scripts/gpu_train.py (pack source)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = f"{'variant':8} {'setting':14} {'source':9} {'BxS':>7} {'ms/step':>8} {'samples/s':>9} {'Mpix/s':>7}  split ms"
    print(header)
    for variant in args.variants.split(","):
        domain = model_domain("pnp_vcve", variant)
        for shape in args.shapes.split(","):
            batch, crop = map(int, shape.split("x"))
            sources = {"synthetic": functools.partial(synthetic, domain, batch, args.frames, crop)}
            root = args.yuv_data if domain == "yuv420" else args.rgb_data
            if root:
                sources["loader"] = functools.partial(loader, root, batch, args.frames, crop)
            if args.pack and domain == "yuv420":
                sources["pack"] = functools.partial(packed, args.pack, batch, args.frames, crop)
            for setting in args.settings.split(","):
                # the data source matters for fp32 only; the other settings are compared on the real loader
                names = list(sources) if setting == "fp32" else [n for n in ("pack", "loader", "synthetic")
                                                                   if n in sources][:1]
                for name in names:
                    try:
                        row = measure(variant, setting, name, sources[name](), batch, args.frames, crop,
                                      args.steps, args.warmup)
                    except Exception as exc:  # noqa: BLE001 - a setting may not work on this machine
                        print(f"{variant:8} {setting:14} {name:9} failed: {type(exc).__name__}: {exc}"[:200])
                        continue
                    rows.append(row)
                    split = " ".join(f"{k} {v}" for k, v in row["split_ms"].items())
                    print(f"{variant:8} {setting:14} {name:9} {shape:>7} {row['step_ms']:8.1f} "
                          f"{row['samples_per_s']:9.1f} {row['mpix_per_s']:7.3f}  {split}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
