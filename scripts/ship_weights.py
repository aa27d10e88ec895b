"""Validate a training run and ship its weights in the package with a manifest entry.

Evaluates the run's ``model.safetensors`` on a prepared validation set (frame-QP
and slice-type modes), copies the weights to ``src/codecave/weights/`` and writes
the entry of ``weights/manifest.json``: architecture, training data and settings,
steps, wall time, the measured validation scores, and the pass-through QP chosen from
them (:func:`codecave.evaluate.choose_pass_through`: frames at or below it are passed
through by ``codecave enhance``, where the model was measured not to help). Reports go to
``RUN/validation``.

Usage:
    python scripts/ship_weights.py runs/pnp_vcve_small data/pnp_val [--crf 15,25,35,18,28,38,40,45]
        [--slice-type-crf 15,25,35 --slice-type-frames 8]
    python scripts/ship_weights.py runs/vig_small data/vig_val --variants ldp22,ldp27,ldp32,ldp37,crf35 \
        --slice-type-crf none --no-pass-through       # a model that reads no frame priors
    python scripts/ship_weights.py runs/cavsr_small data/sr_val --crf 0,15,25,35 --frames 8 \
        --slice-type-crf none --no-pass-through       # 4x super-resolution: scored against bicubic
    python scripts/ship_weights.py runs/nw_small data/val_yuv --rd --frames 8
        # a codec wrapper: rate-distortion against plain x264 (BD-rates); the proxy is left out
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codecave.data.prepare import load_manifest
from codecave.engine.checkpoint import load_checkpoint
from codecave.engine.config import load_config
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import EvalReport, choose_pass_through, evaluate, write_report
from codecave.models import create_model

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "codecave" / "weights"


def _first_frames(report: EvalReport, variants: list[str], n: int | None) -> dict[str, dict[str, float]]:
    """Mean PSNR in/out and delta over the first ``n`` frames of each clip, per rate point."""
    out = {}
    for v in variants:
        rows = [s for s in report.scores if s.variant == v]
        if not rows:
            continue
        p_in = float(np.mean([x for s in rows for x in s.psnr_in[:n]]))
        p_out = float(np.mean([x for s in rows for x in s.psnr_out[:n]]))
        out[v] = {"psnr_in": round(p_in, 4), "psnr_out": round(p_out, 4), "delta_psnr": round(p_out - p_in, 4)}
    return out


REPO = Path(__file__).resolve().parents[1]


def shipped_entry_of(init: str, default_entry: str) -> dict[str, Any] | None:
    """The manifest entry of the shipped weights ``train.init`` names: ``default`` (the
    entry ``default_entry``) or a file of the package's weights folder (the entry listing that
    file, e.g. ``pnp_vcve_fast_high.safetensors``); None for anything else."""
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    if init == "default":
        return manifest.get(default_entry)
    path = Path(init)
    if not init or not path.is_file() or path.resolve().parent != WEIGHTS.resolve():
        return None
    return next((e for e in manifest.values() if isinstance(e, dict) and e.get("file") == path.name), None)


def training_stages(run: Path) -> list[dict[str, Any]]:
    """The run and, following ``train.init`` back through run folders, the runs it started from
    (``init: default`` or a shipped weights file: the stages of those shipped weights, from
    their manifest entry; a weights file assembled from several runs: the stages listed in its
    ``stages_before`` metadata, e.g. ``benchmarks/cavsr_claims.py after-twin``'s start).

    Returns one entry per stage, first stage first: run name, recipe (when the run's
    name matches a config under ``configs/``), steps, wall minutes and the settings.
    """
    stages: list[dict[str, Any]] = []
    seen: set[Path] = set()
    current: Path | None = run
    while current is not None and current.resolve() not in seen and (current / "config.yaml").is_file():
        seen.add(current.resolve())
        cfg = load_config(current / "config.yaml")
        state = load_checkpoint(current)
        prefix = f"{cfg.model.name}_"
        recipe = REPO / "configs" / cfg.model.name / f"{cfg.name.removeprefix(prefix)}.yaml"
        settings = cfg.to_dict()
        settings["data"] = {k: v for k, v in settings["data"].items() if k != "root"}
        stages.append({"run": cfg.name,
                       "recipe": str(recipe.relative_to(REPO)) if recipe.is_file() else None,
                       "steps": int(state["step"]),
                       "wall_minutes": round(float(state["extra"]["seconds"]) / 60, 1),
                       "settings": settings})
        init = cfg.train.init
        entry = shipped_entry_of(init, f"{cfg.model.name}_{cfg.model.variant}")
        if entry is not None:  # started from shipped weights: their stages come first
            shipped = entry.get("training", {}).get("stages", [])
            ours = stages[::-1]
            names = [st.get("run") for st in shipped]
            if ours[0]["run"] in names:  # these runs are shipped already (a re-validation): list them once
                shipped = shipped[:names.index(ours[0]["run"])]
            return [*shipped, *ours]
        where = _resolve(init)
        before = _stages_before(where) if where is not None and where.is_file() else None
        if before is not None:
            return [*before, *stages[::-1]]
        current = where if where is not None and where.is_dir() else None
    return stages[::-1]


def _resolve(init: str) -> Path | None:
    """``train.init`` as a path: as given, else relative to the repository (recipes name
    ``runs/...`` from the repository root); None when it names nothing on disk."""
    if not init or init == "default":
        return None
    for path in (Path(init), REPO / init):
        if path.exists():
            return path
    return None


def _stages_before(path: Path) -> list[dict[str, Any]] | None:
    """The ``stages_before`` a weights file records (JSON in its safetensors metadata), or None."""
    from safetensors import safe_open

    if path.suffix != ".safetensors":
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["stages_before"]) if "stages_before" in meta else None


def training_entry(run: Path) -> dict[str, object]:
    """The manifest's ``training`` entry: data, stages, and total steps and wall time."""
    cfg = load_config(run / "config.yaml")
    train_manifest = load_manifest(cfg.data.root)
    stages = training_stages(run)
    return {
        "recipes": [st["recipe"] for st in stages],
        "data": {"clips": sorted(train_manifest["clips"]), "settings": train_manifest["settings"]},
        "stages": stages,
        "steps": sum(st["steps"] for st in stages),
        "wall_minutes": round(sum(st["wall_minutes"] for st in stages), 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }


def write_entry(name: str, entry: dict[str, object]) -> Path:
    """Set ``name``'s entry of ``weights/manifest.json``; returns the manifest's path."""
    path = WEIGHTS / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[name] = entry
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def ship_wrapper(run: Path, val: Path, frames: int | None) -> None:
    """Validate a neural wrapper by rate-distortion and ship ``pre`` and ``post`` (not the proxy)."""
    from safetensors.torch import save_file

    from codecave.codec.encode import EncodeSettings
    from codecave.rate_distortion import dataset_sources, rate_distortion, write_rd_report

    cfg = load_config(run / "config.yaml")
    model = create_model(cfg.model.name, weights=run / "model.safetensors", variant=cfg.model.variant)
    settings, points = EncodeSettings(codec="x264", preset="medium", threads=1), [23.0, 28.0, 33.0, 38.0]
    report = rate_distortion(dataset_sources(val, frames=frames), settings, points, "crf", model, "cpu",
                             progress=lambda m: print(f"[rd] {m}", flush=True))
    write_rd_report(report, run / "validation" / "rd")
    print(report.to_markdown())
    config = {**model.describe(), "with_proxy": False}
    name = f"{cfg.model.name}_{cfg.model.variant}"
    target = WEIGHTS / f"{name}.safetensors"
    state = {k: v.detach().contiguous() for k, v in model.wrapper_state().items()}
    save_file(state, str(target), metadata={"model": json.dumps(cfg.model.name),
                                            "variant": json.dumps(cfg.model.variant), "config": json.dumps(config)})
    bd = report.bd_rates()
    entry = {
        "model": cfg.model.name,
        "variant": cfg.model.variant,
        "file": target.name,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "config": config,
        "parameters": sum(v.numel() for v in state.values()),
        "pass_through_qp": None,
        "training": training_entry(run),
        "validation": {
            "clips": {n: c.get("source") for n, c in load_manifest(val)["clips"].items()},
            "frames": frames or "all",
            "metric": "BD-rate (%) against plain x264 at the same CRFs (pchip), per metric on the Y plane of the YUV "
                      "file, mean over clips; VMAF by vmaf-torch (agreement with libvmaf unmeasured)",
            "codec": report.codec,
            "crf": points,
            "bd_rate": {arm: {m: round(v["mean"], 3) for m, v in metrics.items()} for arm, metrics in bd.items()},
        },
    }
    path = write_entry(name, entry)
    print(f"shipped {target} ({target.stat().st_size / 1e6:.2f} MB) and its entry in {path}")


def validate(model: torch.nn.Module, model_name: str, label: str, val: Path, args: argparse.Namespace,
             out: Path) -> tuple[dict[str, object], EvalReport, dict[str, Any]]:
    """Score ``model`` on ``val`` as ``args`` say (frame-QP mode, then slice types only), write the
    reports under ``out`` and choose the pass-through QP; returns the manifest's validation
    results, the frame-QP report and the pass-through choice (``{"threshold": -1}`` when off)."""
    model.pass_through_qp = None  # validate the model itself; the threshold is chosen from these scores
    variants = args.variants.split(",") if args.variants else [f"crf{c}" for c in args.crf.split(",")]
    runs = {"frame_qp": (variants, args.frames, False)}
    if args.slice_type_crf != "none":
        runs["slice_type"] = ([f"crf{c}" for c in args.slice_type_crf.split(",")], args.slice_type_frames, True)
    results: dict[str, object] = {}
    gate: dict[str, Any] = {"threshold": -1.0}
    for mode, (variants, frames, slice_type) in runs.items():
        report = evaluate(Enhancer(model, EnhanceOptions(slice_type=slice_type, precision=args.precision)), val,
                          variants, max_frames=frames,
                          model_info={"name": model_name, "weights": label, "precision": args.precision},
                          progress=lambda m, mode=mode: print(f"[{mode}] {m}", flush=True))
        write_report(report, out / mode)
        results[mode] = {v: {k: round(x, 4) for k, x in m.items()} for v, m in report.by_variant().items()}
        if mode == "frame_qp":
            full = report
            per_stream = getattr(model, "domain", "") == "y"  # luma models hold back whole streams
            if not args.no_pass_through:
                gate = choose_pass_through(report, per_stream=per_stream, per_clip=args.per_clip)
                print(f"pass-through QP {gate['threshold']:g}: mean ΔPSNR-Y per frame {gate['gain_before']} -> "
                      f"{gate['gain_after']}; protected groups {gate['protected']}")
        else:
            # The frame-QP scores of the same frames, for a like-for-like comparison.
            results["frame_qp_same_frames"] = _first_frames(full, variants, frames)
        print(report.to_markdown())
    return results, full, gate


def validation_entry(val: Path, args: argparse.Namespace, results: dict[str, object], full: EvalReport,
                     gate: dict[str, Any]) -> dict[str, object]:
    """The manifest's ``validation`` entry."""
    val_manifest = load_manifest(val)
    return {
        "clips": {n: c.get("source") for n, c in val_manifest["clips"].items()},
        "precision": args.precision,
        "frames": {"frame_qp": args.frames or "all",
                   "slice_type": args.slice_type_frames if args.slice_type_crf != "none" else None},
        "metric": f"PSNR/SSIM on the {full.metric}; psnr_in = {full.input_name}, psnr_out = the model's "
                  "8-bit output" + (f", against the {full.scale}x ground truth" if full.scale > 1 else ""),
        **results,
        **({"pass_through": gate} if not args.no_pass_through else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="training run folder (config.yaml, checkpoint.pt, model.safetensors)")
    ap.add_argument("val", type=Path, help="prepared validation dataset")
    ap.add_argument("--crf", default="15,25,35,18,28,38,40,45", help="rate points to validate at (frame QP mode)")
    ap.add_argument("--variants", default=None,
                    help="rate points by variant name instead of --crf (e.g. ldp22,ldp37,crf35)")
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default all)")
    ap.add_argument("--slice-type-crf", default="15,25,35",
                    help="rate points for the slice-type-only check ('none' to skip it)")
    ap.add_argument("--slice-type-frames", type=int, default=8, help="first N frames for the slice-type check")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="how the model runs while validated (default fp32, whatever the model's own choice)")
    ap.add_argument("--per-clip", action="store_true",
                    help="choose the pass-through QP so that no validation clip, not only their mean, is worse "
                         "in any protected group (scripts/pass_through.py --per-clip)")
    ap.add_argument("--no-pass-through", action="store_true",
                    help="do not set a pass-through QP (by default it is chosen from the frame-QP validation)")
    ap.add_argument("--entry", default=None,
                    help="ship under this manifest entry and file name instead of MODEL_VARIANT (e.g. "
                         "pnp_vcve_fast_high: the default's weights for high-CRF streams, see scripts/rate_switch.py)")
    ap.add_argument("--rd", action="store_true",
                    help="a codec wrapper (neural_wrapper): validate by rate-distortion against plain x264 at CRF "
                         "23/28/33/38 and ship the pre- and post-processor only")
    args = ap.parse_args()
    if args.rd:
        ship_wrapper(args.run, args.val, args.frames)
        return
    cfg = load_config(args.run / "config.yaml")
    model = create_model(cfg.model.name, weights=args.run / "model.safetensors", variant=cfg.model.variant)
    results, full, gate = validate(model, cfg.model.name, str(args.run), args.val, args, args.run / "validation")
    name = args.entry or f"{cfg.model.name}_{cfg.model.variant}"
    target = WEIGHTS / f"{name}.safetensors"
    shutil.copyfile(args.run / "model.safetensors", target)
    entry = {
        "model": cfg.model.name,
        "variant": cfg.model.variant,
        "file": target.name,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "config": model.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pass_through_qp": None if gate["threshold"] < 0 else gate["threshold"],
        "training": training_entry(args.run),
        "validation": validation_entry(args.val, args, results, full, gate),
    }
    old_entry = json.loads((WEIGHTS / "manifest.json").read_text()).get(name, {})
    path = write_entry(name, entry)
    print(f"shipped {target} ({target.stat().st_size / 1e6:.1f} MB) and its entry in {path}")
    if old_entry.get("high_crf"):
        print(f"the switch to {old_entry['high_crf']['entry']} was chosen against the weights just replaced and "
              "is dropped: rerun scripts/rate_switch.py to choose it again")
    for calibration in (old_entry.get("training") or {}).get("calibrations", []):
        print(f"the weights just replaced carried settings calibrated after training, {calibration['settings']}; "
              "the new entry has the run's own: choose them again (e.g. benchmarks/shrink_offset.py) and set them "
              "with scripts/graft_weights.py ENTRY --set KEY=VALUE")


if __name__ == "__main__":
    main()
