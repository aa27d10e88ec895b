"""Evaluate an enhancement model on prepared clips: PSNR/SSIM-Y in and out.

For every clip and rate point of a prepared dataset (``codecave prepare ... --crf
15,25,35,18,28,38``), the decoded frames are enhanced with their priors and both
the input and the output are scored against the ground truth on Y
(:mod:`codecave.metrics.quality`): the Y plane of the YUV file for ``yuv420``
datasets (with PSNR-YUV 6:1:1), Y computed from RGB for ``rgb`` ones; every report
says which. Results come as JSON, a Markdown table and a
plot of per-frame PSNR with frame types marked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from codecave.codec.convert import planes_to_rgb, rgb_to_yuv420_like_encoder
from codecave.data.dataset import variant_crf
from codecave.data.prepare import PreparedClip, dataset_domain, dataset_variants, load_clip, load_manifest
from codecave.enhance import Enhancer
from codecave.errors import DatasetError
from codecave.grid import luma, pack_planes, peak, unpack_planes
from codecave.metrics.quality import mean_finite, psnr_y, psnr_yuv_packed, ssim_plane, ssim_y

log = logging.getLogger(__name__)

_TYPE_NAMES = "IPB"
#: What "Y" means in a report.
METRIC_YUV = "Y plane of the YUV 4:2:0 file (PSNR-YUV weighted 6:1:1 beside it)"
METRIC_RGB = "Y of BT.601 computed from RGB"


@dataclass
class ClipScore:
    """Scores of one clip at one rate point.

    Attributes:
        clip, variant: names in the prepared dataset.
        crf: sequence CRF the model was given.
        frame_types: ``"IBBP..."`` in display order.
        frame_qp: per-frame QP from the bitstream (NaN where unknown).
        psnr_in, psnr_out, ssim_in, ssim_out: per-frame values.
        seconds: time spent enhancing.
    """

    clip: str
    variant: str
    crf: float
    frame_types: str
    psnr_in: list[float]
    psnr_out: list[float]
    ssim_in: list[float]
    ssim_out: list[float]
    seconds: float
    psnr_yuv_in: list[float] = field(default_factory=list)
    psnr_yuv_out: list[float] = field(default_factory=list)
    frame_qp: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Means and deltas over frames (PSNR-YUV 6:1:1 too for YUV datasets)."""
        p_in, p_out = mean_finite(self.psnr_in), mean_finite(self.psnr_out)
        s_in, s_out = float(np.mean(self.ssim_in)), float(np.mean(self.ssim_out))
        out = {"psnr_in": p_in, "psnr_out": p_out, "delta_psnr": p_out - p_in,
               "ssim_in": s_in, "ssim_out": s_out, "delta_ssim": s_out - s_in}
        if self.psnr_yuv_in:
            y_in, y_out = mean_finite(self.psnr_yuv_in), mean_finite(self.psnr_yuv_out)
            out.update(psnr_yuv_in=y_in, psnr_yuv_out=y_out, delta_psnr_yuv=y_out - y_in)
        return out


@dataclass
class EvalReport:
    """Scores of a model over clips and rate points.

    Attributes:
        model: description of the model evaluated.
        mode: ``"frame QP"`` or ``"slice type"`` (what the frame-wise generator saw).
        scores: one entry per clip and rate point.
    """

    model: dict[str, object]
    mode: str
    scores: list[ClipScore] = field(default_factory=list)
    metric: str = METRIC_RGB
    scale: int = 1

    def by_variant(self) -> dict[str, dict[str, float]]:
        """Mean of the per-clip summaries for each rate point, in input order."""
        out: dict[str, dict[str, float]] = {}
        for variant in dict.fromkeys(s.variant for s in self.scores):
            rows = [s.summary() for s in self.scores if s.variant == variant]
            out[variant] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        return out

    def to_json(self) -> dict[str, object]:
        """Everything, per frame included."""
        return {"model": self.model, "mode": self.mode, "metric": self.metric, "scale": self.scale,
                "input": self.input_name, "mean": self.by_variant(),
                "clips": [{**asdict(s), **s.summary()} for s in self.scores]}

    @property
    def input_name(self) -> str:
        """What the "in" scores are: the decoded frames, or their bicubic up-sampling (SR)."""
        return f"bicubic {self.scale}x of the decoded frames" if self.scale > 1 else "the decoded frames"

    def to_markdown(self) -> str:
        """A table per clip and rate point, then the means."""
        yuv = self.metric == METRIC_YUV
        name = "bicubic" if self.scale > 1 else "in"
        lines = [f"Model: {self.model.get('name')} ({self.model.get('weights')}); frame-wise input: {self.mode}",
                 f"Scored on: {self.metric}; \"{name}\" is {self.input_name}"
                 + (f", against the {self.scale}x ground truth" if self.scale > 1 else ""), "",
                 f"| clip | rate point | CRF | frames | PSNR-Y {name} | PSNR-Y out | ΔPSNR | SSIM-Y {name} | "
                 "SSIM-Y out | ΔSSIM |"
                 + (" ΔPSNR-YUV |" if yuv else ""),
                 "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if yuv else "")]

        def tail(m: dict[str, float]) -> str:
            return f" {m['delta_psnr_yuv']:+.3f} |" if yuv and "delta_psnr_yuv" in m else ""

        for s in self.scores:
            m = s.summary()
            lines.append(f"| {s.clip} | {s.variant} | {s.crf:g} | {len(s.psnr_in)} | {m['psnr_in']:.3f} | "
                         f"{m['psnr_out']:.3f} | {m['delta_psnr']:+.3f} | {m['ssim_in']:.4f} | {m['ssim_out']:.4f} | "
                         f"{m['delta_ssim']:+.4f} |" + tail(m))
        for variant, m in self.by_variant().items():
            lines.append(f"| **mean** | {variant} | | | {m['psnr_in']:.3f} | {m['psnr_out']:.3f} | "
                         f"**{m['delta_psnr']:+.3f}** | {m['ssim_in']:.4f} | {m['ssim_out']:.4f} | "
                         f"{m['delta_ssim']:+.4f} |" + tail(m))
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Per-frame PSNR-Y, input vs output, one panel per clip and rate point; I/P/B marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(self.scores)
        fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), squeeze=False)
        markers = {"I": ("s", "tab:red"), "P": ("o", "tab:blue"), "B": ("^", "tab:green")}
        for ax, s in zip(axes[:, 0], self.scores):
            x = np.arange(len(s.psnr_in))
            ax.plot(x, s.psnr_in, color="0.6", lw=1,
                    label=f"bicubic {self.scale}x" if self.scale > 1 else "input (decoded)")
            ax.plot(x, s.psnr_out, color="black", lw=1.2,
                    label="output (super-resolved)" if self.scale > 1 else "output (enhanced)")
            for kind, (marker, color) in markers.items():
                idx = [i for i, t in enumerate(s.frame_types) if t == kind]
                if idx:
                    ax.scatter(idx, [s.psnr_out[i] for i in idx], marker=marker, color=color, s=18, zorder=3,
                               label=f"{kind} frame")
            ax.set_title(f"{s.clip} {s.variant} (CRF {s.crf:g}): ΔPSNR {s.summary()['delta_psnr']:+.2f} dB",
                         fontsize=9)
            ax.set_ylabel("PSNR-Y (dB)")
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("frame (display order)")
        axes[0, 0].legend(fontsize=7, ncol=5, loc="lower right")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


#: "High quality" for the do-no-harm rule: sequences at or below this CRF...
PROTECTED_CRF = 15.0
#: ...and frames at or below this QP must not get worse.
PROTECTED_QP = 22.0


def choose_rate_switch(low: dict[str, dict[str, float]], high: dict[str, dict[str, float]]) -> float | None:
    """Where a model's high-CRF weights take over from its main ones, from validation.

    Args:
        low, high: per rate point (``"crf35"``...), per validation clip, the two weight
            sets' ΔPSNR-Y (dB) on the same frames with pass-through off.

    Returns:
        The lowest validated CRF from which the high-CRF weights gain at least as much as
        the main ones on every validation clip, at that CRF and every validated CRF above
        it (streams at or above it get them), or None where they are not ahead on every
        clip at the highest validated CRF.

    Raises:
        DatasetError: no CRF rate point is scored for both on the same clips.
    """
    crfs = sorted(float(v.removeprefix("crf")) for v in set(low) & set(high)
                  if v.startswith("crf") and set(low[v]) == set(high[v]) and low[v])
    if not crfs:
        raise DatasetError("no CRF rate point is scored for both weight sets on the same clips")
    switch = None
    for c in reversed(crfs):
        key = f"crf{c:g}"
        if any(high[key][clip] < low[key][clip] for clip in low[key]):
            break
        switch = c
    return switch


def choose_pass_through(report: EvalReport, protected_crf: float = PROTECTED_CRF,
                        protected_qp: float = PROTECTED_QP, per_stream: bool = False,
                        per_clip: bool = False) -> dict[str, object]:
    """The pass-through threshold a model's validation supports, from per-frame 8-bit gains.

    The report must be of the model with pass-through off. Frames whose QP (the
    sequence CRF where unknown) is at or below a threshold ``T`` would be passed through
    (gain exactly 0). The protected frames are every frame of a rate point with sequence
    CRF <= ``protected_crf`` and the frames of other rate points with QP <= ``protected_qp``;
    they form groups: each protected rate point by frame type, and the low-QP frames of
    the others by frame type. Among thresholds for which every group is on average not
    worse than the input, the one with the largest total gain over all frames is chosen
    (ties: the lowest); -1 means no pass-through is needed. With ``per_stream`` (luma
    models, which hold back whole streams: :meth:`codecave.enhance.Enhancer.holds_back`)
    every frame counts at its rate point's sequence QP/CRF instead of its own QP. With
    ``per_clip`` each group is also split by clip (``"temple crf12 B"``): no validation clip
    may get worse on average in any protected group, not only their mean.

    Returns:
        ``threshold``; ``by_qp``: per integer QP, frames and mean ΔPSNR-Y;
        ``gain_before`` / ``gain_after``: mean ΔPSNR-Y per rate point without and with it;
        ``protected``: mean ΔPSNR-Y of each protected group (``"crf15 I"``, ``"QP<=22 P"``...), with it.
    """
    rows = []  # (qp, delta, crf, type, variant, clip)
    for s in report.scores:
        qps = s.frame_qp if s.frame_qp and not per_stream else [float("nan")] * len(s.psnr_in)
        for q, a, b, kind in zip(qps, s.psnr_in, s.psnr_out, s.frame_types):
            if np.isfinite(a) and np.isfinite(b):
                rows.append((s.crf if not np.isfinite(q) else q, b - a, s.crf, kind, s.variant, s.clip))
    if not rows:
        raise DatasetError("the report holds no scored frames")
    qp = np.array([r[0] for r in rows])
    delta = np.array([r[1] for r in rows])
    groups: dict[str, list[int]] = {}
    for i, (q, _, crf, kind, variant, clip) in enumerate(rows):
        where = f"{clip} " if per_clip else ""
        if crf <= protected_crf:
            groups.setdefault(f"{where}{variant} {kind}", []).append(i)
        elif q <= protected_qp:
            groups.setdefault(f"{where}QP<={protected_qp:g} {kind}", []).append(i)
    protected = [np.array(idx) for idx in groups.values()]

    def after(t: float) -> np.ndarray:
        return np.where(qp <= t, 0.0, delta)

    best, best_gain = None, -np.inf
    for t in [-1.0, *np.unique(qp)]:
        d = after(t)
        feasible = all(d[idx].mean() >= 0 for idx in protected)
        if feasible and d.sum() > best_gain + 1e-12:
            best, best_gain = float(t), d.sum()
    if best is None:  # cannot happen: passing every protected frame through makes them exactly 0
        best = float(max(qp[idx].max() for idx in protected))
    variants = list(dict.fromkeys(r[4] for r in rows))
    by_variant = np.array([r[4] for r in rows])
    chosen = after(best)
    return {
        "threshold": best,
        "by_qp": {f"{int(q)}": {"frames": int((np.floor(qp) == q).sum()), "delta_psnr": float(delta[np.floor(qp) == q].mean())}
                  for q in np.unique(np.floor(qp))},
        "gain_before": {v: float(delta[by_variant == v].mean()) for v in variants},
        "gain_after": {v: float(chosen[by_variant == v].mean()) for v in variants},
        "protected": {name: float(chosen[idx].mean()) for name, idx in zip(groups, protected)},
    }


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float().div(255)


def bicubic_upsample(frames: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical baseline of super-resolution: bicubic up-sampling (Keys, a = -0.75, as
    PyTorch and OpenCV; pixel centres aligned), rounded to 8 bits.

    Args:
        frames: ``(N, 3, h, w)`` RGB in [0, 1].
        scale: up-sampling factor.

    Returns:
        ``(N, 3, scale h, scale w)`` in [0, 1] on the 8-bit grid.
    """
    up = torch.nn.functional.interpolate(frames, scale_factor=scale, mode="bicubic", align_corners=False)
    return up.clamp(0, 1).mul(255).round().div(255)


def score_clip(enhancer: Enhancer, root: str | os.PathLike[str], clip: str, variant: str,
               max_frames: int | None = None) -> ClipScore:
    """Enhance one prepared clip variant and score input and output.

    On a ``yuv420`` dataset the Y plane is scored (and PSNR-YUV 6:1:1); a YUV model
    runs on the planes directly, an RGB model on RGB made from them, its output
    converted back as ``codecave enhance`` would write it. On an RGB dataset, Y is
    computed from RGB. On a super-resolution set (``--scale 4``) the output is scored
    against the high-resolution ground truth and the "input" is bicubic up-sampling of
    the decoded frames (:func:`bicubic_upsample`).

    Raises:
        DatasetError: the set's scale is not the model's (an SR set and an enhancement
            model, or the reverse), or a YUV model chosen explicitly
            meets an RGB dataset (the default variant falls back to :meth:`Enhancer.fallback`).
    """
    data = load_clip(root, clip, variant)
    if data.domain == "yuv420":
        if enhancer.scale > 1:
            raise DatasetError(f"{root}: a YUV enhancement set; the {enhancer.scale}x super-resolution model needs "
                               "one prepared with --scale 4")
        return _score_yuv(enhancer, data, max_frames)
    enhancer = enhancer.for_input(False)  # the default variant left to itself: its RGB fallback
    if enhancer.domain in ("yuv420", "y"):
        raise DatasetError(f"{root}: an RGB dataset; {enhancer.domain} models need one prepared with --domain yuv420")
    n = len(data.decoded) if max_frames is None else min(max_frames, len(data.decoded))
    if data.scale != enhancer.scale:
        raise DatasetError(f"{root}: {clip}/{variant} is a {data.scale}x set (ground truth {data.gt.shape[1:3]}, "
                           f"decoded {data.decoded.shape[1:3]}) but the model's output is {enhancer.scale}x its "
                           "input; score super-resolution models on sets prepared with --scale 4 and "
                           "enhancement models on sets without")
    decoded = np.asarray(data.decoded[:n])
    priors = {k: v[:n] for k, v in data.priors.items()}
    crf = variant_crf(data.info, variant)
    start = time.perf_counter()
    enhanced = enhancer.enhance_clip(decoded, priors, crf)
    seconds = time.perf_counter() - start
    gt, x, y = _to_tensor(data.gt[:n]), _to_tensor(decoded), _to_tensor(enhanced)
    if data.scale > 1:  # the baseline beside a super-resolved output: bicubic up-sampling, 8-bit
        x = bicubic_upsample(x, data.scale)
    return ClipScore(
        clip=clip, variant=variant, crf=crf,
        frame_types="".join(_TYPE_NAMES[int(t)] for t in priors["frame_type"]),
        psnr_in=psnr_y(x, gt).tolist(), psnr_out=psnr_y(y, gt).tolist(),
        ssim_in=ssim_y(x, gt).tolist(), ssim_out=ssim_y(y, gt).tolist(), seconds=seconds,
        frame_qp=[float(q) for q in priors["qp"]])


def enhance_prepared(enhancer: Enhancer, data: PreparedClip, max_frames: int | None = None) -> np.ndarray:
    """The first ``max_frames`` decoded frames of a prepared ``yuv420`` clip, enhanced by any
    model: ``(T, 24, H/4, W/4)`` packed codes like ``data.decoded`` (RGB models see RGB
    converted from the planes and give planes converted back as the encoder would)."""
    n = len(data.decoded) if max_frames is None else min(max_frames, len(data.decoded))
    decoded = np.asarray(data.decoded[:n])
    priors = {k: v[:n] for k, v in data.priors.items()}
    crf = variant_crf(data.info, data.variant)
    depth = data.bit_depth
    if enhancer.domain in ("yuv420", "y"):
        return enhancer.enhance_clip(decoded, priors, crf, depth)
    rgb = np.stack([planes_to_rgb(unpack_planes(c, depth)) for c in decoded])
    out = enhancer.enhance_clip(rgb, priors, crf)
    return np.stack([pack_planes(rgb_to_yuv420_like_encoder(f)) for f in out])


def _score_yuv(enhancer: Enhancer, data: PreparedClip, max_frames: int | None) -> ClipScore:
    n = len(data.decoded) if max_frames is None else min(max_frames, len(data.decoded))
    decoded = np.asarray(data.decoded[:n])
    gt = np.asarray(data.gt[:n])
    priors = {k: v[:n] for k, v in data.priors.items()}
    crf = variant_crf(data.info, data.variant)
    depth = data.bit_depth
    start = time.perf_counter()
    enhanced = enhance_prepared(enhancer, data, n)
    seconds = time.perf_counter() - start
    top = float(peak(depth))
    g, x, y = (torch.from_numpy(a.astype(np.float64)) for a in (gt, decoded, enhanced))
    mid = n // 2
    example = {"frame": mid, "bit_depth": depth, "gt": gt[mid], "decoded": decoded[mid], "enhanced": enhanced[mid]}
    scores_in, scores_out = psnr_yuv_packed(x, g, top), psnr_yuv_packed(y, g, top)
    g_y, x_y, y_y = luma(g), luma(x), luma(y)
    score = ClipScore(
        clip=data.name, variant=data.variant, crf=crf,
        frame_types="".join(_TYPE_NAMES[int(t)] for t in priors["frame_type"]),
        psnr_in=scores_in["psnr_y"].tolist(), psnr_out=scores_out["psnr_y"].tolist(),
        ssim_in=ssim_plane(x_y, g_y, top).tolist(), ssim_out=ssim_plane(y_y, g_y, top).tolist(), seconds=seconds,
        psnr_yuv_in=scores_in["psnr_yuv"].tolist(), psnr_yuv_out=scores_out["psnr_yuv"].tolist(),
        frame_qp=[float(q) for q in priors["qp"]])
    score.example = example  # packed codes of the middle frame, for write_report's pictures (not serialised)
    return score


def evaluate(enhancer: Enhancer, root: str | os.PathLike[str], variants: Sequence[str] | None = None,
             clips: Sequence[str] | None = None, max_frames: int | None = None,
             model_info: dict[str, object] | None = None,
             progress: Callable[[str], None] | None = None) -> EvalReport:
    """Score a model on a prepared dataset.

    Args:
        enhancer: the model to evaluate, wrapped (its options say frame QP vs slice type).
        root: prepared dataset.
        variants: rate points (``crf35``...), default all of the dataset's.
        clips: clip names, default all.
        max_frames: score only the first frames of each clip.
        model_info: description stored in the report; when the default YUV model meets an
            RGB dataset and its RGB fallback scores it, ``variant`` names the fallback and
            ``fallback_from`` the default.
        progress: called with a short message before each clip.

    Raises:
        DatasetError: missing clips or rate points.
    """
    manifest = load_manifest(root)
    available = dataset_variants(manifest)
    variants = list(variants or available)
    missing = [v for v in variants if v not in available]
    if missing:
        raise DatasetError(f"{root}: no rate point(s) {missing}; it has {available}")
    clips = list(clips or sorted(manifest["clips"]))
    if not clips:
        raise DatasetError(f"{root}: no prepared clips (is `codecave prepare` still running?)")
    model_info = dict(model_info or {})
    chosen = enhancer.for_input(dataset_domain(manifest) == "yuv420")
    if chosen is not enhancer:
        # The default variant left to itself scores an RGB dataset with its RGB fallback: say so.
        model_info["fallback_from"] = model_info.get("variant", getattr(enhancer.model, "variant", None))
        model_info["variant"] = chosen.model.variant
        enhancer = chosen
    report = EvalReport(model=model_info, mode="slice type" if enhancer.options.slice_type else "frame QP",
                        metric=METRIC_YUV if dataset_domain(manifest) == "yuv420" else METRIC_RGB,
                        scale=enhancer.scale)
    for variant in variants:
        for clip in clips:
            if progress is not None:
                progress(f"{clip} {variant}")
            report.scores.append(score_clip(enhancer, root, clip, variant, max_frames))
    return report


def write_examples(report: EvalReport, out: str | os.PathLike[str]) -> dict[str, Path]:
    """One comparison picture per rate point (:func:`codecave.metrics.figures.comparison_figure`):
    the middle frame of the clip whose ΔPSNR-Y is the median of that rate point's clips
    (a typical clip, not the best). Only clips of ``yuv420`` datasets keep frames to draw.

    Returns:
        ``{"example_<variant>": path}``.
    """
    from codecave.metrics.figures import comparison_figure

    paths = {}
    for variant in dict.fromkeys(s.variant for s in report.scores):
        rows = sorted((s for s in report.scores if s.variant == variant and hasattr(s, "example")),
                      key=lambda s: s.summary()["delta_psnr"])
        if not rows:
            continue
        s = rows[(len(rows) - 1) // 2]
        e = s.example
        planes = {k: unpack_planes(e[k], e["bit_depth"]) for k in ("gt", "decoded", "enhanced")}
        rgb = {k: planes_to_rgb(p) for k, p in planes.items()}
        path = Path(out) / f"example_{variant}.png"
        comparison_figure(path, reference_y=planes["gt"].y, compressed_y=planes["decoded"].y,
                          enhanced_y=planes["enhanced"].y, reference_rgb=rgb["gt"], compressed_rgb=rgb["decoded"],
                          enhanced_rgb=rgb["enhanced"], peak=float(peak(e["bit_depth"])),
                          title=f"{s.clip} {variant} (CRF {s.crf:g}), frame {e['frame']}: the median clip of "
                                f"{len(rows)} (clip ΔPSNR-Y {s.summary()['delta_psnr']:+.3f} dB)")
        paths[f"example_{variant}"] = path
    return paths


def write_report(report: EvalReport, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``scores.json``, ``scores.md``, ``psnr_per_frame.png`` and, for YUV datasets,
    ``example_<rate point>.png`` (:func:`write_examples`) into a folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "scores.json", "markdown": out / "scores.md", "plot": out / "psnr_per_frame.png"}
    paths["json"].write_text(json.dumps(report.to_json(), indent=2))
    paths["markdown"].write_text(report.to_markdown())
    report.plot(paths["plot"])
    paths.update(write_examples(report, out))
    return paths
