"""Fit the shrinkage stage that runs after a luma network (VIG's ``dct_shrink``) on that network's
own outputs, nothing else trained.

The stage (:class:`codecave.layers.dct.ShiftedDCTShrinkage`: thresholds ``s_k x Qstep(QP)^g``,
64 ``log s_k`` and one ``g``) came from the default's stage 9, learned on x264 pictures at their
own QP in front of PnP-VCVE (``--start``: the fit starts from it). After VIG it sees other pictures: HEVC low-delay P at the sequence
QP, already enhanced. This fits it there. The shipped network runs once (float32, no stage) over
the first ``--frames`` frames of the ``--clips`` of a prepared ``yuv420`` dataset of *training*
clips at each ``--variants`` rate point; its outputs are cached, and Adam fits the stage on
random 128x128 crops of them against the originals (mean squared error on Y in [0, 1]; the
stage's sigmoid gate is the one it runs with; learning rate cosine from ``--lr`` to 0). ``--check-clips``, other training clips, score the
stage every ``--every`` steps (8-bit ΔPSNR-Y of the clips per rate point, the network plus the
stage against the decoded frames): the settings are chosen on them, never on validation.

Writes ``OUT/stage.safetensors`` (the stage's tensors, named as in the model: ``shrink.*``) and
``OUT/fit.json`` (command, settings, clips, steps, wall minutes, the check curve). Ship with
``scripts/graft_weights.py ENTRY --from OUT/stage.safetensors --prefix shrink. ...``.

    python scripts/fit_shrinkage.py vig data/crds_train --variants ldp22,ldp37 --frames 16 \\
        --clips baseball_720p,davis_bmxtrees_01,davis_bmxtrees_02,davis_tennis_01,tabletennis_sif_01,\\
sintel_market,sintel_bamboo,vimeo_00001_0001,openh264_vt2people,kodim05,kodim13 \\
        --check-clips davis_bmxtrees_03,davis_tennis_02,tabletennis_sif_02,vimeo_00001_0002,vimeo_00002_0001,kodim01 \\
        --steps 100 --out runs/vig_stage_fit
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from codecave.data.dataset import variant_crf
from codecave.data.prepare import load_clip, load_manifest
from codecave.errors import ConfigError
from codecave.grid import to_codes
from codecave.metrics.quality import psnr_plane
from codecave.models import create_model
from codecave.models.registry import shipped_weights_entry

#: Side of the training crops (even: the stage's shifts stay on the codec's grid).
CROP = 128


def network_outputs(model: torch.nn.Module, root: Path, clips: list[str], variants: list[str], frames: int
                    ) -> list[dict[str, object]]:
    """The network's float output without the stage (``(T, H, W)`` in [0, 1]) beside the
    original and the decoded Y (code values), per clip and rate point."""
    stage, model.shrink = model.shrink, None
    cached = []
    try:
        for variant in variants:
            for name in clips:
                clip = load_clip(root, name, variant)
                gt, dec = clip.luma_planes(frames)
                qp = variant_crf(clip.info, variant)
                with torch.no_grad():
                    out = model((dec / 255).float()[None, :, None], torch.tensor([qp]))[0, :, 0].clamp(0, 1)
                cached.append({"clip": name, "variant": variant, "qp": qp, "out": out, "gt": gt, "dec": dec})
    finally:
        model.shrink = stage
    return cached


def gains(stage: torch.nn.Module, cached: list[dict[str, object]], offset: float) -> dict[str, float]:
    """Mean 8-bit ΔPSNR-Y of the clips per rate point: the network plus the stage against the input."""
    by: dict[str, list[float]] = {}
    with torch.no_grad():
        for c in cached:
            out = c["out"]
            y = stage(out[:, None], torch.full((len(out),), c["qp"] + offset))[:, 0].double()
            y = to_codes(y, 8)
            by.setdefault(c["variant"], []).append(float((psnr_plane(y, c["gt"]) - psnr_plane(c["dec"], c["gt"])).mean()))
    return {v: float(np.mean(g)) for v, g in by.items()}


def fit_stage(stage: torch.nn.Module, fit: list[dict[str, object]], held: list[dict[str, object]], offset: float,
              steps: int, batch: int, lr: float, fixed_exponent: bool, every: int, rng: np.random.Generator
              ) -> list[dict[str, object]]:
    """Fit ``stage`` in place on crops of the cached network outputs ``fit`` (see
    :func:`network_outputs`; frames at least :data:`CROP` square), scoring ``held`` every
    ``every`` steps; returns the curve (step, last loss, check gains per rate point)."""
    stage.exponent.requires_grad_(not fixed_exponent)
    stage.log_scale.requires_grad_(True)
    opt = torch.optim.Adam([p for p in stage.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)  # to 0: a steady end point
    curve = [{"step": 0, "check": gains(stage, held, offset)}]
    print(f"step 0: check {curve[0]['check']}", flush=True)
    for step in range(1, steps + 1):
        xs, ys, qs = [], [], []
        for _ in range(batch):
            c = fit[rng.integers(len(fit))]
            out, gt = c["out"], c["gt"]
            t = rng.integers(len(out))
            h, w = out.shape[-2:]
            a = 2 * rng.integers(0, (h - CROP) // 2 + 1)
            b = 2 * rng.integers(0, (w - CROP) // 2 + 1)
            xs.append(out[t, a : a + CROP, b : b + CROP])
            ys.append(gt[t, a : a + CROP, b : b + CROP].float() / 255)
            qs.append(c["qp"] + offset)
        loss = (stage(torch.stack(xs)[:, None], torch.tensor(qs)) - torch.stack(ys)[:, None]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "loss": float(loss.detach()), "check": gains(stage, held, offset)})
            print(f"step {step}: loss {float(loss.detach()):.6f}, check {curve[-1]['check']}", flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a registered luma model whose shipped weights have the stage after the network (vig)")
    ap.add_argument("dataset", type=Path, help="a yuv420 dataset made by codecave prepare (training clips)")
    ap.add_argument("--clips", required=True, help="comma-separated clips to fit on")
    ap.add_argument("--check-clips", required=True, help="comma-separated other training clips to score on")
    ap.add_argument("--variants", default="ldp22,ldp37", help="rate points by variant name")
    ap.add_argument("--frames", type=int, default=16, help="first N frames of each clip")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=24, help="crops per step")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--fixed-exponent", action="store_true", help="fit the 64 scales only, not g")
    ap.add_argument("--every", type=int, default=25, help="score the check clips every this many steps")
    ap.add_argument("--start", default="pnp_vcve_fast",
                    help="manifest entry whose shrink.* tensors the fit starts from (default: the default's stage 9, "
                         "what the graft took; not the shipped stage, so that the fit can be repeated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if load_manifest(args.dataset).get("domain") != "yuv420":
        raise SystemExit(f"{args.dataset}: not a yuv420 dataset")
    clips, check = args.clips.split(","), args.check_clips.split(",")
    if set(clips) & set(check):
        raise SystemExit(f"--clips and --check-clips share {sorted(set(clips) & set(check))}")
    variants = args.variants.split(",")
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = create_model(args.model).eval()
    if getattr(model, "shrink", None) is None or not hasattr(model, "postfilter"):
        raise SystemExit(f"the shipped {args.model} has no shrinkage stage after its network (dct_shrink)")
    offset = float(model.shrink_qp_offset)
    try:
        with resources.as_file(shipped_weights_entry(args.start)) as path:
            start_stage = {k[len("shrink."):]: v for k, v in load_file(str(path)).items() if k.startswith("shrink.")}
    except ConfigError as e:
        raise SystemExit(f"--start: {e}") from e
    if not start_stage:
        raise SystemExit(f"--start {args.start}: no shrink.* tensors")
    model.shrink.load_state_dict(start_stage)
    start = time.perf_counter()
    fit, held = (network_outputs(model, args.dataset, c, variants, args.frames) for c in (clips, check))
    stage = model.shrink.float()
    curve = fit_stage(stage, fit, held, offset, args.steps, args.batch, args.lr, args.fixed_exponent, args.every, rng)
    minutes = (time.perf_counter() - start) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({f"shrink.{k}": v.detach().contiguous() for k, v in stage.state_dict().items()},
              str(args.out / "stage.safetensors"))
    record = {"command": " ".join(["python", *sys.argv]), "model": args.model, "dataset": str(args.dataset),
              "clips": clips, "check_clips": check, "variants": variants, "frames": args.frames,
              "steps": args.steps, "batch": args.batch, "crop": CROP, "lr": args.lr,
              "fixed_exponent": args.fixed_exponent, "start": args.start, "seed": args.seed, "wall_minutes": round(minutes, 2),
              "machine": f"{torch.get_num_threads()} torch threads, torch {torch.__version__}", "curve": curve}
    (args.out / "fit.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out / 'stage.safetensors'} and fit.json ({minutes:.1f} minutes)")


if __name__ == "__main__":
    main()
