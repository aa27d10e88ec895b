"""Open a video file and iterate its frames with their codec priors, in display order.

The only module (with :mod:`codecave.codec.encode`) that imports PyAV. It streams:
memory stays flat in the video's length (a few frames are held back so that a
B-frame's future reference is known before the frame is handed out).

Decoders that export priors (H.264, MPEG-2, MPEG-4 Part 2, H.263) give motion
vectors and QP from the bitstream; for all others (HEVC, AV1, VP9...) the vectors
are estimated from the decoded pixels and marked ``"estimated"``.

Example:
    >>> with open_video("clip.mp4") as video:            # doctest: +SKIP
    ...     print(video.info.codec, video.info.encoder)
    ...     for frame in video:
    ...         print(frame.index, frame.priors.frame_type.name, frame.priors.qp)
"""

from __future__ import annotations

import logging
import math
import os
import stat
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType

import av
import numpy as np

from codecave.codec.convert import is_420, planes_from_frame
from codecave.codec.gop import ReferenceTracker, fallback_references, h264_is_reference, h264_nal_length_size
from codecave.codec.priors import (
    MB,
    MPEG_QUANTISER_CODECS,
    MV_DTYPE,
    CodedFrame,
    EncoderSettings,
    FramePriors,
    FrameType,
    StreamInfo,
    empty_mvs,
    mpeg_quantiser_to_qp,
)
from codecave.codec.sei import find_encoder_settings
from codecave.errors import (
    CorruptVideoError,
    EmptyVideoError,
    InputNotFoundError,
    NotAVideoError,
    NotSeekableError,
    NoVideoStreamError,
    UnsupportedVideoError,
)

log = logging.getLogger(__name__)

#: Decoders whose exported B-frame vectors are all (0, 0) (MPEG-4 Part 2: FFmpeg does not
#: export them); such frames get estimated vectors instead.
ZERO_B_VECTOR_CODECS = frozenset({"mpeg4", "msmpeg4v3"})

#: Decoders whose FFmpeg implementation exports motion vectors and QP.
BITSTREAM_PRIOR_CODECS = frozenset({"h264", "mpeg2video", "mpeg1video", "mpeg4", "h263", "h263p"})

_PICT_TYPES = {1: FrameType.I, 2: FrameType.P, 3: FrameType.B, 4: FrameType.P, 5: FrameType.I,
               6: FrameType.P, 7: FrameType.B}  # I P B S SI SP BI
_RANGES = {1: "tv", 2: "pc"}
_SPACES = {0: "rgb", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
           8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 12: "chroma-derived-nc", 14: "ictcp"}
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
              8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432"}
_TRCS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
         11: "iec61966-2-4", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
         16: "smpte2084", 18: "arib-std-b67"}
_MAX_BIT_DEPTH = 16
#: Frames held back at most while waiting for a B-frame's future reference.
_MAX_HOLD = 64


@dataclass(frozen=True)
class LostSpan:
    """Frames that a damaged file lost, or that the decoder had to conceal.

    Attributes:
        cause: ``"concealed"`` (decoded with errors hidden by the decoder),
            ``"undecodable"`` (a packet the decoder rejected: its frame is missing),
            ``"missing"`` (a gap in the timestamps of an otherwise regular stream:
            the demuxer skipped data), ``"disordered"`` (a frame whose timestamp goes
            back, dropped), ``"cut"`` (the file ends before the duration
            its container announces, or the demuxer stopped on an error).
        start, end: presentation times in seconds (``end`` exclusive), where known.
        frames: how many frames (estimated from the frame rate for gaps and cut ends).
        first, last: display indices of the concealed frames (``"concealed"``); for a
            gap, ``last`` is the index of the first frame after it.
    """

    cause: str
    start: float | None
    end: float | None
    frames: int | None
    first: int | None = None
    last: int | None = None

    def describe(self) -> str:
        """One line for people: what, which frames, which times."""
        when = "" if self.start is None else (
            f" at {self.start:.3f} s" if self.end is None or self.end - self.start < 1e-6
            else f" at {self.start:.3f}-{self.end:.3f} s")
        n = "?" if self.frames is None else str(self.frames)
        if self.cause == "concealed":
            which = f"frame {self.first}" if self.first == self.last else f"frames {self.first}-{self.last}"
            return f"{which} decoded with errors concealed by the decoder{when}"
        if self.cause == "undecodable":
            return f"{n} frame(s) lost: the decoder rejected their packet{when}"
        if self.cause == "disordered":
            return f"{n} frame(s) dropped{when}: the decoder gave them out of display order (damaged data)"
        if self.cause == "missing":
            return f"about {n} frame(s) missing{when} (a gap in the timestamps: the demuxer skipped damaged data)"
        return f"about {n} frame(s) missing{when}: the file ends early (truncated or damaged)"


@dataclass
class DecodeReport:
    """What went wrong while reading a file, for callers to show or act on.

    Loss is judged by what the demuxer and decoder report, the same way for every
    container: packets the decoder rejects, packets the demuxer flags as corrupt,
    frames decoded with concealed errors, gaps in the timestamps of a stream whose
    frames are otherwise evenly spaced (beside other damage or among the last frames;
    alone they are a variable frame rate: :attr:`timestamp_gaps`), and a stream that
    ends before the duration
    or frame count its container announces (pre-roll frames that an edit list hides,
    as in MP4s trimmed by stream copy, are not counted as missing).

    Attributes:
        spans: what was lost or concealed, in file order (see :class:`LostSpan`).
        bad_packets: decode positions of packets the decoder rejected.
        corrupt_frames: display indices of frames FFmpeg flagged as concealed.
        truncated: the stream ends before its announced end.
        messages: FFmpeg's error messages, one per problem.
        timestamp_gaps: gaps in the timestamps of a file with no other sign of damage and
            not among its last frames: a variable frame rate (phones, screen recorders)
            more likely than loss, so not counted as damage (otherwise they are, in ``spans``).
    """

    spans: list[LostSpan] = field(default_factory=list)
    bad_packets: list[int] = field(default_factory=list)
    corrupt_frames: list[int] = field(default_factory=list)
    truncated: bool = False
    messages: list[str] = field(default_factory=list)
    timestamp_gaps: list[LostSpan] = field(default_factory=list)
    times: array = field(default_factory=lambda: array("d"))  # display time of each shown frame (nan: unknown)

    def within(self, first: int, last: int | None) -> DecodeReport:
        """The damage that touches display frames ``first`` to ``last`` (exclusive; None:
        to the end), for excerpts: concealed frames by index, the rest by time (a span
        whose time is unknown is kept)."""
        n = len(self.times)
        stop = n if last is None else min(last, n)
        if first <= 0 and stop >= n:
            return self
        known = [t for t in self.times[max(0, first - 1) : stop + 1] if not math.isnan(t)]
        lo, hi = (min(known), max(known)) if known else (-np.inf, np.inf)

        def touches(sp: LostSpan) -> bool:
            if sp.cause == "concealed" and sp.first is not None:
                return sp.first < stop and (sp.last if sp.last is not None else sp.first) >= first
            if sp.start is None:
                return True
            return sp.start <= hi and (sp.end if sp.end is not None else np.inf) >= lo

        spans = [sp for sp in self.spans if touches(sp)]
        return DecodeReport(spans=spans, corrupt_frames=[i for i in self.corrupt_frames if first <= i < stop],
                            bad_packets=self.bad_packets if any(sp.cause == "undecodable" for sp in spans) else [],
                            truncated=any(sp.cause == "cut" for sp in spans), messages=self.messages,
                            timestamp_gaps=self.timestamp_gaps, times=self.times)

    @property
    def ok(self) -> bool:
        """Whether the whole stream decoded cleanly."""
        return not (self.spans or self.bad_packets or self.corrupt_frames or self.truncated)

    def summary(self) -> str:
        """One line for people."""
        if self.ok:
            return "decoded cleanly"
        parts = []
        concealed = len(self.corrupt_frames)
        missing = sum(s.frames or 0 for s in self.spans if s.cause != "concealed")
        if missing:
            parts.append(f"about {missing} frame(s) missing")
        if concealed:
            parts.append(f"{concealed} frame(s) concealed by the decoder")
        if self.truncated and not any(s.cause == "cut" and s.frames for s in self.spans):
            parts.append("the file ends early (truncated or damaged)")
        return "damaged: " + "; ".join(parts)

    def details(self) -> list[str]:
        """One line per damaged span: which frames or time ranges."""
        return [s.describe() for s in self.spans]


def _name(table: dict[int, str], value: object) -> str | None:
    try:
        return table.get(int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def check_input_file(path: str | os.PathLike[str]) -> None:
    """Refuse what the reader cannot use before FFmpeg touches it.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        NotAVideoError: it is a folder.
        NotSeekableError: it is a pipe (``<(cat clip.mp4)``, a named pipe), a socket or a
            terminal: codecave reads a file more than once (its header, its frames, then
            its audio and subtitles for the output), which a pipe cannot give.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise NotAVideoError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise NotAVideoError(f"{path}: is a folder, not a video file")
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "not a regular file"
        raise NotSeekableError(f"{path}: is {kind}; codecave reads its input more than once (header, frames, "
                               "then audio and subtitles), so save the stream to a file first")


def _open_container(path: str, fmt: str | None, options: dict[str, str] | None) -> av.container.InputContainer:
    check_input_file(path)
    try:
        # Tags are text in any encoding (Latin-1 titles are common): never fail on them.
        return av.open(path, mode="r", format=fmt, options=options or {}, metadata_errors="replace")
    except av.FFmpegError as exc:
        raise NotAVideoError(f"{path}: not a video FFmpeg can read ({exc.strerror or exc})") from exc


def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise NoVideoStreamError(f"{path}: no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise UnsupportedVideoError(f"{path}: its video stream's codec (its fourcc) is not one FFmpeg knows, "
                                    "so it cannot be decoded")
    return stream


def _bit_depth(pix_fmt: str) -> int:
    fmt = av.VideoFormat(pix_fmt)
    return max((c.bits for c in fmt.components), default=8)


def hdr_metadata(frame: av.VideoFrame) -> dict[str, str] | None:
    """HDR10 static metadata of a decoded frame, in the notation of x265's options.

    Returns:
        ``{"master-display": "G(x,y)B(x,y)R(x,y)WP(x,y)L(max,min)", "max-cll": "MaxCLL,MaxFALL"}``
        (chromaticities in 0.00002 units, luminance in 0.0001 cd/m², SMPTE ST 2086 /
        CTA-861.3), with only the keys the frame carries; None when it carries neither.
    """
    out: dict[str, str] = {}
    for side in side_data(frame):
        kind = getattr(side.type, "name", str(side.type))
        raw = bytes(side)
        if kind == "MASTERING_DISPLAY_METADATA" and len(raw) >= 88:
            v = np.frombuffer(raw[:88], dtype="<i4").reshape(-1, 2).astype(np.float64)
            q = v[:, 0] / np.where(v[:, 1] == 0, 1, v[:, 1])  # AVRational values, in order
            r, g, b, wp = q[0:2], q[2:4], q[4:6], q[6:8]
            lmin, lmax = q[8], q[9]
            has_primaries, has_luminance = np.frombuffer(raw[80:88], dtype="<i4")
            if has_primaries and has_luminance:
                def xy(c: np.ndarray) -> str:
                    return f"({round(c[0] * 50000)},{round(c[1] * 50000)})"
                out["master-display"] = (f"G{xy(g)}B{xy(b)}R{xy(r)}WP{xy(wp)}"
                                         f"L({round(lmax * 10000)},{round(lmin * 10000)})")
        elif kind == "CONTENT_LIGHT_LEVEL" and len(raw) >= 8:
            max_cll, max_fall = np.frombuffer(raw[:8], dtype="<u4")
            out["max-cll"] = f"{int(max_cll)},{int(max_fall)}"
    return out or None


def _peek(path: str, fmt: str | None, options: dict[str, str] | None
          ) -> tuple[EncoderSettings | None, int, dict[str, str] | None, str | None]:
    """Read the encoder's SEI, the display rotation, HDR metadata and the pixel format
    of the first picture from the first packets (damage there is left to the full read)."""
    container = _open_container(path, fmt, options)
    try:
        stream = _video_stream(container, path)
        extradata = stream.codec_context.extradata or b""
        settings = find_encoder_settings(bytes(extradata)) if extradata else None
        rotation, hdr, pix_fmt = 0, None, None
        packets = container.demux(stream)
        for i in range(66):
            try:
                packet = next(packets)
                if settings is None and packet.size:
                    settings = find_encoder_settings(bytes(packet))
                frames = packet.decode()
            except StopIteration:
                break
            except av.FFmpegError:
                continue
            if frames:
                rotation = int(round(frames[0].rotation or 0))
                hdr = hdr_metadata(frames[0])
                pix_fmt = frames[0].format.name
                break
        return settings, rotation, hdr, pix_fmt
    finally:
        container.close()


def _stream_info(
    path: str, container: av.container.InputContainer, stream: av.VideoStream,
    settings: EncoderSettings | None, rotation: int, hdr: dict[str, str] | None = None,
    first_pix_fmt: str | None = None,
) -> StreamInfo:
    ctx = stream.codec_context
    pix_fmt = ctx.pix_fmt or (ctx.format.name if ctx.format else None) or first_pix_fmt
    if pix_fmt is None:
        raise EmptyVideoError(f"{path}: no picture decodes and the stream does not state its pixel format "
                              "(the file is cut or damaged before its first picture)")
    rate = stream.average_rate or stream.guessed_rate
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    return StreamInfo(
        path=path,
        container=container.format.name,
        codec=ctx.name,
        profile=ctx.profile,
        width=ctx.width,
        height=ctx.height,
        pix_fmt=pix_fmt,
        frame_rate=Fraction(rate) if rate else None,
        time_base=Fraction(stream.time_base) if stream.time_base else None,
        duration=duration,
        frames=stream.frames or None,
        bit_rate=ctx.bit_rate or container.bit_rate or None,
        color_range=_name(_RANGES, ctx.color_range),
        color_space=_name(_SPACES, ctx.colorspace),
        color_primaries=_name(_PRIMARIES, ctx.color_primaries),
        color_trc=_name(_TRCS, ctx.color_trc),
        rotation=rotation,
        encoder=settings,
        prior_source="bitstream" if ctx.name in BITSTREAM_PRIOR_CODECS else "estimated",
        hdr=hdr,
    )


def side_data(frame: av.VideoFrame) -> Iterator[object]:
    """The side data of a decoded frame, without tying the frame into a reference cycle.

    PyAV's ``frame.side_data`` caches its container on the frame, and the container points
    back at the frame: every frame whose side data was read (each one, when motion vectors
    are exported) then waits for Python's full garbage collection, with its picture and
    vectors. Decoding 600 frames of 1280x720 H.264 with ``export_mvs`` grew from 45 to
    257 MB that way, and stayed at 62 MB with a container built apart (README, "Enhance
    speed and memory")."""
    try:
        from av.sidedata.sidedata import SideDataContainer
    except ImportError:  # other PyAV versions: the cached container
        return iter(frame.side_data)
    return iter(SideDataContainer(frame))


def _mvs_from_side_data(side: object) -> np.ndarray:
    """Convert FFmpeg's AVMotionVector array to :data:`MV_DTYPE` rows."""
    raw = side.to_ndarray()  # type: ignore[attr-defined]
    out = np.empty(len(raw), dtype=MV_DTYPE)
    w = raw["w"].astype(np.int16)
    h = raw["h"].astype(np.int16)
    scale = np.maximum(raw["motion_scale"].astype(np.float32), 1.0)
    out["direction"] = np.sign(raw["source"]).astype(np.int8)
    out["w"], out["h"] = w, h
    out["x"] = raw["dst_x"] - w // 2
    out["y"] = raw["dst_y"] - h // 2
    out["dx"] = raw["motion_x"] / scale
    out["dy"] = raw["motion_y"] / scale
    return out


def drop_unused_list_vectors(mvs: np.ndarray) -> np.ndarray:
    """Remove the (0, 0) vectors FFmpeg exports for reference lists a partition does not use.

    FFmpeg's H.264 export decides list usage per macroblock: in a B macroblock split into
    8x8 (or 16x8, 8x16) partitions where one partition predicts from the past only and
    another from the future, every partition gets a vector in both directions, the
    unused one stored as exactly (0, 0). The bitstream (sub_mb_type) says which is real;
    without parsing it, a (0, 0) vector is taken as unused when the same block has a
    non-zero vector in the other direction. On a textured box moving over a moving
    textured background, where no true vector is (0, 0) (x264, 3 B-frames, 24 frames of
    256x160: ``tests/test_real_files.py``, case 8), FFmpeg exports 84 zero vectors among
    1704 interior B vectors; this removes all 84 and no other, and 1216 of the 1219
    remaining vectors of blocks wholly on the box or the background match the known
    motion within 1 pixel. A real
    zero vector beside a moving one in the other direction (a still object seen
    through a bi-predicted block) is removed too: the rasterised priors then hold the
    other direction's vector alone for that block.
    """
    if not len(mvs):
        return mvs
    key = ((mvs["x"].astype(np.int64) * 65536 + mvs["y"].astype(np.int64)) * 256
           + mvs["w"].astype(np.int64)) * 256 + mvs["h"].astype(np.int64)
    zero = (mvs["dx"] == 0) & (mvs["dy"] == 0)
    future = mvs["direction"] > 0
    moving_keys = key[~zero] * 2 + future[~zero]
    phantom = zero & np.isin(key * 2 + ~future, moving_keys)
    return mvs[~phantom] if phantom.any() else mvs


def _qp_from_side_data(side: object) -> tuple[float, np.ndarray]:
    """Frame QP (mean over blocks) and the per-macroblock QP map of AVVideoEncParams.

    The block array is read straight from the side-data buffer (``src_x, src_y, w, h,
    delta_qp`` as int32 at ``blocks_offset``, ``block_size`` bytes apart); PyAV's
    ``qp_map()`` is used only when blocks are not whole 16x16 macroblocks.
    """
    base = int(side.qp)  # type: ignore[attr-defined]
    n = int(side.nb_blocks)  # type: ignore[attr-defined]
    if n == 0:
        return float(base), np.zeros((0, 0), dtype=np.float32)
    raw = np.frombuffer(bytes(side), dtype=np.uint8)  # type: ignore[call-overload]
    offset, stride = int(side.blocks_offset), int(side.block_size)  # type: ignore[attr-defined]
    rows = np.lib.stride_tricks.as_strided(raw[offset:], shape=(n, 20), strides=(stride, 1))
    blocks = np.ascontiguousarray(rows).view("<i4").reshape(n, 5)
    x, y, w, h, delta = blocks.T
    if not ((w == MB).all() and (h == MB).all()):
        qp_map = np.asarray(side.qp_map(), dtype=np.float32)  # type: ignore[attr-defined]
    else:
        qp_map = np.zeros((int(y.max()) // MB + 1, int(x.max()) // MB + 1), dtype=np.float32)
        qp_map[y // MB, x // MB] = base + delta
    return float(qp_map.mean()), qp_map


def _full_chroma(name: str) -> str | None:
    """The 4:4:4 format to upsample chroma into before RGB, for subsampled YUV formats."""
    for sub in ("420p", "422p", "411p", "410p", "440p"):
        if name.startswith(("yuv", "yuvj")) and sub in name:
            return name.replace(sub, "444p")
    if name in ("nv12", "nv21", "nv16"):
        return "yuv444p"
    return None


def to_rgb(frame: av.VideoFrame) -> np.ndarray:  # for pictures that are not 4:2:0
    """Decoded picture as ``(H, W, 3)`` uint8 RGB.

    Subsampled YUV is first brought to 4:4:4 and then converted: swscale's direct
    4:2:0 -> RGB path darkens every channel by about one level (measured -1.0 to
    -1.4 on a texture), which would bias every PSNR and teach models to fix a
    conversion error instead of the codec's.
    """
    full = _full_chroma(frame.format.name)
    if full is not None:
        try:
            frame = frame.reformat(format=full)
        except (ValueError, av.FFmpegError):
            pass
    return frame.to_ndarray(format="rgb24")


class VideoReader:
    """Iterate the frames of a video with their codec priors, in display order.

    Args:
        path: any file FFmpeg can read (``.mp4``, ``.mkv``, ``.264``, ``.y4m``...).
        format: force a demuxer (``"rawvideo"`` for ``.yuv``; then give
            ``options={"video_size": "WxH", "pixel_format": "yuv420p"}``).
        options: demuxer options.
        priors: ``False`` decodes pictures only (fastest; empty priors).
        threads: decoder threads (0: FFmpeg decides).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotAVideoError: FFmpeg cannot open it.
        NoVideoStreamError: it has no video stream.
        UnsupportedVideoError: its pixel format is deeper than 16 bits.

    After iteration, :attr:`report` says what was lost. Iteration raises
    :class:`EmptyVideoError` when no frame decodes at all; damaged frames are
    reported, not raised (use :meth:`check` to turn them into an error).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,  # noqa: A002 - FFmpeg's word
        options: dict[str, str] | None = None,
        priors: bool = True,
        threads: int = 0,
    ) -> None:
        self.path = str(path)
        self._format, self._options = format, options
        self._want_priors = priors
        settings, rotation, hdr, first_pix_fmt = _peek(self.path, format, options)
        self._container = _open_container(self.path, format, options)
        try:
            self._stream = _video_stream(self._container, self.path)
            self.info = _stream_info(self.path, self._container, self._stream, settings, rotation, hdr,
                                     first_pix_fmt)
            if _bit_depth(self.info.pix_fmt) > _MAX_BIT_DEPTH:
                raise UnsupportedVideoError(f"{self.path}: pixel format {self.info.pix_fmt} is not supported")
        except BaseException:
            self.close()
            raise
        self.report = DecodeReport()
        self._interlaced: set[int] = set()  # display indices of interlaced pictures with vectors
        # Frame threading races with the export of per-frame side data: with it, the QP map
        # of a B-frame was sometimes garbage (frame QP 0.79 instead of 38 in 7 of 40 reads
        # of one clip). Slice threading keeps the side data whole; pictures alone use both.
        exported = priors and self.info.prior_source == "bitstream"
        self._stream.thread_type = "SLICE" if exported else "AUTO"
        self._stream.thread_count = threads
        if exported:
            self._stream.codec_context.options = {
                "flags2": "+export_mvs",
                "export_side_data": "venc_params",
            }
        if self.bit_depth > 8:
            log.info("%s: %s planes kept at %d bits (RGB, when asked, is 8-bit)", self.path, self.info.pix_fmt,
                     self.bit_depth)
        self._iterated = False

    @property
    def bit_depth(self) -> int:
        """Bits per sample of the coded pictures."""
        return _bit_depth(self.info.pix_fmt)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        self._container.close()

    def check(self) -> None:
        """Raise :class:`CorruptVideoError` if decoding lost or concealed anything."""
        if not self.report.ok:
            raise CorruptVideoError(f"{self.path}: {self.report.summary()}")

    def __iter__(self) -> Iterator[CodedFrame]:
        if self._iterated:
            raise RuntimeError(f"{self.path}: a VideoReader iterates once; open the file again")
        self._iterated = True
        frames = self._decoded_frames()
        if not self._want_priors:
            return frames
        if self.info.prior_source == "bitstream":
            return self._estimate_unusable_vectors(self._with_references(frames))
        return self._with_estimates(frames)

    # -- decoding ---------------------------------------------------------------------

    def _packets(self) -> Iterator[av.Packet]:
        demux = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.FFmpegError as exc:
                self.report.truncated = True
                self.report.messages.append(f"demuxing stopped: {exc}")
                log.warning("%s: demuxing stopped early: %s", self.path, exc)
                return
            yield packet

    def _decoded_frames(self, pictures: bool = True) -> Iterator[CodedFrame]:
        """Decode every packet; yield the frames meant to be shown, with bitstream priors
        but no references yet, and fill :attr:`report` on the way.

        Pre-roll packets that an edit list hides (FFmpeg flags them *discard*, as in an
        MP4 trimmed by stream copy) are decoded as pictures like the others, so that the
        reference structure around the first shown frame is known (:attr:`_preroll`), but
        they are not shown, counted or checked.
        """
        self._reference_flags: dict[int, bool | None] = {}
        self._preroll: list[tuple[int, FrameType]] = []  # (decode index, type), display order
        sizes: dict[int, int] = {}
        by_pts: dict[int, int] = {}  # timestamps are exact; opaque covers streams without them
        hidden: set[int] = set()
        last_pts: int | None = None
        flagged: set[int] = set()  # decode indices of packets the demuxer called corrupt
        decode_index = 0
        index = 0
        time_base = self._stream.time_base
        timing = _Timing(self._stream)
        is_h264 = self.info.codec == "h264"
        length_size = h264_nal_length_size(bytes(self._stream.codec_context.extradata or b""))
        self._stream.codec_context.copy_opaque = True
        for packet in self._packets():
            if packet.size:
                timing.add_packet(packet)
                if packet.is_discard:
                    hidden.add(decode_index)
                    packet = _undiscarded(packet)
                if packet.is_corrupt:
                    flagged.add(decode_index)
                    self.report.messages.append(f"packet {decode_index}: flagged corrupt by the demuxer")
                packet.opaque = decode_index
                if packet.pts is not None:
                    by_pts[packet.pts] = decode_index
                sizes[decode_index] = packet.size
                if is_h264 and self._want_priors:
                    self._reference_flags[decode_index] = h264_is_reference(bytes(packet), length_size)
                decode_index += 1
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                self.report.bad_packets.append(decode_index - 1)
                self.report.messages.append(f"packet {decode_index - 1}: {exc}")
                t = float(packet.pts * time_base) if packet.pts is not None and time_base else None
                self.report.spans.append(LostSpan("undecodable", t, t, 1))
                if pictures:  # a scan reports in its result, not in the log
                    log.warning("%s: packet %d failed to decode: %s", self.path, decode_index - 1, exc)
                continue
            for frame in decoded:
                dec = by_pts.pop(frame.pts, None) if frame.pts is not None else None
                if dec is None and isinstance(frame.opaque, int):
                    dec = frame.opaque
                size = sizes.pop(dec, None)
                if dec in hidden:
                    self._preroll.append((dec, _frame_type(frame)))
                    continue
                if frame.pts is not None and last_pts is not None and frame.pts <= last_pts:
                    # Damage upset the display order: writing it would go back in time.
                    self.report.spans.append(LostSpan("disordered", frame.time, frame.time, 1))
                    continue
                last_pts = frame.pts if frame.pts is not None else last_pts
                from_corrupt_packet = dec in flagged and not frame.is_corrupt
                if from_corrupt_packet:
                    self.report.corrupt_frames.append(index)
                    self.report.spans.append(_concealed(index, frame.time))
                timing.add(index, frame.pts)
                self.report.times.append(float(frame.time) if frame.time is not None else float("nan"))
                coded = self._coded_frame(frame, index, dec, size, time_base, pictures)
                coded.corrupt = coded.corrupt or from_corrupt_packet
                yield coded
                index += 1
        if index == 0:
            raise EmptyVideoError(f"{self.path}: no frame could be decoded ({self.report.summary()})")
        known = [sp.start for sp in self.report.spans if sp.cause in ("undecodable", "disordered")
                 and sp.start is not None]
        lost = len(self.report.bad_packets) + sum(1 for sp in self.report.spans if sp.cause == "disordered")
        cut = timing.cut(self._container, index, lost, self.info.frames and self.info.frames - len(hidden))
        if cut is not None or self.report.truncated:
            self.report.truncated = True
            self.report.spans.append(cut or LostSpan("cut", timing.end(), None, None))
        # A gap alone is what a variable frame rate looks like (a phone drops frames in low
        # light, OBS and browsers record so): damage only beside other damage, or when it
        # sits among the last frames (B-frames whose packets a cut took away).
        gaps = timing.gaps(known)
        for gap in gaps:
            if not self.report.ok or (gap.last is not None and index - gap.last <= _MAX_REORDER):
                self.report.spans.append(gap)
            else:
                self.report.timestamp_gaps.append(gap)
        self.report.spans = merge_spans(sorted(self.report.spans,
                                               key=lambda s: (s.start is None, s.start or 0.0, s.first or 0)))

    def _coded_frame(self, frame: av.VideoFrame, index: int, decode_index: int | None,
                     packet_size: int | None, time_base: Fraction | None, pictures: bool = True) -> CodedFrame:
        frame_type = _frame_type(frame)
        mvs, qp, qp_map = empty_mvs(), None, None
        for side in side_data(frame):
            kind = type(side).__name__
            if kind == "MotionVectors":
                mvs = _mvs_from_side_data(side)
                if self.info.codec == "h264" and frame_type == FrameType.B:
                    mvs = drop_unused_list_vectors(mvs)
            elif kind == "VideoEncParams":
                qp, qp_map = _qp_from_side_data(side)
        codec_qp = None
        if qp is not None and self.info.codec in MPEG_QUANTISER_CODECS:  # one QP scale for every codec
            codec_qp = qp
            qp_map = mpeg_quantiser_to_qp(qp_map) if qp_map is not None and qp_map.size else qp_map
            qp = float(qp_map.mean()) if qp_map is not None and qp_map.size else mpeg_quantiser_to_qp(qp)
        elif qp is not None and self.info.codec == "h264" and self.bit_depth > 8:
            # FFmpeg exports QP'Y = QPY + QpBdOffsetY (H.264 7.4.2.2: 6 x (bit depth - 8)); qp stays
            # on the 8-bit scale every model, threshold and quantiser step here is measured on
            codec_qp = qp
            offset = 6.0 * (self.bit_depth - 8)
            qp -= offset
            qp_map = qp_map - offset if qp_map is not None else qp_map
        if frame.is_corrupt:
            self.report.corrupt_frames.append(index)
            self.report.spans.append(_concealed(index, frame.time))
        if frame.interlaced_frame and len(mvs):
            self._interlaced.add(index)
        name = frame.format.name
        if not pictures:  # scanning: no picture is kept
            planes, rgb = None, np.zeros((0, 0, 3), np.uint8)
        else:
            planes = planes_from_frame(frame) if is_420(name) else None
            rgb = (lambda: to_rgb(frame)) if planes is not None else to_rgb(frame)
        pts = frame.pts
        return CodedFrame(
            index=index,
            pts=pts,
            time=float(pts * time_base) if pts is not None and time_base else None,
            packet_size=packet_size,
            planes=planes,
            rgb=rgb,
            pix_fmt=name,
            priors=FramePriors(
                frame_type=frame_type,
                key_frame=bool(frame.key_frame),
                qp=qp,
                qp_map=qp_map,
                mvs=mvs,
                source="bitstream",
                codec_qp=codec_qp,
            ),
            decode_index=decode_index,
            corrupt=bool(frame.is_corrupt),
        )

    # -- reference resolution ---------------------------------------------------------------

    def _with_references(self, frames: Iterator[CodedFrame]) -> Iterator[CodedFrame]:
        """Resolve each frame's reference distances, holding B-frames back until
        their future reference has been output."""
        tracker = ReferenceTracker()
        held: deque[tuple[CodedFrame, int]] = deque()  # (frame, position in tracker)
        types: list[FrameType] = []
        for frame in frames:
            if self._preroll:  # frames an edit list hides, decoded before the first shown one
                for dec, kind in self._preroll:
                    tracker.add_frame(dec, kind, self._reference_flags.pop(dec, None))
                    types.append(kind)
                self._preroll.clear()
            types = (types + [frame.priors.frame_type])[-_MAX_HOLD:]
            if frame.decode_index is None:  # the decoder lost the packet link
                yield from self._release_all(held, tracker)
                refs = fallback_references(types, len(types) - 1)
                frame.priors.ref_past, frame.priors.ref_future = _mask_refs(frame, refs)
                tracker = ReferenceTracker()
                yield frame
                continue
            flag = self._reference_flags.pop(frame.decode_index, None)
            pos = tracker.add_frame(frame.decode_index, frame.priors.frame_type, flag)
            frame.priors.ref_past = tracker.past_reference(pos)
            held.append((frame, pos))
            while held and self._resolved(held[0], tracker, len(held)):
                yield self._release(held.popleft(), tracker)
        yield from self._release_all(held, tracker)

    @staticmethod
    def _resolved(item: tuple[CodedFrame, int], tracker: ReferenceTracker, waiting: int) -> bool:
        frame, pos = item
        if not (frame.priors.mvs["direction"] > 0).any() or waiting > _MAX_HOLD:
            return True
        return tracker.future_reference(pos) is not None

    @staticmethod
    def _release(item: tuple[CodedFrame, int], tracker: ReferenceTracker) -> CodedFrame:
        frame, pos = item
        refs = (frame.priors.ref_past, tracker.future_reference(pos))
        frame.priors.ref_past, frame.priors.ref_future = _mask_refs(frame, refs)
        return frame

    def _release_all(self, held: deque[tuple[CodedFrame, int]], tracker: ReferenceTracker) -> Iterator[CodedFrame]:
        while held:
            yield self._release(held.popleft(), tracker)

    # -- estimated priors -----------------------------------------------------------------

    def _estimate_unusable_vectors(self, frames: Iterator[CodedFrame]) -> Iterator[CodedFrame]:
        """Replace the bitstream vectors FFmpeg exports wrongly by vectors estimated from
        the neighbours' pixels, marked ``"estimated"`` (QP and frame type stay the
        bitstream's):

        * MPEG-4 Part 2 B-frames, whose vectors are all exported as (0, 0);
        * interlaced pictures (H.264 MBAFF/PAFF, MPEG-2 field prediction): field
          macroblocks carry vectors in field lines, half the vertical size, and the
          export does not say which macroblocks are field-coded, so no reliable scaling
          exists.
        """
        previous: CodedFrame | None = None
        current: CodedFrame | None = None
        replaced: dict[str, int] = {}
        for frame in frames:
            if current is not None:
                self._replace_unusable(previous, current, frame, replaced)
                yield current
            previous, current = current, frame
        if current is not None:
            self._replace_unusable(previous, current, None, replaced)
            yield current
        for why, n in replaced.items():
            log.warning("%s: %d %s; their vectors were estimated from pixels (marked estimated)", self.path, n, why)

    def _replace_unusable(self, previous: CodedFrame | None, frame: CodedFrame, following: CodedFrame | None,
                          replaced: dict[str, int]) -> None:
        from codecave.codec.estimate import estimate_priors

        mvs, kind = frame.priors.mvs, frame.priors.frame_type
        if kind == FrameType.I or not len(mvs):
            return
        if frame.index in self._interlaced:
            self._interlaced.discard(frame.index)
            why = "interlaced picture(s), whose field vectors FFmpeg exports in field lines"
        elif (self.info.codec in ZERO_B_VECTOR_CODECS and kind == FrameType.B
              and not (mvs["dx"] != 0).any() and not (mvs["dy"] != 0).any()):
            why = f"B-frame(s) of {self.info.codec} with no real vector in FFmpeg's export"
        else:
            return
        group = [f for f in (previous, frame, following) if f is not None]
        k = 0 if previous is None else 1
        types = [FrameType.P] * len(group)
        types[k] = kind
        estimated = estimate_priors([f.rgb for f in group], types)[k]
        frame.priors.mvs = estimated.mvs
        frame.priors.ref_past, frame.priors.ref_future = estimated.ref_past, estimated.ref_future
        frame.priors.source = "estimated"
        replaced[why] = replaced.get(why, 0) + 1

    def _with_estimates(self, frames: Iterator[CodedFrame]) -> Iterator[CodedFrame]:
        """Estimate vectors from pixels, one frame of look-ahead for B-frames."""
        settings = self.info.encoder
        qp = None
        if settings is not None:
            qp = settings.qp if settings.qp is not None else settings.crf
        previous: CodedFrame | None = None
        window: deque[CodedFrame] = deque()
        for frame in frames:
            window.append(frame)
            if len(window) < 2:
                continue
            yield self._estimated(window[0], previous, window[1], qp)
            previous = window.popleft()
        if window:
            yield self._estimated(window[0], previous, None, qp)

    @staticmethod
    def _estimated(frame: CodedFrame, previous: CodedFrame | None, following: CodedFrame | None,
                   qp: float | None) -> CodedFrame:
        from codecave.codec.estimate import estimate_priors

        group = [f for f in (previous, frame, following) if f is not None]
        types = [f.priors.frame_type for f in group]
        k = 0 if previous is None else 1
        if previous is None and types[k] != FrameType.I:
            types[k] = FrameType.I  # nothing to predict from
        priors = estimate_priors([f.rgb for f in group], types, qp=qp)[k]
        priors.frame_type = frame.priors.frame_type
        priors.key_frame = frame.priors.key_frame
        frame.priors = priors
        return frame


def _frame_type(frame: av.VideoFrame) -> FrameType:
    return _PICT_TYPES.get(int(frame.pict_type), FrameType.I if frame.key_frame else FrameType.P)


def _undiscarded(packet: av.Packet) -> av.Packet:
    """A copy of a pre-roll packet without FFmpeg's *discard* flag, so that its frame
    comes out of the decoder (the flag cannot be cleared in place)."""
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    copy.is_keyframe = packet.is_keyframe
    copy.stream = packet.stream
    return copy


def _concealed(index: int, time: float | None) -> LostSpan:
    return LostSpan("concealed", time, time, 1, index, index)


def merge_spans(spans: list[LostSpan]) -> list[LostSpan]:
    """Join concealed frames that follow each other into one span."""
    out: list[LostSpan] = []
    for span in spans:
        last = out[-1] if out else None
        if (last is not None and span.cause == last.cause == "concealed" and last.last is not None
                and span.first == last.last + 1):
            out[-1] = LostSpan("concealed", last.start, span.end, (last.frames or 0) + 1, last.first, span.first)
        else:
            out.append(span)
    return out


#: Frames a decoder may hold back for reordering (B-frames): a gap this close to the end is a cut.
_MAX_REORDER = 4
#: Containers that store their duration or frame count in a header, so that a cut end shows.
_HEADER_DURATION_FORMATS = ("mov", "matroska", "webm", "avi")


def _duration_tag(stream: av.VideoStream) -> float | None:
    """Matroska's per-track ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), in seconds."""
    text = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if not text:
        return None
    try:
        h, m, sec = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


class _Timing:
    """Presentation timestamps of the shown frames and the packets' end: gaps, and a cut end."""

    def __init__(self, stream: av.VideoStream) -> None:
        self.stream = stream
        self.time_base = Fraction(stream.time_base) if stream.time_base else None
        self.index = array("q")
        self.pts = array("q")
        self.packet_end: int | None = None  # latest pts + duration of any packet read

    def add(self, index: int, pts: int | None) -> None:
        if pts is not None and (not self.pts or pts > self.pts[-1]):
            self.index.append(index)
            self.pts.append(pts)

    def add_packet(self, packet: av.Packet) -> None:
        if packet.pts is not None:
            end = packet.pts + max(int(packet.duration or 0), 0)
            self.packet_end = end if self.packet_end is None else max(self.packet_end, end)

    def interval(self) -> float | None:
        """Typical ticks between frames shown one after the other (None: unknown)."""
        steps = [(self.pts[k + 1] - self.pts[k]) / (self.index[k + 1] - self.index[k])
                 for k in range(len(self.pts) - 1)]
        if len(steps) >= 2:
            return float(np.median(steps))
        rate = self.stream.average_rate or self.stream.guessed_rate
        return float(1 / (Fraction(rate) * self.time_base)) if rate and self.time_base else None

    def seconds(self, ticks: float) -> float:
        return float(ticks * self.time_base) if self.time_base else 0.0

    def end(self) -> float | None:
        """When the last shown frame ends, in seconds."""
        step = self.interval()
        return self.seconds(self.pts[-1] + (step or 0)) if self.pts else None

    def gaps(self, known: list[float]) -> list[LostSpan]:
        """Missing frames where the timestamps jump in a stream whose frames are otherwise
        evenly spaced (at least 90% of steps within 10% of the typical one); a variable
        frame rate stream is not judged by its gaps. Frames already known to be lost at
        a time inside a gap (``known``: rejected or disordered frames) are not counted
        again."""
        step = self.interval()
        n = len(self.pts)
        if step is None or step <= 0 or n < 4:
            return []
        single = [self.pts[k + 1] - self.pts[k] for k in range(n - 1) if self.index[k + 1] - self.index[k] == 1]
        if not single or np.mean(np.abs(np.asarray(single) / step - 1) <= 0.1) < 0.9:
            return []
        out = []
        for k in range(n - 1):
            missing = round((self.pts[k + 1] - self.pts[k]) / step) - (self.index[k + 1] - self.index[k])
            if missing < 1:
                continue
            start, end = self.seconds(self.pts[k]), self.seconds(self.pts[k + 1])
            missing -= sum(1 for t in known if start < t < end)
            if missing >= 1:
                out.append(LostSpan("missing", end - self.seconds(missing * step), end, missing,
                                    last=int(self.index[k + 1])))
        return out

    def cut(self, container: av.container.InputContainer, shown: int, lost: int,
            announced: int | None) -> LostSpan | None:
        """The end that is missing, judged against what the container's header states:
        MP4/MOV by the frame count of its index (every sample listed: a long last frame
        is not a cut), Matroska/WebM/AVI by the duration, compared with where the packets
        read end; None when complete or when the container states neither (MPEG-TS/PS)."""
        name = container.format.name
        if not name.startswith(_HEADER_DURATION_FORMATS):
            return None
        step, end = self.interval(), self.end()
        if name.startswith("mov"):
            if announced and announced > shown + lost:
                return LostSpan("cut", end, None, announced - shown - lost)
            return None
        stream = self.stream
        total = None
        if stream.duration is not None and self.time_base:
            total = self.seconds((stream.start_time or 0) + stream.duration)
        elif _duration_tag(stream) is not None:
            total = _duration_tag(stream)
        elif len(container.streams) == 1 and container.duration is not None:
            total = container.duration / av.time_base
        read = self.seconds(self.packet_end) if self.packet_end is not None else end
        if total is not None and read is not None and step:
            missing = round((total - read) / self.seconds(step))
            if missing >= 1:
                return LostSpan("cut", end, total, missing)
        if announced and announced > shown + lost:
            return LostSpan("cut", end, total, announced - shown - lost)
        return None


def _mask_refs(frame: CodedFrame, refs: tuple[int | None, int | None]) -> tuple[int | None, int | None]:
    """Keep a reference distance only where the frame has vectors in that direction."""
    d = frame.priors.mvs["direction"]
    past = refs[0] if (d < 0).any() else None
    future = refs[1] if (d > 0).any() else None
    if past is None and (d < 0).any():
        log.debug("frame %d: past vectors but no past reference resolved; assuming 1", frame.index)
        past = 1
    if future is None and (d > 0).any():
        log.debug("frame %d: future vectors but no future reference resolved; assuming 1", frame.index)
        future = 1
    return past, future


def scan_video(path: str | os.PathLike[str], **kwargs: object) -> DecodeReport:
    """Decode a whole file, keeping no picture, and say what was lost or concealed.

    Fast next to any model (pictures are decoded with all decoder threads and dropped):
    :func:`codecave.enhance.enhance_video` runs it first, so that damage is known
    before anything is enhanced or written.

    Raises:
        The errors of :class:`VideoReader`, and :class:`EmptyVideoError` when no frame decodes.
    """
    with open_video(path, priors=False, **kwargs) as video:  # type: ignore[arg-type]
        if video.info.prior_source == "bitstream":
            # Decode with the threading a read with priors uses: concealment can differ
            # between frame and slice threading, and the two reads must agree.
            video._stream.thread_type = "SLICE"
        video._iterated = True
        for _ in video._decoded_frames(pictures=False):
            pass
        return video.report


def open_video(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,  # noqa: A002
    options: dict[str, str] | None = None,
    priors: bool = True,
    threads: int = 0,
) -> VideoReader:
    """Open a video for reading; see :class:`VideoReader`."""
    return VideoReader(path, format=format, options=options, priors=priors, threads=threads)


def read_info(path: str | os.PathLike[str], **kwargs: object) -> StreamInfo:
    """Stream-level facts of a video, without decoding it."""
    with open_video(path, priors=False, **kwargs) as video:  # type: ignore[arg-type]
        return video.info


def yuv_options(width: int, height: int, pix_fmt: str = "yuv420p", fps: Fraction | int = 25) -> dict[str, str]:
    """Demuxer options that read a raw ``.yuv`` file (use with ``format="rawvideo"``)."""
    return {"video_size": f"{width}x{height}", "pixel_format": pix_fmt, "framerate": str(Fraction(fps))}


__all__ = [
    "BITSTREAM_PRIOR_CODECS",
    "DecodeReport",
    "LostSpan",
    "VideoReader",
    "check_input_file",
    "open_video",
    "read_info",
    "scan_video",
    "yuv_options",
]
