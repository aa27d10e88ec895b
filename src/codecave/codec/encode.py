"""Encode RGB frames into real bitstreams with FFmpeg's encoders (through PyAV).

x264, x265 and SVT-AV1 are the encoders the papers use to make compressed data;
MPEG-2 and MPEG-4 Part 2 are here for their decoders' exported priors, FFV1 for
lossless storage.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from codecave.codec.convert import planes_to_frame
from codecave.codec.priors import YUVPlanes
from codecave.errors import EncoderError

log = logging.getLogger(__name__)

#: Encoders codecave knows how to drive, by the names users give them.
ENCODERS = {
    "x264": "libx264",
    "libx264": "libx264",
    "h264": "libx264",
    "x265": "libx265",
    "libx265": "libx265",
    "hevc": "libx265",
    "svtav1": "libsvtav1",
    "libsvtav1": "libsvtav1",
    "av1": "libsvtav1",
    "mpeg2": "mpeg2video",
    "mpeg2video": "mpeg2video",
    "mpeg4": "mpeg4",
    "ffv1": "ffv1",
}

_PARAMS_OPTION = {"libx264": "x264-params", "libx265": "x265-params", "libsvtav1": "svtav1-params"}

#: HM's low-delay P QP cascade: the offset added to the base QP of the P picture at
#: ``POC % 4`` (``cfg/encoder_lowdelay_P_main.cfg`` of the HM versions with a 4-picture GOP,
#: "Frame1..Frame4: QPoffset 3, 2, 3, 1"; the intra picture is coded at the base QP).
#: HM-16.20, which VIG and CRDS used, predates the 8-picture low-delay GOP of later HM
#: versions (HM-16.25: offsets 5, 4, 5, 4, 5, 4, 5, 1, IntraQPOffset -1 and a QP-dependent
#: model offset); see ``docs/low_delay_p.md``.
HM_LDP_QP_OFFSETS = (1, 3, 2, 3)


def low_delay_p_qps(base_qp: int, frames: int) -> tuple[int, ...]:
    """Per-frame QPs of HM's low-delay P configuration: the intra picture at ``base_qp``,
    then P pictures at ``base_qp + HM_LDP_QP_OFFSETS[poc % 4]``.

    Example: ``low_delay_p_qps(37, 6) == (37, 40, 39, 40, 38, 40)``.
    """
    return tuple(base_qp if poc == 0 else base_qp + HM_LDP_QP_OFFSETS[poc % 4] for poc in range(frames))


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode a clip.

    Attributes:
        codec: encoder name: ``x264``, ``x265``, ``svtav1``, ``mpeg2``, ``mpeg4`` or ``ffv1``.
        crf: constant rate factor (x264/x265/SVT-AV1). Ignored when ``qp`` is set.
        qp: constant quantiser instead of CRF (for MPEG-2/4: the qscale, 1-31).
        preset: encoder preset (x264/x265 names, or an SVT-AV1 number as a string).
        bframes: maximum consecutive B-frames (``None``: encoder default).
        keyint: maximum GOP length (``None``: encoder default).
        ref: reference frames (x264/x265; ``None``: encoder default).
        tune: x264/x265 tune (``"psnr"``, ``"film"``...).
        pix_fmt: pixel format of the encoded pictures.
        params: extra ``key=value`` encoder parameters (x264-params and the like).
        threads: encoder threads (``None``: the encoder's choice, which follows the
            machine's core count, so x264's decisions can differ between machines;
            a fixed count removes that difference).
        frame_qps: x265 only: the QP of every frame in display order, the first coded
            intra and the rest P (low delay: one intra picture, no B pictures, four
            reference pictures, as HM's ``encoder_lowdelay_P_main.cfg``); the first QP
            must be the lowest. ``crf``, ``qp``, ``bframes``, ``keyint`` and ``ref`` are
            ignored. Clips longer than the list are refused. See :func:`low_delay_p_qps`.
    """

    codec: str = "x264"
    crf: float | None = 23.0
    qp: float | None = None
    preset: str | None = "medium"
    bframes: int | None = None
    keyint: int | None = None
    ref: int | None = None
    tune: str | None = None
    pix_fmt: str = "yuv420p"
    params: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    frame_qps: tuple[int, ...] = ()

    @property
    def encoder(self) -> str:
        """FFmpeg's name for the encoder."""
        try:
            return ENCODERS[self.codec.lower()]
        except KeyError:
            raise EncoderError(
                f"unknown codec {self.codec!r}: use one of {sorted(set(ENCODERS))}"
            ) from None

    def as_dict(self) -> dict[str, object]:
        """Settings as a JSON-ready dict (for manifests)."""
        return {
            "codec": self.encoder,
            "crf": self.crf,
            "qp": self.qp,
            "preset": self.preset,
            "bframes": self.bframes,
            "keyint": self.keyint,
            "ref": self.ref,
            "tune": self.tune,
            "pix_fmt": self.pix_fmt,
            "params": dict(sorted(self.params.items())),
            "threads": self.threads,
            "frame_qps": list(self.frame_qps),
        }

    def with_(self, **changes: object) -> EncodeSettings:
        """Return a copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _frame_qp_params(s: EncodeSettings, csv: Path) -> dict[str, str]:
    """x265 parameters that code frame ``k`` at ``s.frame_qps[k]`` (low-delay P), logging
    each frame's type and QP to ``csv``.

    libx265 through FFmpeg has no per-frame QP (x265's ``qpfile`` is read by its command
    line tool only, and zones are ignored in constant-QP mode). So: CRF mode with adaptive
    quantisation and cu-tree off, a zone forcing the QP of each P frame (this libx265
    applies zone ``k + 1`` to frame ``k``; :func:`encode_frames` checks every frame's QP in
    the log), and the intra frame, which zones do not reach, held at the base QP by
    ``crf=0`` clamped by ``qpmin``.
    """
    if s.encoder != "libx265":
        raise EncoderError(f"per-frame QPs (frame_qps) need x265, not {s.encoder}")
    qps = [int(q) for q in s.frame_qps]
    if qps[0] != min(qps) or not all(0 <= q <= 51 for q in qps):
        raise EncoderError(f"frame_qps must lie in 0..51 with the intra frame's the lowest, got {qps[:8]}...")
    zones = "/".join(f"{k + 1},{k + 1},q={q}" for k, q in enumerate(qps) if k > 0)
    return {"crf": "0", "qpmin": str(qps[0]), "qpmax": str(max(qps)), "aq-mode": "0", "cutree": "0",
            "keyint": "-1", "min-keyint": "1", "scenecut": "0", "bframes": "0", "ref": "4", "open-gop": "0",
            "zones": zones, "csv": str(csv), "csv-log-level": "1"}


def read_x265_csv(path: str | os.PathLike[str]) -> list[tuple[str, int, float]]:
    """x265's per-frame log (``csv``, level 1): ``(slice type, POC, QP)`` of each frame, in POC order.

    Raises:
        EncoderError: the file is missing or not an x265 frame log.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise EncoderError(f"{path}: x265 wrote no frame log ({exc})") from exc
    if not lines:
        raise EncoderError(f"{path}: empty x265 frame log")
    header = [h.strip() for h in lines[0].split(",")]
    try:
        col_type, col_poc, col_qp = header.index("Type"), header.index("POC"), header.index("QP")
    except ValueError:
        raise EncoderError(f"{path}: not an x265 frame log (header {header[:6]})") from None
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) > col_qp and cells[col_poc].isdigit():
            rows.append((cells[col_type].split("-")[0], int(cells[col_poc]), float(cells[col_qp])))
    return sorted(rows, key=lambda r: r[1])


def _stream_options(s: EncodeSettings, csv: Path | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """Return (AVOptions, codec-context attributes) for the settings (``csv``: where x265
    logs its frames when ``s.frame_qps`` is set)."""
    enc = s.encoder
    opts: dict[str, str] = {}
    ctx: dict[str, int] = {}
    params = dict(s.params)
    if s.frame_qps:
        if csv is None:
            raise EncoderError("frame_qps needs a frame log path")
        params.update(_frame_qp_params(s, csv))
        s = s.with_(crf=None, qp=None, bframes=None, keyint=None, ref=None)
    if s.threads is not None:
        if s.threads < 1:
            raise EncoderError(f"threads must be at least 1, got {s.threads}")
        ctx["thread_count"] = s.threads
    if enc in ("libx264", "libx265"):
        if s.qp is not None and enc == "libx264":
            opts["qp"] = f"{int(round(s.qp))}"
        elif s.qp is not None:
            params["qp"] = f"{int(round(s.qp))}"
        elif s.crf is not None:
            opts["crf"] = f"{s.crf:g}"
        if s.preset:
            opts["preset"] = s.preset
        if s.tune:
            opts["tune"] = s.tune
        if s.bframes is not None:
            params["bframes"] = str(s.bframes)
        if s.keyint is not None:
            params["keyint"] = str(s.keyint)
            params.setdefault("min-keyint", "1")
        if s.ref is not None:
            params["ref"] = str(s.ref)
        if enc == "libx265":
            params.setdefault("log-level", "error")
    elif enc == "libsvtav1":
        # SVT-AV1 prints a banner on stderr unless told otherwise.
        os.environ.setdefault("SVT_LOG", "1")
        if s.qp is not None:
            opts["qp"] = f"{int(round(s.qp))}"
        elif s.crf is not None:
            opts["crf"] = f"{int(round(s.crf))}"
        if s.preset:
            opts["preset"] = s.preset if s.preset.lstrip("-").isdigit() else "8"
        if s.keyint is not None:
            ctx["gop_size"] = s.keyint
        if s.bframes is not None:
            log.debug("SVT-AV1 has no bframes setting; ignoring bframes=%s", s.bframes)
    elif enc in ("mpeg2video", "mpeg4"):
        q = s.qp if s.qp is not None else 4
        opts["qmin"] = opts["qmax"] = str(int(round(q)))
        if s.bframes is not None:
            ctx["max_b_frames"] = s.bframes
        if s.keyint is not None:
            ctx["gop_size"] = s.keyint
    if params:
        key = _PARAMS_OPTION.get(enc)
        if key is None:
            raise EncoderError(f"{enc}: takes no extra params, got {params}")
        opts[key] = ":".join(f"{k}={v}" for k, v in params.items())
    return opts, ctx


@dataclass(frozen=True)
class EncodeResult:
    """What an encode produced.

    Attributes:
        path: the written file.
        frames: number of frames encoded.
        bytes: file size in bytes.
        width, height: picture size.
        frame_log: ``(slice type, POC, QP)`` of every frame from x265's own log, when
            ``frame_qps`` was set (the HEVC decoder exports no QP); else empty.
    """

    path: Path
    frames: int
    bytes: int
    width: int
    height: int
    frame_log: tuple[tuple[str, int, float], ...] = ()


def encode_frames(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    settings: EncodeSettings | None = None,
    *,
    fps: Fraction | int = 25,
) -> EncodeResult:
    """Encode RGB frames or YUV 4:2:0 planes into a video file.

    Planes whose format is the encoder's pixel format (``yuv420p`` for 8-bit planes,
    ``yuv420p10le`` for 10-bit ones) reach the encoder unchanged, so the encoder's
    input is exactly the planes given; RGB frames are converted by swscale.

    Args:
        frames: pictures, each ``(H, W, 3)`` uint8 RGB or a
            :class:`~codecave.codec.priors.YUVPlanes`, all the same size.
        path: output file; the container follows the extension (``.mp4``,
            ``.mkv``, ``.264``, ``.m2v``...).
        settings: encoder and its settings (default: x264 CRF 23, medium).
        fps: frame rate written into the stream.

    Returns:
        The file written, with its frame count and size.

    Raises:
        EncoderError: the encoder is unknown, refuses the settings or the picture
            size (4:2:0 needs even width and height), or no frame was given; with
            ``frame_qps``: more frames than QPs, or x265's log shows other types or QPs.
    """
    s = settings or EncodeSettings()
    if not s.frame_qps:
        return _encode(frames, Path(path), s, fps, None)
    logs = Path(tempfile.mkdtemp(prefix="codecave-x265-"))  # no ':' in the path (x265-params)
    try:
        result = _encode(frames, Path(path), s, fps, logs / "frames.csv")
        gc.collect()  # x265 writes its frame log when the encoder is freed (with the last packet)
        frame_log = tuple(read_x265_csv(logs / "frames.csv"))
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    want = [("I" if k == 0 else "P", k, float(q)) for k, q in enumerate(s.frame_qps[:result.frames])]
    if list(frame_log) != want:
        result.path.unlink(missing_ok=True)
        raise EncoderError(f"{path}: x265 did not code the frame types and QPs asked for (first frames "
                           f"asked {want[:6]}, coded {list(frame_log)[:6]}); this libx265 is not supported")
    return replace(result, frame_log=frame_log)


def _encode(frames: Iterable[np.ndarray], path: Path, s: EncodeSettings, fps: Fraction | int,
            csv: Path | None) -> EncodeResult:
    enc = s.encoder
    opts, ctx_attrs = _stream_options(s, csv)
    n = 0
    width = height = 0
    try:
        container = av.open(str(path), mode="w")
    except (av.FFmpegError, ValueError) as exc:
        raise EncoderError(f"{path}: cannot write this container ({exc})") from exc
    try:
        stream = None
        for rgb in frames:
            planes = rgb if isinstance(rgb, YUVPlanes) else None
            if planes is None and (rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3):
                raise EncoderError(
                    f"{path}: frames must be (H, W, 3) uint8 RGB or YUVPlanes, got {rgb.dtype} {rgb.shape}"
                )
            size = planes.y.shape if planes is not None else rgb.shape[:2]
            if stream is None:
                height, width = int(size[0]), int(size[1])
                if s.pix_fmt.startswith(("yuv420", "nv12")) and (width % 2 or height % 2):
                    raise EncoderError(
                        f"{path}: {width}x{height} has an odd side; {s.pix_fmt} needs even "
                        "width and height (crop or pad the frames)"
                    )
                stream = _add_stream(container, enc, fps, width, height, s.pix_fmt, opts, ctx_attrs)
            elif tuple(size) != (height, width):
                raise EncoderError(
                    f"{path}: frame {n} is {size[1]}x{size[0]}, "
                    f"the clip is {width}x{height}"
                )
            if s.frame_qps and n >= len(s.frame_qps):
                raise EncoderError(f"{path}: frame_qps lists {len(s.frame_qps)} frames; the clip has more")
            if planes is not None:
                frame = planes_to_frame(planes, s.pix_fmt)
            else:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
                    format=s.pix_fmt)
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        if stream is None:
            raise EncoderError(f"{path}: no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
    except av.FFmpegError as exc:
        container.close()
        path.unlink(missing_ok=True)
        raise EncoderError(f"{path}: {enc} failed: {exc}") from exc
    except BaseException:
        container.close()
        path.unlink(missing_ok=True)
        raise
    container.close()
    return EncodeResult(path, n, path.stat().st_size, width, height)


def _add_stream(
    container: av.container.OutputContainer,
    enc: str,
    fps: Fraction | int,
    width: int,
    height: int,
    pix_fmt: str,
    opts: dict[str, str],
    ctx_attrs: dict[str, int],
) -> av.VideoStream:
    try:
        stream = container.add_stream(enc, rate=Fraction(fps))
    except (av.FFmpegError, ValueError) as exc:
        raise EncoderError(f"encoder {enc} is not available in this FFmpeg build: {exc}") from exc
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.time_base = Fraction(1, 1) / Fraction(fps)
    if enc in ("libx264", "libx265", "libsvtav1"):
        stream.thread_type = "FRAME"
    for key, value in ctx_attrs.items():
        setattr(stream.codec_context, key, value)
    stream.options = opts
    return stream


def library_versions() -> dict[str, str]:
    """Versions of PyAV and the FFmpeg libraries it bundles (for manifests)."""
    libs = {name: ".".join(map(str, v)) for name, v in av.library_versions.items()}
    return {"pyav": av.__version__, "ffmpeg": str(av.ffmpeg_version_info), **libs}
