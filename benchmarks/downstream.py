"""Plug-and-play, measured: does enhancing first make downstream vision work better on
compressed video? (PnP-VCVE's central claim; issue: downstream.)

Clips from the validation split (``configs/validation_split.yaml``), which no recipe
trains on: the validation clip (Temple) and synthetic-motion clips made by ``prepare
--stills`` from the split's held-out photos, two camera motions each, with their exact
optical flow. Each is encoded with x264 at CRF 25/35/45 (``codecave prepare``, cached in
OUT/data) and every downstream task runs on the Y plane of

- ``original``: the ground-truth frames,
- ``compressed``: the decoded frames,
- ``spp``: FFmpeg's ``spp=quality=4:qp=Q`` on the bitstream, Q swept over 2/4/8/12/16 and
  the best Q per rate point by PSNR-Y over all clips (the classical line),
- each ``--model`` (default: the shipped default) run on the decoded frames and their priors.

Tasks (scored against ground truth that is really known):

1. Optical flow, DIS (medium preset) and Farneback, from frame t to t-1 (from the first
   frame, the intra one, to frame 1): end-point error (pixels, an 8-pixel border left out)
   against the exact flow of the synthetic clips, and against the same method's flow on the
   original frames for Temple (no true flow there); per frame type of frame t.
2. Features, ORB (1000 keypoints) on the same pairs of the synthetic clips: repeatability
   (frame-t keypoints whose true position in the other frame has a keypoint within 2.5 px,
   among those that land outside ORB's 31-pixel edge band) and matching precision
   (cross-checked Hamming matches landing within 3 px of the true position).
3. Super-resolution, 4x: Temple and the first motion of the held-out photos prepared with
   ``--scale 4`` (blur, down-scale, then x264); the low-resolution compressed frames, spp's,
   and each model's enhanced frames (the model run on the low-resolution file as ``codecave
   enhance`` runs it) are up-scaled by bicubic and by the shipped CAVSR (with the file's
   priors), PSNR-Y against the high-resolution ground truth (Y of BT.601 from RGB).

For tasks 1 and 2 the models run on the first N decoded frames of each prepared clip
(``codecave.evaluate.enhance_prepared``, as ``codecave evaluate``); for task 3 on the whole
low-resolution file, as ``codecave enhance`` and ``codecave.plug`` run them. ``spp``'s Q is
chosen by PSNR-Y on these same full-resolution clips (an oracle choice the models do not
get) and used for the low-resolution files too. Differences are paired (same frames).

    python benchmarks/downstream.py --out runs/downstream [--model pnp_vcve] [--frames 16]

Writes OUT/downstream.json (the numbers, the weights' SHA-256 of each model) and
OUT/downstream.md (the tables).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from spp_anchor import QS, spp_luma

CRFS = (25.0, 35.0, 45.0)
MARGIN = 8
#: ORB finds no keypoints this close to the border (its default edgeThreshold).
ORB_EDGE = 31
TYPES = {0: "I", 1: "P", 2: "B"}


# --------------------------------------------------------------------------- data


def _prepare(out: Path, frames: int, sr: bool) -> list[Path]:
    """Datasets (cached) from the validation split: Temple, and its held-out photos under two
    camera motions (one for super-resolution, prepared at 4x in RGB)."""
    import yaml

    from codecave.data.prepare import PrepareSettings, prepare_dataset

    split = yaml.safe_load((ROOT / "configs" / "validation_split.yaml").read_text())
    temple = [str(ROOT / p) for p in split["sequences"] if "temple" in p]
    stills = [str(ROOT / p) for p in split["stills"]]
    plan = ([("sr_sequence", temple, 0, False), ("sr_stills", stills, 0, True)] if sr else
            [("sequence", temple, 0, False), ("stills_a", stills, 0, True), ("stills_b", stills, 1000, True)])
    extra = {"scale": 4, "domain": "rgb"} if sr else {}
    sets = []
    for name, sources, seed, is_stills in plan:
        settings = PrepareSettings(crfs=CRFS, max_frames=frames, still_frames=9, seed=seed, **extra)
        root = out / "data" / name
        result = prepare_dataset(sources, root, settings, workers=1, stills=is_stills)
        if result.failed:
            raise SystemExit(f"prepare failed: {result.failed}")
        sets.append(root)
    return sets


def prepare_sets(out: Path, frames: int) -> list[Path]:
    """The enhancement sets: Temple, and the held-out photos with two camera motions."""
    return _prepare(out, frames, sr=False)


def prepare_sr_sets(out: Path, frames: int) -> list[Path]:
    """4x super-resolution sets: Temple and the held-out photos, first motion."""
    return _prepare(out, frames, sr=True)


def spp_rgb(video: Path, q: int, frames: int, height: int, width: int) -> np.ndarray:
    """RGB ``(frames, H, W, 3)`` of ``video`` through spp (4:2:0 planes to RGB as codecave converts)."""
    import subprocess

    from codecave.codec.convert import planes_to_rgb
    from codecave.codec.priors import YUVPlanes

    cmd = ["ffmpeg", "-loglevel", "error", "-i", str(video), "-vf", f"spp=quality=4:qp={q}",
           "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
    raw = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, dtype=np.uint8)
    size, area = height * width * 3 // 2, height * width
    out = []
    for i in range(frames):
        f = raw[i * size : (i + 1) * size]
        out.append(planes_to_rgb(YUVPlanes(y=f[:area].reshape(height, width),
                                           u=f[area : area + area // 4].reshape(height // 2, width // 2),
                                           v=f[area + area // 4 :].reshape(height // 2, width // 2))))
    return np.stack(out)


def super_resolution(sets: list[Path], models: list[str], spp_q: dict[float, int], frames: int
                     ) -> list[dict[str, object]]:
    """PSNR-Y of 4x bicubic and CAVSR on each kind of low-resolution frames, per frame."""
    import torch

    from codecave.data.prepare import load_clip, load_manifest
    from codecave.enhance import Enhancer
    from codecave.evaluate import bicubic_upsample, variant_crf
    from codecave.metrics.quality import psnr_y
    from codecave.models import create_model
    from codecave.plug import Plugged

    cavsr = Enhancer(create_model("cavsr"))
    enhancers = {m: Enhancer(build(m)) for m in models}
    rows = []
    for root in sets:
        for clip in sorted(load_manifest(root)["clips"]):
            for crf in CRFS:
                variant = f"crf{crf:g}"
                data = load_clip(root, clip, variant)
                n = min(frames, len(data.decoded))
                video = next((root / "clips" / clip / variant).glob("video.*"))
                lr = {"compressed": np.asarray(data.decoded[:n])}
                h, w = lr["compressed"].shape[1:3]
                lr["spp"] = spp_rgb(video, spp_q[crf], n, h, w)
                for name, enhancer in enhancers.items():
                    frames_of = Plugged(lambda f: f, enhancer, frames="rgb").frames_of(video)
                    lr[name] = np.stack([f for _, f in zip(range(n), frames_of)])
                gt = torch.from_numpy(np.asarray(data.gt[:n])).permute(0, 3, 1, 2).float() / 255
                priors = {k: v[:n] for k, v in data.priors.items()}
                for kind, frames_lr in lr.items():
                    x = torch.from_numpy(frames_lr).permute(0, 3, 1, 2).float() / 255
                    bic = psnr_y(bicubic_upsample(x, 4), gt).tolist()
                    sr = cavsr.enhance_clip(frames_lr, priors, variant_crf(data.info, variant))
                    cav = psnr_y(torch.from_numpy(sr).permute(0, 3, 1, 2).float() / 255, gt).tolist()
                    for t in range(n):
                        rows.append({"clip": f"{root.name}/{clip}", "crf": crf, "frame": t, "kind": kind,
                                     "bicubic": bic[t], "cavsr": cav[t]})
                print(f"  SR {root.name}/{clip} {variant}: {n} frames", flush=True)
    return rows


def sr_table(rows: list[dict[str, object]], kinds: list[str]) -> str:
    out = ["**4x super-resolution, PSNR-Y against the high-resolution ground truth (dB)**\n"]
    head = ["frames", *(f"{u}: {k}" for u in ("bicubic", "cavsr") for k in kinds),
            *(f"{u}: {k} vs compressed" for u in ("bicubic", "cavsr") for k in kinds if k != "compressed")]
    out.append("| | " + " | ".join(head) + " |")
    out.append("|---" * (len(head) + 1) + "|")
    for clipset in ("synthetic", "Temple"):
        for crf in CRFS:
            at = [r for r in rows if r["crf"] == crf and ("sequence" in r["clip"]) == (clipset == "Temple")]
            if not at:
                continue
            mean = {(u, k): float(np.mean([r[u] for r in at if r["kind"] == k])) for u in ("bicubic", "cavsr")
                    for k in kinds}
            count = len([r for r in at if r["kind"] == "compressed"])
            cells = [str(count), *(f"{mean[(u, k)]:.3f}" for u in ("bicubic", "cavsr") for k in kinds),
                     *(f"{mean[(u, k)] - mean[(u, 'compressed')]:+.3f}" for u in ("bicubic", "cavsr") for k in kinds
                       if k != "compressed")]
            out.append(f"| {clipset} CRF {crf:g} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def clips_of(sets: list[Path]) -> list[tuple[str, Path, str]]:
    """``(label, dataset, clip)`` for every clip."""
    from codecave.data.prepare import load_manifest

    return [(f"{root.name}/{clip}", root, clip) for root in sets for clip in sorted(load_manifest(root)["clips"])]


# --------------------------------------------------------------------------- tasks


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.1, 0)


FLOWS = {"DIS": dis_flow, "Farneback": farneback_flow}


def epe(flow: np.ndarray, reference: np.ndarray) -> float:
    """Mean end-point error (pixels) inside the border, where the reference is finite."""
    f = flow[MARGIN:-MARGIN, MARGIN:-MARGIN]
    r = reference[MARGIN:-MARGIN, MARGIN:-MARGIN]
    err = np.linalg.norm(f - r, axis=-1)
    return float(err[np.isfinite(err)].mean())


def orb_scores(y_t: np.ndarray, y_prev: np.ndarray, flow_past: np.ndarray) -> tuple[float, float]:
    """(repeatability, matching precision) of ORB from frame t to its neighbour under the
    true flow ``flow_past`` ``(H, W, 2)`` (where frame t's pixels sit in the neighbour);
    keypoints whose true position falls within ORB's edge band of the neighbour are left out."""
    import cv2

    orb = cv2.ORB_create(nfeatures=1000)
    k_t, d_t = orb.detectAndCompute(y_t, None)
    k_p, d_p = orb.detectAndCompute(y_prev, None)
    if not k_t or not k_p or d_t is None or d_p is None:
        return float("nan"), float("nan")
    h, w = y_t.shape
    pts_t = np.array([k.pt for k in k_t], np.float32)
    pts_p = np.array([k.pt for k in k_p], np.float32)
    ix = np.clip(np.round(pts_t).astype(int), 0, [w - 1, h - 1])
    true = pts_t + flow_past[ix[:, 1], ix[:, 0]]
    inside = np.isfinite(true).all(1) & (true[:, 0] >= ORB_EDGE) & (true[:, 0] < w - ORB_EDGE) & \
        (true[:, 1] >= ORB_EDGE) & (true[:, 1] < h - ORB_EDGE)
    dist = np.linalg.norm(true[:, None, :] - pts_p[None, :, :], axis=-1)
    repeat = float((dist[inside].min(1) <= 2.5).mean()) if inside.any() else float("nan")
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d_t, d_p)
    good = [m for m in matches if inside[m.queryIdx]]
    correct = [m for m in good if np.linalg.norm(true[m.queryIdx] - pts_p[m.trainIdx]) <= 3.0]
    precision = len(correct) / len(good) if good else float("nan")
    return repeat, precision


# --------------------------------------------------------------------------- frames


def luma8(packed: np.ndarray) -> np.ndarray:
    """Y planes ``(T, H, W)`` uint8 of packed 8-bit codes."""
    from codecave.grid import unpack_planes

    return np.stack([unpack_planes(c, 8).y for c in packed]).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255**2 / mse) if mse > 0 else float("inf")


def build(spec: str) -> object:
    """A model from ``NAME`` (its shipped weights) or ``NAME=WEIGHTS`` (a .safetensors file or
    a training run folder)."""
    from codecave.models import create_model

    name, _, weights = spec.partition("=")
    return create_model(name, weights=weights or "default")


def weights_sha256(spec: str) -> str | None:
    """SHA-256 of the weights ``spec`` (see :func:`build`) names."""
    from codecave.models.registry import shipped_weights

    name, _, weights = spec.partition("=")
    if weights:
        path = Path(weights)
        path = path / "model.safetensors" if path.is_dir() else path
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return hashlib.sha256(shipped_weights(name)[0].read_bytes()).hexdigest()


def high_crf_weights(spec: str) -> dict[str, object]:
    """For shipped weights with high-CRF weights beside them (the default): their SHA-256 and
    switch point, which the Enhancer follows per clip; else nothing."""
    from codecave.models.registry import shipped_weights, shipped_weights_entry

    name, _, weights = spec.partition("=")
    if weights:
        return {}
    switch = shipped_weights(name)[1].get("high_crf")
    if not switch:
        return {}
    blob = shipped_weights_entry(str(switch["entry"])).read_bytes()
    return {"high_crf_sha256": hashlib.sha256(blob).hexdigest(), "high_crf_from": float(switch["from_crf"])}


def collect(clips: list[tuple[str, Path, str]], models: list[str], frames: int) -> dict[str, object]:
    """Y planes of every kind for every clip and rate point, and the frame types."""
    from codecave.data.prepare import load_clip
    from codecave.enhance import Enhancer
    from codecave.evaluate import enhance_prepared

    enhancers = {m: Enhancer(build(m)) for m in models}
    data: dict[str, object] = {}
    for label, root, clip in clips:
        for crf in CRFS:
            variant = f"crf{crf:g}"
            prepared = load_clip(root, clip, variant)
            n = min(frames, len(prepared.decoded))
            kinds = {"original": luma8(np.asarray(prepared.gt[:n])), "compressed": luma8(np.asarray(prepared.decoded[:n]))}
            for name, enhancer in enhancers.items():
                start = time.perf_counter()
                kinds[name] = luma8(enhance_prepared(enhancer, prepared, n))
                print(f"  {label} {variant} {name}: {n} frames in {time.perf_counter() - start:.1f} s", flush=True)
            video = next((root / "clips" / clip / variant).glob("video.*"))
            h, w = kinds["original"].shape[1:]
            kinds.update({f"spp{q}": spp_luma(video, q, n, h, w) for q in QS})
            flow_path = root / "clips" / clip / "flow.npz"
            truth = None
            if flow_path.exists():
                flows = np.load(flow_path)
                truth = {k: flows[k][:n].transpose(0, 2, 3, 1) for k in ("flow_past", "flow_future")}
            data[f"{label}|{variant}"] = {"kinds": kinds, "types": prepared.priors["frame_type"][:n], "flow": truth,
                                          "crf": crf, "clip": label}
    return data


def best_spp(data: dict[str, object]) -> dict[float, int]:
    """The best spp Q per rate point, by mean PSNR-Y over all clips and frames."""
    best = {}
    for crf in CRFS:
        items = [d for d in data.values() if d["crf"] == crf]
        score = {q: np.mean([psnr(d["kinds"][f"spp{q}"], d["kinds"]["original"]) for d in items]) for q in QS}
        best[crf] = max(score, key=score.get)
    return best


def measure(data: dict[str, object], models: list[str]) -> dict[str, object]:
    best = best_spp(data)
    columns = ["original", "compressed", "spp", *models]
    rows: list[dict[str, object]] = []
    for d in data.values():
        kinds = dict(d["kinds"])
        kinds["spp"] = kinds[f"spp{best[d['crf']]}"]
        n = len(kinds["original"])
        for t in range(n):
            ftype = TYPES.get(int(d["types"][t]), "?")
            base = {"clip": d["clip"], "crf": d["crf"], "frame": t, "type": ftype}
            psnrs = {c: psnr(kinds[c][t], kinds["original"][t]) for c in columns if c != "original"}
            rows.append({**base, "task": "psnr_y", **psnrs})
            # Frame t against t-1 (the flow to the past); the first frame, the intra one,
            # against frame 1 (the flow to the future), so that I frames are scored too.
            other, direction = (t - 1, "flow_past") if t else (1, "flow_future")
            true = d["flow"][direction][t] if d["flow"] is not None else None
            for method, fn in FLOWS.items():
                reference = true if true is not None else fn(kinds["original"][t], kinds["original"][other])
                errs = {c: epe(fn(kinds[c][t], kinds[c][other]), reference) for c in columns
                        if true is not None or c != "original"}
                rows.append({**base, "task": f"epe_{method}", **errs})
            if true is not None:
                scores = {c: orb_scores(kinds[c][t], kinds[c][other], true) for c in columns}
                rows.append({**base, "task": "orb_repeatability", **{c: s[0] for c, s in scores.items()}})
                rows.append({**base, "task": "orb_precision", **{c: s[1] for c, s in scores.items()}})
    return {"rows": rows, "spp_q": {f"{k:g}": v for k, v in best.items()}, "columns": columns}


def tables(result: dict[str, object]) -> str:
    """Markdown: per task, mean per rate point (and per frame type for the flow), with the
    change against the compressed frames."""
    rows, columns = result["rows"], result["columns"]
    names = {"psnr_y": "PSNR-Y (dB, higher is better)", "epe_DIS": "DIS optical flow, end-point error (px, lower is better)",
             "epe_Farneback": "Farneback optical flow, end-point error (px, lower is better)",
             "orb_repeatability": "ORB keypoint repeatability (higher is better)",
             "orb_precision": "ORB matching precision (higher is better)"}
    out = []
    for task, title in names.items():
        task_rows = [r for r in rows if r["task"] == task]
        if not task_rows:
            continue
        shown = [c for c in columns if any(c in r for r in task_rows)]
        groups: list[tuple[str, list[dict[str, object]]]] = []
        for clipset in ("synthetic", "Temple"):
            chosen = [r for r in task_rows if ("temple" in r["clip"]) == (clipset == "Temple")]
            if not chosen:
                continue
            for crf in CRFS:
                at = [r for r in chosen if r["crf"] == crf]
                groups.append((f"{clipset} CRF {crf:g}", at))
                if task.startswith("epe"):
                    for ftype in ("I", "P", "B"):
                        typed = [r for r in at if r["type"] == ftype]
                        if typed:
                            groups.append((f"{clipset} CRF {crf:g} {ftype} ({len(typed)})", typed))
        out.append(f"**{title}**\n")
        models = [c for c in shown if c not in ("original", "compressed", "spp")]
        head = ["frames", *shown, *(f"{c} vs compressed" for c in ["spp", *models])]
        out.append("| | " + " | ".join(head) + " |")
        out.append("|---" * (len(head) + 1) + "|")
        for label, group in groups:
            mean = {c: float(np.nanmean([r[c] for r in group if c in r] or [np.nan])) for c in shown}
            paired = {c: float(np.nanmean([r[c] - r["compressed"] for r in group])) for c in ["spp", *models]}
            cells = [str(len(group)), *("—" if np.isnan(mean[c]) else f"{mean[c]:.3f}" for c in shown),
                     *(f"{paired[c]:+.3f}" for c in ["spp", *models])]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def summary(result: dict[str, object], model: str) -> str:
    """The README's table: change against the compressed frames, synthetic / Temple, per rate point."""
    rows = result["rows"]

    def delta(task: str, column: str, crf: float, temple: bool | None) -> float:
        at = [r for r in rows if r["task"] == task and r["crf"] == crf
              and (temple is None or ("temple" in r["clip"]) == temple)]
        return float(np.nanmean([r[column] - r["compressed"] for r in at]))

    def sr_delta(upscaler: str, column: str, crf: float, temple: bool) -> float:
        sr = result.get("super_resolution", [])
        at = [r for r in sr if r["crf"] == crf and ("sequence" in r["clip"]) == temple]
        by = {(r["clip"], r["frame"], r["kind"]): r[upscaler] for r in at}
        return float(np.mean([by[(c, f, column)] - by[(c, f, "compressed")] for c, f, k in by if k == column]))

    lines = ["| | " + " | ".join(f"CRF {c:g}" for c in CRFS) + " |", "|---" * (len(CRFS) + 1) + "|"]
    specs = [("PSNR-Y, synthetic / Temple", "psnr_y", " dB", 2), ("DIS flow EPE, synthetic / Temple", "epe_DIS", " px", 3),
             ("Farneback EPE, synthetic / Temple", "epe_Farneback", " px", 3)]
    from codecave.models.registry import DEFAULT_MODEL

    for column in (model, "spp"):
        name = ("default" if model == DEFAULT_MODEL else model) if column == model else "`spp`"
        for label, task, unit, digits in specs:
            cells = [f"{delta(task, column, c, False):+.{digits}f} / {delta(task, column, c, True):+.{digits}f}{unit}"
                     for c in CRFS]
            lines.append(f"| {label}, {name} | " + " | ".join(cells) + " |")
        cells = [f"{delta('orb_repeatability', column, c, None):+.3f} / {delta('orb_precision', column, c, None):+.3f}"
                 for c in CRFS]
        lines.append(f"| ORB repeatability / matching precision, {name} | " + " | ".join(cells) + " |")
        if result.get("super_resolution"):
            for upscaler in ("bicubic", "cavsr"):
                cells = [f"{sr_delta(upscaler, column, c, False):+.3f} / {sr_delta(upscaler, column, c, True):+.3f} dB"
                         for c in CRFS]
                lines.append(f"| 4x SR PSNR-Y, {'CAVSR' if upscaler == 'cavsr' else 'bicubic'}, synthetic / Temple, "
                             f"{name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Per clip (mean change of each of the {len(result['clips'])} clips' frames), {model}: smallest .. largest")
    lines.append("")
    lines.append("| | " + " | ".join(f"CRF {c:g}" for c in CRFS) + " |")
    lines.append("|---" * (len(CRFS) + 1) + "|")
    for task, label in (("psnr_y", "PSNR-Y (dB)"), ("epe_DIS", "DIS EPE (px)"), ("epe_Farneback", "Farneback EPE (px)"),
                        ("orb_precision", "ORB matching precision")):
        cells = []
        for crf in CRFS:
            per_clip = [float(np.nanmean([r[model] - r["compressed"] for r in rows
                                          if r["task"] == task and r["crf"] == crf and r["clip"] == clip]))
                        for clip in result["clips"] if any(r["clip"] == clip and r["task"] == task for r in rows)]
            better = sum((v > 0) == (task in ("psnr_y", "orb_precision")) for v in per_clip if v != 0)
            cells.append(f"{min(per_clip):+.3f} .. {max(per_clip):+.3f} ({better}/{len(per_clip)} better)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        pass

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "downstream")
    ap.add_argument("--model", action="append", default=None,
                    help="NAME (shipped weights) or NAME=WEIGHTS (a .safetensors file or a run folder), repeatable; "
                         "any registered enhancement model (default: the shipped default)")
    ap.add_argument("--frames", type=int, default=16, help="frames of Temple (the synthetic clips have 9)")
    ap.add_argument("--sr-frames", type=int, default=8, help="frames of each super-resolution clip")
    ap.add_argument("--no-sr", action="store_true", help="leave super-resolution out")
    ap.add_argument("--summary", action="store_true",
                    help="only print the README's table from OUT/downstream.json (no measuring)")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg not found (apt-get install ffmpeg): spp is the classical line")
    from codecave.models.registry import DEFAULT_MODEL

    models = args.model or [DEFAULT_MODEL]
    if args.summary:
        print(summary(json.loads((args.out / "downstream.json").read_text()),
                      DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]))
        return
    from codecave.errors import CodecaveError

    for spec in models:  # refuse a model that cannot run before ten minutes of work
        try:
            model = build(spec)
        except CodecaveError as exc:
            sys.exit(f"--model {spec}: {exc}")
        if getattr(model, "scale", 1) != 1:
            sys.exit(f"--model {spec}: a {model.scale}x super-resolution model, not an enhancement model "
                     "(CAVSR is measured as the super-resolution task's up-scaler)")
    start = time.perf_counter()
    clips = clips_of(prepare_sets(args.out, args.frames))
    data = collect(clips, models, args.frames)
    result = measure(data, models)
    if not args.no_sr:
        spp_q = {float(k): v for k, v in result["spp_q"].items()}
        result["super_resolution"] = super_resolution(prepare_sr_sets(args.out, args.sr_frames), models, spp_q,
                                                      args.sr_frames)
    hashed = [*models, *([] if args.no_sr else ["cavsr"])]
    result.update({"models": {m: {"weights_sha256": weights_sha256(m), **high_crf_weights(m)} for m in hashed},
                   "default": DEFAULT_MODEL,
                   "clips": [c[0] for c in clips], "crfs": list(CRFS), "seconds": round(time.perf_counter() - start, 1),
                   "machine": platform.processor() or platform.machine(),
                   "command": "python benchmarks/downstream.py " + " ".join(sys.argv[1:])})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "downstream.json").write_text(json.dumps(result, indent=1, default=float))
    text = tables(result)
    if "super_resolution" in result:
        text += "\n" + sr_table(result["super_resolution"], ["compressed", "spp", *models])
    head = (f"Clips: {', '.join(result['clips'])}; x264 CRF {', '.join(f'{c:g}' for c in CRFS)}; spp Q per rate "
            f"point {result['spp_q']}; weights SHA-256 (shipped): "
            + ", ".join(f"{'default: ' if m == DEFAULT_MODEL else ''}{m} {v['weights_sha256']}"
                        + (f" (high-CRF weights from CRF {v['high_crf_from']:g}: {v['high_crf_sha256']})"
                           if "high_crf_sha256" in v else "")
                        for m, v in result["models"].items()) + "\n")
    brief = summary(result, DEFAULT_MODEL if DEFAULT_MODEL in models else models[0])
    (args.out / "downstream.md").write_text(head + "\nChange against the compressed frames (the README's table):\n\n"
                                            + brief + "\n" + text)
    print(head)
    print(text)
    print(brief)


if __name__ == "__main__":
    main()
