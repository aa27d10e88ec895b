"""Choose a model's pass-through QP from validation and (optionally) record it with its shipped weights.

The model is evaluated with pass-through off on a prepared validation set; per-frame
8-bit ΔPSNR-Y against frame QP is printed (the curve the threshold comes from), and
:func:`codecave.evaluate.choose_pass_through` picks the threshold: frames at or below it
are passed through by ``codecave enhance``, which keeps every frame type of CRF <= 15 /
QP <= 22 from getting worse, with the largest total gain. ``--ship`` writes it into the
shipped weights' manifest entry (``pass_through_qp`` and ``validation.pass_through``).

Several validation sets may be given (e.g. the split at CRF 15 to 38 and again at
CRF 10 to 18, so that "CRF 15 and below" is validated below 15 too); each rate point is
taken from the first set that has it.

Usage:
    python scripts/pass_through.py data/val_yuv6 data/val_yuv_hq --variant fast --crf 10,12,15,18,25,28,35,38 --frames 6 \
        --per-clip [--ship]          # the default's rule: no validation clip worse in any protected group
    python scripts/pass_through.py data/val_yuv6 --weights runs/pnp_vcve_fast --frames 6
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codecave.data.prepare import load_manifest
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import choose_pass_through, evaluate, write_report
from codecave.models import create_model
from codecave.models.registry import DEFAULT_VARIANT

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "codecave" / "weights"


def plot(choice: dict[str, object], path: Path, title: str) -> Path:
    """Mean 8-bit ΔPSNR-Y per frame QP (dot size: frames), the threshold as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qps = [int(q) for q in choice["by_qp"]]
    gains = [r["delta_psnr"] for r in choice["by_qp"].values()]
    sizes = [8 * r["frames"] for r in choice["by_qp"].values()]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.axhline(0, color="0.5", lw=1)
    ax.scatter(qps, gains, s=sizes, color=["tab:red" if g < 0 else "tab:blue" for g in gains])
    if choice["threshold"] >= 0:
        ax.axvline(choice["threshold"], color="black", ls="--",
                   label=f"pass-through at QP <= {choice['threshold']:.2f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("frame QP")
    ax.set_ylabel("mean ΔPSNR-Y, 8-bit (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("val", nargs="+", help="prepared validation set(s)")
    ap.add_argument("--model", default="pnp_vcve")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--weights", default="default", help="'default' (shipped), a .safetensors file or a run folder")
    ap.add_argument("--crf", default="15,18,25,28,35,38")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the evaluation report here")
    ap.add_argument("--per-clip", action="store_true",
                    help="hold every validation clip, not only their mean, not worse in each protected group")
    ap.add_argument("--ship", action="store_true", help="record the threshold in the shipped weights' manifest")
    args = ap.parse_args()
    # The variant asked for, or the default's, with no fallback: the threshold is that model's own.
    variant = args.variant or (DEFAULT_VARIANT if args.weights == "default" else None)
    model = create_model(args.model, weights=args.weights, variant=variant)
    variants = [f"crf{c}" for c in args.crf.split(",")]
    enhancer = Enhancer(model, EnhanceOptions(pass_through_qp=-1))
    report, sources = None, {}
    for root in args.val:
        have = {v for clip in load_manifest(root)["clips"].values() for v in clip["variants"]}
        mine = [v for v in variants if v in have and v not in sources]
        if not mine:
            continue
        part = evaluate(enhancer, root, mine, max_frames=args.frames,
                        model_info={"name": args.model, "variant": model.variant, "weights": str(args.weights)})
        sources.update({v: root for v in mine})
        if report is None:
            report = part
        else:
            report.scores.extend(part.scores)
    missing = [v for v in variants if v not in sources]
    if report is None or missing:
        raise SystemExit(f"no validation set has rate point(s) {', '.join(missing or variants)}")
    choice = choose_pass_through(report, per_clip=args.per_clip)
    if args.out:
        write_report(report, args.out)
        plot(choice, Path(args.out) / "pass_through.png", f"{args.model} {model.variant} on {', '.join(args.val)}")
    print("frame QP | frames | mean ΔPSNR-Y, 8-bit (dB)")
    for qp, row in choice["by_qp"].items():
        print(f"{qp:>8} | {row['frames']:6d} | {row['delta_psnr']:+.4f}")
    print(f"pass-through QP: {choice['threshold']:g} (-1: none)")
    print("mean ΔPSNR-Y per frame, without -> with it:")
    for v in choice["gain_before"]:
        print(f"  {v}: {choice['gain_before'][v]:+.4f} -> {choice['gain_after'][v]:+.4f}")
    print("protected groups (each rate point of CRF <= 15, and QP <= 22 frames of the others, by type), with it:",
          {k: round(x, 4) for k, x in choice["protected"].items()})
    if args.ship:
        if args.weights != "default":
            raise SystemExit("--ship records the threshold of shipped weights: use --weights default")
        path = WEIGHTS / "manifest.json"
        manifest = json.loads(path.read_text())
        entry = manifest[f"{args.model}_{model.variant}"]
        entry["pass_through_qp"] = None if choice["threshold"] < 0 else round(choice["threshold"], 3)
        entry.setdefault("validation", {})["pass_through"] = {
            "data": {v: str(r) for v, r in sources.items()}, "rate_points": variants, "frames": args.frames or "all",
            "rule": "each protected group of every clip" if args.per_clip else "each protected group, mean of the clips",
            **{k: choice[k] for k in ("threshold", "gain_before", "gain_after", "protected", "by_qp")}}
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"recorded in {path}")


if __name__ == "__main__":
    main()
