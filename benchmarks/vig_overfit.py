"""Can VIG learn at all? Over-fit one fixed training batch and print its gain.

A probe for the learning study of issue 15: the recipe's fine-tuning objective
(``recurrent_luma``) on one batch drawn from the recipe's pack, trained over and over;
printed every 50 steps: the loss and the batch's ΔPSNR-Y (float output). If this rises
while the validation gain does not, the obstacle is optimisation over diverse data or
generalisation, not the model's capacity or the training code.

    python benchmarks/vig_overfit.py [--steps 300] [--batch 4] [--crop 64] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import time

import torch

from codecave.data.packed import PackedWindows
from codecave.engine.config import load_config
from codecave.engine.objectives import RecurrentLuma
from codecave.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/vig/small.yaml")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config, {"data.crop": args.crop, "train.init": ""})
    batch = PackedWindows(cfg.data.packed, cfg.data.window_spec(), "cpu", seed=0).batch(0, args.batch)
    model = create_model("vig", weights=None).train()
    objective = RecurrentLuma(cfg.train)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=cfg.train.betas)
    frames, gt, qp = objective.clips(batch)

    def gain() -> float:
        with torch.no_grad():
            out = model(frames, qp)
        psnr = lambda a: 10 * torch.log10(1 / (a - gt).pow(2).mean())
        return float(psnr(out) - psnr(frames))

    start = time.perf_counter()
    for step in range(args.steps + 1):
        loss = objective.loss(model, batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.6f}, batch ΔPSNR-Y {gain():+.4f} dB, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
