"""Rate-distortion evaluation: ``codecave evaluate --rd``.

For each source clip and rate point, the plain codec (the anchor) and the codec with a
model around it are run for real (files written, then decoded by codecave's reader),
and bitrate is set against PSNR-Y, SSIM-Y, MS-SSIM-Y and VMAF, all on the Y plane of
the YUV file. BD-rates (:mod:`codecave.metrics.bdrate`) are computed per clip against
the plain codec at the same rate points and averaged over clips (SPECS 3.6 k).

Arms:

* ``plain``: the codec alone (anchor).
* with a neural wrapper: ``wrapped`` (pre-processor, codec, post-processor), and the two
  halves of the same jointly trained pair, ``pre_only`` and ``post_only`` (these are
  not the separately trained arms of the paper's Table 3; see
  ``benchmarks/wrapper_claims.py`` for those).
* with any other enhancement model: ``enhanced`` (the codec's output restored by the
  model: a post-processor).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.priors import YUVPlanes
from codecave.errors import ConfigError, DatasetError
from codecave.metrics.bdrate import BD_METHOD, bd_rate

log = logging.getLogger(__name__)

#: Quality metrics of every rate point, all on Y.
METRICS = ("psnr_y", "ssim_y", "ms_ssim_y", "vmaf")
#: Raw bitstream extension per codec: the file size is the bitstream's size.
_EXTENSIONS = {"libx264": ".264", "libx265": ".265", "libsvtav1": ".ivf"}


@dataclass
class RDPoint:
    """One arm at one rate point of one clip.

    Attributes:
        point: the rate-control value (CRF or QP).
        bpp: bits per luma pixel per frame of the whole bitstream.
        kbps: bitrate at the clip's frame rate (25 fps for prepared clips).
        psnr_y, ssim_y, ms_ssim_y, vmaf: means over frames (VMAF clipped to [0, 100]).
    """

    point: float
    bpp: float
    kbps: float
    psnr_y: float
    ssim_y: float
    ms_ssim_y: float
    vmaf: float


@dataclass
class RDReport:
    """Rate-distortion curves and BD-rates.

    Attributes:
        codec: the encoder's settings (as a dict), the rate control's value left out.
        rate_control: ``crf`` or ``qp``.
        points: the rate points.
        curves: ``{clip: {arm: [RDPoint, ...]}}``.
        frames: frames scored per clip.
        model: what ran around the codec.
    """

    codec: dict[str, object]
    rate_control: str
    points: list[float]
    curves: dict[str, dict[str, list[RDPoint]]] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    model: dict[str, object] = field(default_factory=dict)

    @property
    def arms(self) -> list[str]:
        """Arms other than the anchor, in the order they were run."""
        first = next(iter(self.curves.values()), {})
        return [a for a in first if a != "plain"]

    def bd_rates(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{arm: {metric: {clip: BD-rate %, ..., "mean": mean over clips}}}`` against ``plain``
        (NaN where curves do not overlap; the mean is over the finite ones)."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for arm in self.arms:
            out[arm] = {}
            for metric in METRICS:
                per_clip = {}
                for clip, arms in self.curves.items():
                    a, t = arms["plain"], arms[arm]
                    per_clip[clip] = bd_rate([p.bpp for p in a], [getattr(p, metric) for p in a],
                                             [p.bpp for p in t], [getattr(p, metric) for p in t])
                finite = [v for v in per_clip.values() if math.isfinite(v)]
                per_clip["mean"] = float(np.mean(finite)) if finite else float("nan")
                out[arm][metric] = per_clip
        return out

    def to_json(self) -> dict[str, object]:
        return {"codec": self.codec, "rate_control": self.rate_control, "points": self.points,
                "frames": self.frames, "model": self.model, "bd_method": BD_METHOD,
                "metric": "Y plane of the YUV 4:2:0 file; VMAF by vmaf-torch (agreement with libvmaf unmeasured)",
                "curves": {c: {a: [asdict(p) for p in pts] for a, pts in arms.items()} for c, arms in self.curves.items()},
                "bd_rate": self.bd_rates()}

    def to_markdown(self) -> str:
        """BD-rate table (mean over clips, then per clip) and the curves."""
        bd = self.bd_rates()
        title = (f"BD-rate (%) against the plain codec ({self.codec.get('codec')}, {self.rate_control} "
                 f"{', '.join(f'{p:g}' for p in self.points)}; {BD_METHOD}; negative = fewer bits), mean over "
                 f"{len(self.curves)} clips:")
        lines = [title, "",
                 "| arm | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for arm in self.arms:
            lines.append(f"| {arm} | " + " | ".join(f"{bd[arm][m]['mean']:+.2f}" for m in METRICS) + " |")
        lines += ["", "Per clip:", "", "| clip | arm | " + " | ".join(METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for clip in self.curves:
            for arm in self.arms:
                lines.append(f"| {clip} | {arm} | " + " | ".join(f"{bd[arm][m][clip]:+.2f}" for m in METRICS) + " |")
        lines += ["", "Curves:", "", "| clip | arm | point | bpp | " + " | ".join(METRICS) + " |",
                  "|---|---|---|---|" + "---|" * len(METRICS)]
        for clip, arms in self.curves.items():
            for arm, pts in arms.items():
                for p in pts:
                    lines.append(f"| {clip} | {arm} | {p.point:g} | {p.bpp:.4f} | {p.psnr_y:.2f} | {p.ssim_y:.4f} | "
                                 f"{p.ms_ssim_y:.4f} | {p.vmaf:.2f} |")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Rate-distortion curves, one row per clip and one column per metric (bpp on a log axis)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        clips = list(self.curves)
        fig, axes = plt.subplots(len(clips), len(METRICS), figsize=(4 * len(METRICS), 3 * len(clips)), squeeze=False)
        for r, clip in enumerate(clips):
            for c, metric in enumerate(METRICS):
                ax = axes[r][c]
                for arm, pts in self.curves[clip].items():
                    ax.plot([p.bpp for p in pts], [getattr(p, metric) for p in pts], "o-" if arm == "plain" else ".-",
                            label=arm, color="black" if arm == "plain" else None)
                ax.set_xscale("log")
                ax.set_title(f"{clip}: {metric}", fontsize=9)
                ax.set_xlabel("bits per pixel")
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=90)
        plt.close(fig)
        return out


def score_pictures(decoded: Sequence[YUVPlanes], reference: Sequence[YUVPlanes]) -> dict[str, float]:
    """PSNR-Y, SSIM-Y, MS-SSIM-Y and VMAF of a decoded clip against its source, means over
    frames (PSNR of identical frames is infinite and left out of the mean).

    Raises:
        ValueError: the clips differ in length or size.
    """
    from codecave.losses import ms_ssim_y
    from codecave.metrics.quality import mean_finite, psnr_plane, ssim_plane
    from codecave.metrics.vmaf import vmaf_y

    if len(decoded) != len(reference):
        raise ValueError(f"{len(decoded)} decoded frames for {len(reference)} source frames")
    depth = reference[0].bit_depth
    top = float((1 << depth) - 1)
    dist = np.stack([p.y for p in decoded]).astype(np.float64)
    ref = np.stack([p.y for p in reference]).astype(np.float64)
    if dist.shape != ref.shape:
        raise ValueError(f"decoded Y {dist.shape[1:]} is not the source's {ref.shape[1:]}")
    d, r = torch.from_numpy(dist), torch.from_numpy(ref)
    psnr = psnr_plane(d, r, top).tolist()
    ssim = ssim_plane(d, r, top).tolist()
    ms = ms_ssim_y((d / top).float(), (r / top).float()).tolist() if min(dist.shape[1:]) > 160 else [float("nan")]
    return {"psnr_y": mean_finite(psnr), "ssim_y": float(np.mean(ssim)), "ms_ssim_y": float(np.mean(ms)),
            "vmaf": float(np.mean(vmaf_y(dist, ref, depth)))}


def dataset_sources(root: str | os.PathLike[str], clips: Sequence[str] | None = None,
                    frames: int | None = None) -> dict[str, list[YUVPlanes]]:
    """The ground truth of a prepared ``yuv420`` dataset's clips as source pictures.

    Args:
        root: dataset folder (``codecave prepare --domain yuv420``).
        clips: clip names (default: all).
        frames: the first N frames of each clip (default: all).

    Raises:
        DatasetError: not a yuv420 dataset, or an unknown clip.
    """
    from codecave.data.prepare import dataset_domain, dataset_variants, load_clip, load_manifest
    from codecave.grid import unpack_planes

    manifest = load_manifest(root)
    if dataset_domain(manifest) != "yuv420":
        raise DatasetError(f"{root}: rate-distortion evaluation reads yuv420 datasets (prepare --domain yuv420)")
    names = list(clips) if clips else list(manifest["clips"])
    unknown = sorted(set(names) - set(manifest["clips"]))
    if unknown:
        raise DatasetError(f"{root}: no clip(s) {unknown}; it has {sorted(manifest['clips'])}")
    variant = dataset_variants(manifest)[0]
    return {n: [unpack_planes(f) for f in load_clip(root, n, variant).gt[:frames]] for n in names}


def _decode(path: Path, enhancer: object | None) -> list[YUVPlanes]:
    from codecave.codec.reader import open_video

    with open_video(path, priors=enhancer is not None) as reader:
        if enhancer is None:
            return [f.planes for f in reader]
        return list(enhancer.stream(reader, output="yuv420"))


def _point(q: float, path: Path, decoded: list[YUVPlanes], source: list[YUVPlanes], fps: float) -> RDPoint:
    bits = 8 * path.stat().st_size
    return RDPoint(float(q), bits / (source[0].y.size * len(source)), bits * fps / len(source) / 1000,
                   **score_pictures(decoded, source))


def rate_distortion(clips: dict[str, list[YUVPlanes]], settings: EncodeSettings, points: Sequence[float],
                    rate_control: str = "crf", model: nn.Module | None = None, device: str = "auto",
                    work_dir: str | os.PathLike[str] | None = None, fps: float = 25.0,
                    progress: Callable[[str], None] | None = None) -> RDReport:
    """Rate-distortion curves of the plain codec and of the codec with ``model`` around it.

    Args:
        clips: source pictures by clip name (8-bit 4:2:0, even sides).
        settings: the encoder and its settings; ``crf``/``qp`` are set per point.
        points: rate-control values (at least 4 for BD-rates), e.g. x264 CRF 23, 28, 33, 38.
        rate_control: ``crf`` or ``qp``.
        model: a neural wrapper (pre- and post-processor), any enhancement model (scored
            as a post-processor), or None (the plain codec only).
        device: where the model runs.
        work_dir: where bitstreams are written (default: a temporary folder, removed).
        fps: frame rate for kbps.
        progress: called with a short message per clip and point.

    Returns:
        An :class:`RDReport`.

    Raises:
        ConfigError: an unknown rate control or fewer than 4 points.
        EncoderError: the encoder failed.
    """
    from codecave.enhance import EnhanceOptions, Enhancer
    from codecave.wrap import preprocess_planes

    if rate_control not in ("crf", "qp"):
        raise ConfigError(f"rate control {rate_control!r}: use crf or qp")
    if len(points) < 4:
        raise ConfigError(f"{len(points)} rate points: BD-rates need at least 4")
    wrapper = model is not None and hasattr(model, "preprocess")
    enhancer = None if model is None else Enhancer(model, EnhanceOptions(device=device, pass_through_qp=-1))
    base = {k: v for k, v in settings.as_dict().items() if k not in ("crf", "qp")}
    report = RDReport(codec=base, rate_control=rate_control, points=[float(p) for p in points],
                      model={"name": type(model).__name__, "variant": getattr(model, "variant", None)} if model else {})
    ext = _EXTENSIONS.get(settings.encoder, ".mkv")
    with tempfile.TemporaryDirectory(prefix="codecave-rd-") as tmp:
        folder = Path(work_dir) if work_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name, source in clips.items():
            if not source:
                raise DatasetError(f"{name}: no frames")
            report.frames[name] = len(source)
            pre = list(preprocess_planes(model, source, device)) if wrapper else None
            curves: dict[str, list[RDPoint]] = {"plain": []}
            for q in points:
                if progress:
                    progress(f"{name} {rate_control} {q:g}")
                s = settings.with_(crf=float(q), qp=None) if rate_control == "crf" else settings.with_(qp=float(q), crf=None)

                plain = folder / f"{name}_{rate_control}{q:g}{ext}"
                encode_frames(source, plain, s)
                runs = [("plain", plain, None)]
                if wrapper:
                    wrapped = folder / f"{name}_{rate_control}{q:g}_pre{ext}"
                    encode_frames(pre, wrapped, s)
                    runs += [("wrapped", wrapped, enhancer), ("pre_only", wrapped, None), ("post_only", plain, enhancer)]
                elif enhancer is not None:
                    runs.append(("enhanced", plain, enhancer))
                for arm, path, post in runs:
                    curves.setdefault(arm, []).append(_point(q, path, _decode(path, post), source, fps))
            report.curves[name] = curves
    return report


def write_rd_report(report: RDReport, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``rd.json``, ``rd.md`` and ``rd.png`` into ``out``; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "rd.json", "markdown": folder / "rd.md", "plot": folder / "rd.png"}
    paths["json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
    paths["markdown"].write_text(report.to_markdown() + "\n")
    report.plot(paths["plot"])
    return paths


__all__ = ["METRICS", "RDPoint", "RDReport", "dataset_sources", "rate_distortion", "score_pictures", "write_rd_report"]
