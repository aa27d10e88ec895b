"""CRDS on one fixed training batch: does a learning rate learn, and how fast?

Draws one batch of a recipe's windows (seed 0), starts from a run's weights (the LDR-AE
pre-training: encoder and decoder; the denoising blocks at their identity start), and
trains the stage-1 loss (Charbonnier + intermediate L2; the encoder is not frozen here) on
that batch alone, printing the
batch's ΔPSNR-Y every 10 steps, and at the end the part the denoising blocks add
(``D(z4, z0) - D(z4, z4)``; see ``crds_blocks.py``). Used to pick the stage-1 learning
rate and to see whether the blocks learn at all (README, CRDS).

    python benchmarks/crds_overfit.py --lr 3e-4 --init runs/crds_ldr --steps 150
"""

from __future__ import annotations

import argparse

import torch

from codecave.data.dataset import PreparedWindows
from codecave.engine.config import load_config
from codecave.engine.objectives import ProgressiveDenoising
from codecave.grid import luma
from codecave.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/crds/small.yaml")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--init", default="runs/crds_ldr", help="a run folder, or none")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rpn-out-std", type=float, default=0.0,
                    help="start the RPN output layers at N(0, std) instead of zero (their identity start)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    data = PreparedWindows(cfg.data.root, cfg.data.window_spec(), length=cfg.train.batch_size, seed=0)
    batch = {k: torch.stack([data[i][k] for i in range(cfg.train.batch_size)]) for k in ("frames", "gt")}
    x_hat, x = luma(batch["frames"]), luma(batch["gt"])
    model = create_model("crds", weights=None if args.init == "none" else args.init).train()
    if args.rpn_out_std:
        torch.manual_seed(0)
        for block in model.blocks:
            torch.nn.init.normal_(block.rpn.out.weight, std=args.rpn_out_std)
    objective = ProgressiveDenoising(cfg.train, intermediate_weight=1.0)
    optimizer = torch.optim.Adam(model.parameters(), args.lr, betas=tuple(cfg.train.betas))

    def psnr(y: torch.Tensor) -> float:
        return float(10 * torch.log10(1 / (y - x).square().mean()))

    print(f"lr {args.lr}, init {args.init}: batch PSNR-Y in {psnr(x_hat):.3f} dB")
    for step in range(1, args.steps + 1):
        loss = objective.loss(model, {**batch, "crf": torch.zeros(len(x))}, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            with torch.no_grad():
                out = model(x_hat[:, :, None])[:, :, 0]
            print(f"step {step}: ΔPSNR-Y {psnr(out) - psnr(x_hat):+.3f} dB", flush=True)
    with torch.no_grad():
        clip = x_hat[:, :, None]
        motion, z4 = model.motion(clip), model.encode(clip)
        z = z4
        for block in model.blocks:
            z = block(z, motion)
        blocks_part = (model.decode(clip, z4, z) - model.decode(clip, z4, z4))[:, :, 0] + x_hat
    print(f"the blocks' part alone: ΔPSNR-Y {psnr(blocks_part) - psnr(x_hat):+.3f} dB")


if __name__ == "__main__":
    main()
