"""Can CAVSR learn at all? Over-fit one fixed training batch and print its gain over bicubic.

A probe for the learning study of issue 16: the recipe's ``super_resolution`` objective
on one batch of the recipe's windows, trained over and over (the compression encoder from
the ranker run, frozen); printed every ``--every`` steps: the loss and the batch's PSNR
gain of the float output over bicubic up-sampling (RGB, all channels). If this rises while
the validation gain does not, the obstacle is optimisation over diverse data, not the
model's capacity or the training code.

    python benchmarks/cavsr_overfit.py [--steps 200] [--batch 2] [--frames 5] [--crop 32] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from codecave.data.dataset import PreparedWindows
from codecave.engine.config import load_config
from codecave.engine.objectives import SuperResolution
from codecave.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/cavsr/small.yaml")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config, {"data.crop": args.crop, "data.frames": args.frames})
    data = PreparedWindows(cfg.data.root, cfg.data.window_spec(), length=args.batch, seed=0, scale=4)
    batch = {k: torch.stack([data[i][k] for i in range(args.batch)]) for k in data[0]}
    model = create_model("cavsr", weights=cfg.train.init or None)
    objective = SuperResolution(cfg.train)
    objective.setup(model)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                 betas=cfg.train.betas)
    frames, gt = batch["frames"], batch["gt"]
    bicubic = F.interpolate(frames.flatten(0, 1), scale_factor=4, mode="bicubic", align_corners=False)
    bicubic = bicubic.clamp(0, 1).view_as(gt)

    def gain() -> float:
        with torch.no_grad():
            out = model(frames, batch).clamp(0, 1)
        psnr = lambda a: 10 * torch.log10(1 / (a - gt).pow(2).mean())  # noqa: E731
        return float(psnr(out) - psnr(bicubic))

    start = time.perf_counter()
    for step in range(args.steps + 1):
        loss = objective.loss(model, batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.every == 0:
            print(f"step {step}: loss {loss.item():.6f}, batch ΔPSNR over bicubic {gain():+.4f} dB, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
