"""Does the codec proxy see what the pre-processor changes? (neural wrapping, issue 18)

On one fixed batch of 4 training GOPs, the pre-processor P alone (O the identity, the proxy
frozen) is trained on the end-to-end loss as its gradient sees it (through the proxy: the
distortion of ``I_M`` plus ``0.1 x`` the calibrated proxy rate of the GOP), and beside it the
same frames go through the real x264 (QP 30, low delay). If the proxy tracked x264, both
losses would fall together.

    python benchmarks/wrapper_diagnose.py --proxy runs/nw_proxy_rate --steps 40

``--gradient transform`` (no learned proxy): P is trained on the *real* loss (x264's output and
bits) with the gradient of the non-learned transform model (:mod:`codecave.models.transform_proxy`:
the coded coefficients for the distortion, the rate surrogate for the rate); ``identity`` takes
the distortion's gradient straight through instead. The loss's value is x264's, so if the
gradient were a descent direction for the real codec, the loss would fall.

    python benchmarks/wrapper_diagnose.py --gradient transform --steps 40 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default="runs/nw_proxy_rate", help="run with the aligned proxy")
    ap.add_argument("--recipe", default="configs/neural_wrapper/small.yaml", help="data and settings")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--gradient", choices=("ssf", "identity", "transform"), default="ssf",
                    help="what carries the gradient to P: the learned proxy (its own loss) or the non-learned "
                         "model (the real loss)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from codecave.data.dataset import PreparedWindows
    from codecave.engine.config import load_config
    from codecave.engine.wrapping import codec_in_the_loop, codec_settings, perceptual_distortion
    from codecave.grid import from_half_layout, to_half_layout
    from codecave.models import create_model

    cfg = load_config(args.recipe)
    data = PreparedWindows(cfg.data.root, cfg.data.window_spec(), length=4, seed=0)
    x = torch.stack([data[i]["gt"] for i in range(4)])
    if args.gradient != "ssf":
        real_loss(x, args)
        return
    model = create_model("neural_wrapper", weights=args.proxy).train()
    model.requires_grad_(False)
    model.pre.requires_grad_(True)
    optimizer = torch.optim.Adam(model.pre.parameters(), lr=args.lr)
    weights = {"l1": 0.1, "ssim": 0.25, "ms_ssim": 0.25, "dlm": 0.2}
    codec = codec_settings("x264", 30, "medium", x.shape[1])
    print("| step | loss through the proxy | proxy D | proxy rate (bpp per GOP) | x264 D | x264 rate (bpp per GOP) "
          "| mean abs change by P |")
    print("|---|---|---|---|---|---|---|")
    for step in range(args.steps + 1):
        i_p = model.preprocess(x)
        rec, rate_hyp = model.proxy(to_half_layout(i_p), "ste")
        d_proxy = perceptual_distortion(x, from_half_layout(rec), **weights)["distortion"]
        rate_proxy = model.proxy.calibrate(rate_hyp).mean()
        loss = d_proxy + 0.1 * rate_proxy
        if step % 5 == 0:
            with torch.no_grad():
                i_c, r_c = codec_in_the_loop(i_p, codec)
                d_real = perceptual_distortion(x, i_c, **weights)["distortion"]
            row = [step, float(loss), float(d_proxy), float(rate_proxy), float(d_real), float(r_c.sum(1).mean()),
                   float((i_p - x).abs().mean())]
            print("| " + " | ".join(f"{v:.5g}" for v in row) + " |", flush=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(json.dumps({"proxy": args.proxy, "lr": args.lr, "steps": args.steps}))


def real_loss(x: torch.Tensor, args: argparse.Namespace) -> None:
    """P alone on the real codec's loss with the non-learned model's gradient (``--gradient``)."""
    from codecave.engine.wrapping import codec_in_the_loop, codec_settings, perceptual_distortion
    from codecave.models import create_model
    from codecave.models.transform_proxy import RateCalibration, transform_code

    model = create_model("neural_wrapper", weights=None).train()
    model.requires_grad_(False)
    model.pre.requires_grad_(True)
    optimizer = torch.optim.Adam(model.pre.parameters(), lr=args.lr)
    weights = {"l1": 0.1, "ssim": 0.25, "ms_ssim": 0.25, "dlm": 0.2}
    codec = codec_settings("x264", 30, "medium", x.shape[1])
    calibration = RateCalibration()
    print("| step | x264 loss | x264 D | x264 rate (bpp per GOP) | rate surrogate | mean abs change by P |")
    print("|---|---|---|---|---|---|")
    for step in range(args.steps + 1):
        i_p = model.preprocess(x)
        i_c, r_c = codec_in_the_loop(i_p, codec)
        coding = transform_code(i_p, i_c, 30)
        i_m = coding.coded if args.gradient == "transform" else i_p
        d = perceptual_distortion(x, i_c + (i_m - i_m.detach()), **weights)["distortion"]
        slopes = calibration.update(coding.surrogate, r_c)
        rate = (r_c.sum(1) + (slopes * (coding.surrogate - coding.surrogate.detach())).sum(1)).mean()
        loss = d + 0.1 * rate
        if step % 5 == 0:
            row = [step, float(loss.detach()), float(d.detach()), float(rate.detach()),
                   float(coding.surrogate.detach().sum(1).mean()), float((i_p.detach() - x).abs().mean())]
            print("| " + " | ".join(f"{v:.5g}" for v in row) + " |", flush=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(json.dumps({"gradient": args.gradient, "lr": args.lr, "steps": args.steps}))


if __name__ == "__main__":
    main()
