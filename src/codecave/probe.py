"""Summarise a video's codec priors: stream facts, encoder settings, one row per frame."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from codecave.codec.priors import StreamInfo
from codecave.codec.rasterize import INTRA, compact_priors
from codecave.codec.reader import open_video


@dataclass(frozen=True)
class FrameRow:
    """One frame's line in the probe table.

    Attributes:
        index: display index.
        type: ``I``, ``P`` or ``B``.
        key: whether it is a key frame.
        time: presentation time in seconds.
        bytes: coded size.
        qp: frame QP (mean over macroblocks).
        intra: share of the picture with no motion vector (intra-coded).
        mv_past, mv_future: number of vectors per direction.
        ref_past, ref_future: resolved reference distances (0: none).
        source: ``bitstream`` or ``estimated``.
        corrupt: flagged by the decoder.
    """

    index: int
    type: str
    key: bool
    time: float | None
    bytes: int | None
    qp: float | None
    intra: float
    mv_past: int
    mv_future: int
    ref_past: int
    ref_future: int
    source: str
    corrupt: bool


@dataclass
class ProbeResult:
    """Everything ``codecave probe`` shows.

    Attributes:
        info: stream facts and encoder settings.
        frames: one row per frame read.
        report: what decoding lost, one line.
        report_ok: whether decoding was clean.
        figures: pictures written with ``viz_dir``.
        damage: one line per damaged span (which frames or time ranges), empty when clean.
    """

    info: StreamInfo
    frames: list[FrameRow]
    report: str
    report_ok: bool
    figures: list[Path] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        info = asdict(self.info)
        for key in ("frame_rate", "time_base"):
            info[key] = None if info[key] is None else str(info[key])
        return {
            "stream": info,
            "frames": [asdict(r) for r in self.frames],
            "summary": self.summary(),
            "decode": {"ok": self.report_ok, "report": self.report, "damage": self.damage},
        }

    def summary(self) -> dict[str, object]:
        """Counts and means over frames, by type."""
        out: dict[str, object] = {"frames": len(self.frames)}
        for kind in "IPB":
            rows = [r for r in self.frames if r.type == kind]
            qps = [r.qp for r in rows if r.qp is not None]
            out[kind] = {
                "count": len(rows),
                "mean_qp": round(float(np.mean(qps)), 2) if qps else None,
                "mean_bytes": round(float(np.mean([r.bytes or 0 for r in rows])), 1) if rows else None,
            }
        out["pattern"] = "".join(r.type for r in self.frames[:60])
        return out

    def to_text(self) -> str:
        """Tables for people."""
        i = self.info
        lines = [
            f"{i.path}",
            f"  container {i.container}, codec {i.codec} ({i.profile or '-'}), {i.width}x{i.height} {i.pix_fmt}",
            f"  {float(i.frame_rate or 0):.3f} fps, time base {i.time_base}, duration {i.duration or 0:.2f} s, "
            f"{i.frames or '?'} frames, {(i.bit_rate or 0) / 1000:.0f} kb/s",
            f"  colour: range {i.color_range or '-'}, matrix {i.color_space or '-'}, primaries "
            f"{i.color_primaries or '-'}, transfer {i.color_trc or '-'}, rotation {i.rotation}",
            f"  priors: {i.prior_source}",
        ]
        e = i.encoder
        if e is None:
            lines.append("  encoder settings: none in the bitstream")
        else:
            rc = f"crf {e.crf:g}" if e.crf is not None else (f"qp {e.qp:g}" if e.qp is not None else e.rate_control)
            lines.append(f"  encoder: {e.encoder} {e.version or ''}: {rc}, bframes {e.bframes}, b-pyramid "
                         f"{e.b_pyramid}, keyint {e.keyint} (min {e.keyint_min}), ref {e.ref}")
        lines.append("")
        head = f"{'frame':>6} {'type':>4} {'key':>3} {'time':>8} {'bytes':>8} {'QP':>6} {'intra':>6} " \
               f"{'mv<':>6} {'mv>':>6} {'ref<':>4} {'ref>':>4}"
        lines += [head, "-" * len(head)]
        legend = ("  key: random-access point; QP: mean over macroblocks, on H.264's scale; intra: share of "
                  "intra macroblocks\n  mv< / mv>: vectors pointing to the past / future reference; "
                  "ref< / ref>: display-order distance to that reference (- none)")
        for r in self.frames:
            qp = "-" if r.qp is None else f"{r.qp:.1f}"
            t = "-" if r.time is None else f"{r.time:.3f}"
            lines.append(f"{r.index:>6} {r.type:>4} {'*' if r.key else '':>3} {t:>8} {r.bytes or '-':>8} {qp:>6} "
                         f"{r.intra:>6.1%} {r.mv_past:>6} {r.mv_future:>6} {r.ref_past or '-':>4} "
                         f"{r.ref_future or '-':>4}" + ("  corrupt" if r.corrupt else ""))
        s = self.summary()
        lines.append("")
        for kind in "IPB":
            k = s[kind]
            if k["count"]:  # type: ignore[index]
                lines.append(f"  {kind}: {k['count']} frames, mean QP {k['mean_qp']}, "  # type: ignore[index]
                             f"mean {k['mean_bytes']} bytes")  # type: ignore[index]
        lines.append(legend)
        lines.append(f"  decode: {self.report}")
        lines.extend(f"    {line}" for line in self.damage)
        return "\n".join(lines)


def probe_video(
    path: str | os.PathLike[str],
    *,
    max_frames: int | None = None,
    viz_dir: str | os.PathLike[str] | None = None,
    viz_frames: range = range(0, 8),
) -> ProbeResult:
    """Read a video's priors frame by frame (streaming) and summarise them.

    Args:
        path: the video.
        max_frames: stop after this many frames.
        viz_dir: if given, write vector, partition and QP pictures there.
        viz_frames: which frames to draw.
    """
    rows: list[FrameRow] = []
    figures: list[Path] = []
    if viz_dir is not None:
        from codecave.codec.visualize import save_frame_figures

        Path(viz_dir).mkdir(parents=True, exist_ok=True)
    with open_video(path) as video:
        for frame in video:
            if max_frames is not None and frame.index >= max_frames:
                break
            p = frame.priors
            compact = compact_priors(p, frame.height, frame.width)
            d = p.mvs["direction"]
            rows.append(FrameRow(
                index=frame.index, type=p.frame_type.name, key=p.key_frame, time=frame.time,
                bytes=frame.packet_size, qp=None if p.qp is None else round(p.qp, 2),
                intra=float((compact.partition == INTRA).mean()), mv_past=int((d < 0).sum()),
                mv_future=int((d > 0).sum()), ref_past=p.ref_past or 0, ref_future=p.ref_future or 0,
                source=p.source, corrupt=frame.corrupt,
            ))
            if viz_dir is not None and frame.index in viz_frames:
                figures += save_frame_figures(frame, viz_dir)
        return ProbeResult(video.info, rows, video.report.summary(), video.report.ok, figures,
                           video.report.details())
