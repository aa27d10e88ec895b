"""Neural wrapping's claims, re-measured (issue: neural wrapping; SPECS 3.5 and 3.7).

1. Stop-gradient on / off (paper Table 4): arm ``no_stop_gradient`` feeds the
   post-processor the proxy's output instead of the real codec's.
2. Pre and post together against post only and pre only (Table 3): arms ``post_only``
   (the pre-processor stays the identity) and ``pre_only`` (the post-processor stays the
   identity), each trained as such.
4. (SPECS 3.7 claim 5) a non-learned proxy for the distortion's gradient: arm
   ``identity_gradient`` passes the gradient at O's input straight to P (the rate's
   gradient still comes from the learned proxy); arm ``transform_rate`` also takes the
   rate's gradient from the non-learned transform-coding model
   (:mod:`codecave.models.transform_proxy`), so no learned proxy is used at all
   (``transform_rate_s1``: its second seed; ``post_only_no_proxy``: post-only without
   the learned proxy, which a post-only arm never needed); arm ``transform_model`` takes
   the distortion's gradient from that model too (through the coefficients it codes).
3. Proxy alignment (section 4.3): Pearson correlation of the proxy's and the codec's rate
   and PSNR per frame on held-out GOPs, before (the conventional proxy) and after the two
   phases (``proxy`` sub-command; evaluation only).

Arm ``proxy_refit_50`` is not a claim but a probe: the proxy's refit (iterative
refinement) at 50x the wrapper's learning rate, so it follows the pre-processor's drift;
``proxy_refit_50_no_dlm`` also drops the DLM term (is it what the pre-processor games?).

Every arm starts from the same aligned proxy (``configs/neural_wrapper/proxy_rate.yaml``'s
run) with the same seed and data order and trains for the same wall time
(``--minutes``, constant learning rate), then is scored by ``codecave evaluate --rd``'s
library function on the validation clips: BD-rate against the plain codec on PSNR-Y,
SSIM-Y, MS-SSIM-Y and VMAF. Arm ``full`` with a second seed gives the spread.

    python benchmarks/wrapper_claims.py train runs/nw_claims --arm full --minutes 30
    python benchmarks/wrapper_claims.py score runs/nw_claims --frames 8
    python benchmarks/wrapper_claims.py curves runs/nw_t --arms transform_rate  # beside post-only
    python benchmarks/wrapper_claims.py proxy --before runs/nw_proxy_conventional --after runs/nw_proxy_rate
    python benchmarks/wrapper_claims.py proxy --transform --val data/val_yuv6  # the non-learned model
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "neural_wrapper" / "small.yaml"
#: Objective settings of each arm (the rest as the recipe).
ARMS = {
    "full": {},
    "no_stop_gradient": {"stop_gradient": False},
    "post_only": {"pre": False},
    "pre_only": {"post": False},
    "full_s1": {},
    "identity_gradient": {"proxy_gradient": "identity"},
    "proxy_refit_50": {"proxy_lr_scale": 50.0},
    "proxy_refit_50_no_dlm": {"proxy_lr_scale": 50.0, "dlm": 0.0},
    "transform_rate": {"proxy_gradient": "identity", "rate_gradient": "transform"},
    "transform_rate_s1": {"proxy_gradient": "identity", "rate_gradient": "transform"},
    "post_only_no_proxy": {"pre": False, "proxy_gradient": "identity", "rate_gradient": "transform"},
    "transform_model": {"proxy_gradient": "transform", "rate_gradient": "transform"},
    "transform_model_s1": {"proxy_gradient": "transform", "rate_gradient": "transform"},
}
SEEDS = {"full_s1": 1, "transform_rate_s1": 1, "transform_model_s1": 1}
#: Arms that need no learned proxy: built without it, started from the identity pair, and
#: trained at the paper's learning rate 1e-4 (the learned-proxy arms run at 2e-5, set
#: against the collapse that proxy's rate gradient caused).
NO_PROXY = {"transform_rate", "transform_rate_s1", "post_only_no_proxy", "transform_model", "transform_model_s1"}
NO_PROXY_TRAIN = {"model.overrides.with_proxy": False, "train.init": "", "train.lr": 1e-4, "train.min_lr": 1e-4}


def train_arm(out: Path, arm: str, minutes: float, init: str | None) -> None:
    """Train ``arm`` for ``minutes`` of wall time into ``out/ARM/run`` (run again to resume:
    each call adds ``minutes``) and record what it did in ``out/ARM/arm.json``."""
    from codecave.engine.config import load_config
    from codecave.engine.trainer import train

    folder = out / arm
    overrides: dict[str, object] = {"out": str(folder / "run"), "train.steps": 100000, "train.max_minutes": minutes,
                                    "train.seed": SEEDS.get(arm, 0), "train.snapshot_every": 0}
    for key, value in ARMS[arm].items():
        overrides[f"objective.settings.{key}"] = value
    if arm in NO_PROXY:
        overrides.update(NO_PROXY_TRAIN)
    elif init:
        overrides["train.init"] = init
    result = train(load_config(RECIPE, overrides), progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"arm": arm, "settings": ARMS[arm], "seed": SEEDS.get(arm, 0), "steps": result.step,
              "trained_seconds": round(result.seconds, 1), "machine": platform.processor() or platform.machine()}
    (folder / "arm.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))


def score(out: Path, val: str, frames: int, arms: list[str] | None) -> None:
    """RD-evaluate every trained arm (``wrapped`` is the arm's own pair) and print the table."""
    from codecave.codec.encode import EncodeSettings
    from codecave.models import create_model
    from codecave.rate_distortion import METRICS, dataset_sources, rate_distortion, write_rd_report

    clips = dataset_sources(val, frames=frames)
    rows = {}
    for folder in sorted(p for p in out.iterdir() if (p / "arm.json").exists()):
        if arms and folder.name not in arms:
            continue
        report_path = folder / "rd" / "rd.json"
        stale = report_path.exists() and report_path.stat().st_mtime < (folder / "arm.json").stat().st_mtime
        if not report_path.exists() or stale:  # not scored, or trained further since
            model = create_model("neural_wrapper", weights=str(folder / "run"))
            report = rate_distortion(clips, EncodeSettings(codec="x264", preset="medium", threads=1),
                                     [23, 28, 33, 38], "crf", model, "cpu",
                                     progress=lambda m, a=folder.name: print(f"{a}: {m}", file=sys.stderr))
            write_rd_report(report, folder / "rd")
        data = json.loads(report_path.read_text())
        rows[folder.name] = {"arm": json.loads((folder / "arm.json").read_text()),
                             "bd": {m: data["bd_rate"]["wrapped"][m]["mean"] for m in METRICS}}
    print(f"BD-rate (%) of each arm's wrapped codec against plain x264 (CRF 23/28/33/38, medium), mean over "
          f"{len(clips)} validation clips, first {frames} frames; negative = fewer bits")
    print("| arm | steps | minutes | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for name, row in rows.items():
        a = row["arm"]
        print(f"| {name} | {a['steps']} | {a['trained_seconds'] / 60:.1f} | "
              + " | ".join(f"{row['bd'][m]:+.2f}" for m in METRICS) + " |")
    (out / "claims.json").write_text(json.dumps(rows, indent=1))


def curves(out: Path, arms: list[str], against: str, ranges: list[str]) -> None:
    """Training curves of ``arms`` beside ``against`` on the same batches (same seed and
    order): means of D, SSIM-Y, x264's bits per pixel and the loss over each range of steps
    (``"A-B"``, or ``"last"``: the arm's last 90 logged steps), labelled by the steps found."""

    def logged(arm: str) -> dict[int, dict[str, float]]:
        lines = (out / arm / "run" / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines)}

    base = logged(against)
    print(f"| arm | steps | D / SSIM-Y / x264 bpp / loss, arm | D / SSIM-Y / x264 bpp / loss, {against} on the same "
          "batches |")
    print("|---|---|---|---|")
    for arm in arms:
        run = logged(arm)
        last = max(run)
        seen: set[tuple[int, ...]] = set()
        for span in ranges:
            lo, hi = (last - 90, last) if span == "last" else map(int, span.split("-"))
            steps = sorted(s for s in run if lo <= s <= hi and s in base)
            if not steps or tuple(steps) in seen:
                continue
            seen.add(tuple(steps))
            cells = [" / ".join(f"{np.mean([log[s][k] for s in steps]):.{p}f}"
                                for k, p in (("distortion", 4), ("ssim", 4), ("rate_codec", 3), ("loss", 4)))
                     for log in (run, base)]
            print(f"| {arm} | {steps[0]}-{steps[-1]} | {cells[0]} | {cells[1]} |")


def held_out_gops(val: str, count: int, crop: int = 192, frames: int = 4, seed: int = 0) -> torch.Tensor:
    """``count`` random GOPs ``(count, frames, 24, crop/4, crop/4)`` in [0, 1] from the validation set."""
    from codecave.data.prepare import dataset_variants, load_clip, load_manifest

    manifest = load_manifest(val)
    variant = dataset_variants(manifest)[0]
    rng = np.random.default_rng(seed)
    gts = [load_clip(val, name, variant).gt for name in manifest["clips"]]
    g = crop // 4
    out = []
    for k in range(count):
        gt = gts[k % len(gts)]
        t = rng.integers(0, gt.shape[0] - frames + 1)
        y, x = rng.integers(0, gt.shape[2] - g + 1), rng.integers(0, gt.shape[3] - g + 1)
        out.append(gt[t : t + frames, :, y : y + g, x : x + g])
    return torch.from_numpy(np.stack(out)).float().div(255)


def proxy_correlation(runs: dict[str, str], val: str, count: int, qp: float, transform: bool = False) -> None:
    """Pearson correlation per frame of proxy and codec: rate (calibrated bits per pixel
    against x264's) and PSNR (of I_M and I_C against the source), for each learned proxy
    and, with ``transform``, the non-learned transform-coding model (its affine rate map
    per picture type fitted on other GOPs of the same clips)."""
    from codecave.engine.wrapping import codec_in_the_loop, codec_settings
    from codecave.grid import from_half_layout, luma, to_half_layout
    from codecave.models import create_model
    from codecave.models.transform_proxy import RateCalibration, transform_code

    gops = held_out_gops(val, count)
    settings = codec_settings("x264", qp, "medium", gops.shape[1])
    i_c, r_c = codec_in_the_loop(gops, settings)

    def psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:  # PSNR-Y of each frame
        mse = (luma(a) - luma(b)).pow(2).flatten(2).mean(-1)
        return (10 * torch.log10(1 / mse)).flatten().numpy()

    psnr_c = psnr(i_c, gops)
    print(f"proxy alignment on {count} held-out GOPs of 4 frames (192x192 crops of {val}), x264 QP {qp:g} low delay")
    print("| proxy | PCC rate | PCC rate, P frames | PCC PSNR | PCC PSNR, P frames | mean rate proxy / codec (bpp) | "
          "mean PSNR-Y proxy / codec (dB) |")
    print("|---|---|---|---|---|---|---|")
    inter = np.zeros(gops.shape[:2], bool)
    inter[:, 1:] = True  # the intra picture's rate dominates a pooled correlation: P frames alone beside it
    inter = inter.flatten()
    results = {}
    rows: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = dict.fromkeys(runs)
    if transform:
        rows["transform model (non-learned)"] = None
    for label in rows:
        if label in runs:
            model = create_model("neural_wrapper", weights=runs[label]).eval()
            with torch.no_grad():
                rec_half, rate_hyp = model.proxy(to_half_layout(gops), "round")
                rate = model.proxy.rate_alpha * rate_hyp + model.proxy.rate_beta / gops.shape[1]  # per frame
            rec, run = from_half_layout(rec_half), runs[label]
        else:  # fitted per picture type on other GOPs (seed 1) of the same clips, then frozen
            fit_gops = held_out_gops(val, count, seed=1)
            fit_c, fit_r = codec_in_the_loop(fit_gops, settings)
            calibration = RateCalibration(decay=0.0)
            calibration.update(transform_code(fit_gops, fit_c, qp).surrogate, fit_r)
            alpha, beta = (a.float() for a in calibration.fit())
            surrogate, rec, _ = transform_code(gops, i_c, qp)
            kind = (torch.arange(gops.shape[1]) > 0).long()
            rate, run = alpha[kind] * surrogate + beta[kind], f"alpha {alpha.tolist()}, beta {beta.tolist()}"
        psnr_m = psnr(rec, gops)
        rm, rc = rate.flatten().numpy(), r_c.flatten().numpy()
        pcc_rate = float(np.corrcoef(rm, rc)[0, 1])
        pcc_rate_p = float(np.corrcoef(rm[inter], rc[inter])[0, 1])
        pcc_psnr = float(np.corrcoef(psnr_m, psnr_c)[0, 1])
        pcc_psnr_p = float(np.corrcoef(psnr_m[inter], psnr_c[inter])[0, 1])
        results[label] = {"run": run, "pcc_rate": pcc_rate, "pcc_rate_p": pcc_rate_p, "pcc_psnr": pcc_psnr,
                          "pcc_psnr_p": pcc_psnr_p,
                          "rate_proxy": float(rate.mean()), "rate_codec": float(r_c.mean()),
                          "psnr_proxy": float(psnr_m.mean()), "psnr_codec": float(psnr_c.mean())}
        r = results[label]
        print(f"| {label} | {pcc_rate:.3f} | {pcc_rate_p:.3f} | {pcc_psnr:.3f} | {pcc_psnr_p:.3f} | "
              f"{r['rate_proxy']:.3f} / {r['rate_codec']:.3f} | "
              f"{r['psnr_proxy']:.2f} / {r['psnr_codec']:.2f} |")
    print("(the paper, Gaming set: rate 0.56 -> 0.88, PSNR 0.60 -> 0.85)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one arm for a wall-time budget")
    t.add_argument("out", type=Path)
    t.add_argument("--arm", required=True, choices=sorted(ARMS))
    t.add_argument("--minutes", type=float, default=30.0)
    t.add_argument("--init", default=None, help="aligned proxy run (default: the recipe's train.init)")
    s = sub.add_parser("score", help="RD-evaluate the trained arms")
    s.add_argument("out", type=Path)
    s.add_argument("--val", default=str(ROOT / "data" / "val_yuv"))
    s.add_argument("--frames", type=int, default=8)
    s.add_argument("--arms", default=None, help="comma-separated arms (default: all trained)")
    c = sub.add_parser("curves", help="training curves of arms beside another arm on the same batches")
    c.add_argument("out", type=Path)
    c.add_argument("--arms", required=True, help="comma-separated arms")
    c.add_argument("--against", default="post_only_no_proxy")
    c.add_argument("--ranges", default="10-100,210-300,last", help="comma-separated step ranges A-B, or last")
    p = sub.add_parser("proxy", help="claim 3: proxy/codec correlation before and after alignment")
    p.add_argument("--before", default=None, help="conventional proxy run")
    p.add_argument("--after", default=None, help="aligned proxy run (phase 2)")
    p.add_argument("--transform", action="store_true", help="also the non-learned transform-coding model")
    p.add_argument("--also", default=None, help="another run, e.g. the end-to-end one (its refitted proxy)")
    p.add_argument("--val", default=str(ROOT / "data" / "val_yuv"))
    p.add_argument("--gops", type=int, default=48)
    p.add_argument("--qp", type=float, default=30.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.command == "train":
        train_arm(args.out, args.arm, args.minutes, args.init)
    elif args.command == "curves":
        curves(args.out, args.arms.split(","), args.against, args.ranges.split(","))
    elif args.command == "score":
        score(args.out, args.val, args.frames, args.arms.split(",") if args.arms else None)
    else:
        named = {"before (conventional)": args.before, "after (phases 1 + 2)": args.after,
                 "end to end (refitted)": args.also}
        runs = {label: run for label, run in named.items() if run}
        if not runs and not args.transform:
            ap.error("proxy: give learned-proxy runs (--before / --after / --also), --transform, or both")
        proxy_correlation(runs, args.val, args.gops, args.qp, args.transform)


if __name__ == "__main__":
    main()
