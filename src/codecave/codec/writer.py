"""Write frames into a new video shaped like a source video.

Pictures come as YUV 4:2:0 planes, which reach the encoder unchanged when the
output has their pixel format (by default the source's own format and bit depth:
:data:`SOURCE_FORMAT`), or as RGB, converted by swscale with the source's matrix.
The new file keeps the source's frame rate, time base and per-frame timestamps
(variable frame rate included), colour metadata and display rotation, and copies
every audio and subtitle stream without re-encoding, interleaved by time, and the
attachments of a Matroska source (fonts for styled subtitles) when the output is
Matroska too (other containers cannot hold them: a warning says so).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from codecave.codec.convert import (
    _SPACES as _SPACE_NAMES,
)
from codecave.codec.convert import (
    format_bit_depth,
    is_420,
    planar_format,
    planes_to_frame,
    rgb_frame_to_yuv420,
)
from codecave.codec.encode import EncodeSettings, _add_stream, _stream_options
from codecave.codec.priors import YUVPlanes
from codecave.errors import EncoderError

log = logging.getLogger(__name__)

#: Stream kinds copied from the source without re-encoding.
COPIED_KINDS = ("audio", "subtitle")


class VideoWriter:
    """Encode frames into ``path`` with the source's timing, metadata and extra streams.

    Args:
        path: file to write; the container follows its extension.
        source: the video the frames come from.
        settings: encoder settings for the video stream.
        rotation: display rotation to record (degrees), as read from the source.
        start: for excerpts, the source time (seconds) of the first frame written: the
            output starts at zero, and copied streams are cut to the frames' span and
            shifted with them. None copies all of them.
        first_time: source time (seconds) of the first frame written, for whole files:
            the output starts at zero, every stream shifted by the same amount (the
            earliest of this and the copied streams' start times), so that a transport
            stream that starts at 10 s or a program stream at 0.5 s does not begin with
            empty seconds, and their relative offsets (audio sync) are kept. Negative
            starts (an audio encoder's priming, hidden by an edit list) are left alone.
        planes: the pictures will be the source's own YUV planes (enhanced), so the
            source's colour range is kept (RGB pictures are written in limited range).
        hdr: the source's HDR10 static metadata (``StreamInfo.hdr``): passed to x265,
            which writes it into the stream; other encoders cannot carry it, and a
            warning says so.
        name: what messages call the file (the final name when ``path`` is a temporary one).
        scale: the pictures are this many times wider and taller than the source's
            (4 for 4x super-resolution); timing, metadata and copied streams are the same.

    Every failure to write (a full disk, a folder that became read-only) raises
    :class:`EncoderError` naming ``name``. :meth:`abort` discards a half-written file.
    """

    def __init__(self, path: str | os.PathLike[str], source: str | os.PathLike[str], settings: EncodeSettings,
                 *, rotation: int = 0, start: float | None = None, planes: bool = False,
                 hdr: dict[str, str] | None = None, first_time: float | None = None,
                 name: str | os.PathLike[str] | None = None, scale: int = 1) -> None:
        self.path = Path(path)
        self.name = Path(name) if name is not None else self.path
        self._planes = planes
        settings = _with_hdr(settings, hdr, self.name)
        self.settings = settings
        self.start = start
        self._source = av.open(str(source), metadata_errors="replace")
        try:
            self._container = av.open(str(self.path), mode="w")
            # Bit-exact muxing: no random Matroska UIDs or version strings, so that an output
            # depends only on its input and settings (the same bytes from any worker or node).
            self._container.flags |= av.container.Flags.bitexact.value
        except (av.FFmpegError, ValueError) as exc:
            self._source.close()
            raise EncoderError(f"{self.name}: cannot write this container ({exc})") from exc
        src = self._source.streams.video[0]
        self._src_video = src
        self._rotation = rotation
        self.frames = 0
        fps = src.average_rate or src.guessed_rate or Fraction(25)
        #: Timestamps are written in the source's time base (the muxer may change the
        #: stream's own time base when it writes the header).
        self._time_base = Fraction(src.time_base) if src.time_base else 1 / Fraction(fps)
        self._frame_ticks = max(1, round(1 / (Fraction(fps) * self._time_base)))
        self._frame_seconds = float(1 / Fraction(fps))
        if start is not None:
            offset = start
        else:
            starts = [float(x.start_time * x.time_base) for x in self._source.streams
                      if x.type in COPIED_KINDS and x.start_time is not None and x.time_base]
            offset = max(0.0, min([t for t in (first_time, *starts) if t is not None], default=0.0))
        #: Seconds every stream is moved back by, so that the output starts at zero.
        self.offset = offset
        self._shift = round(Fraction(offset) / self._time_base) if offset else 0
        self._last_pts: int | None = None
        self._last_time: float | None = None
        self._copies = {}
        try:
            self._stream = self._open_video(scale * src.codec_context.width, scale * src.codec_context.height)
            for s in self._source.streams:
                if s.type in COPIED_KINDS:
                    try:
                        self._copies[s.index] = copy = self._container.add_stream_from_template(s)
                        _copy_tags(s, copy)
                    except (av.FFmpegError, ValueError) as exc:
                        log.warning("%s: stream %d (%s) cannot go into %s and is left out: %s",
                                    source, s.index, s.type, self.name.suffix, exc)
            self._attach(source)
        except BaseException:
            self.abort()
            raise
        self._packets: Iterator[av.Packet] | None = (
            self._source.demux(*[self._source.streams[i] for i in self._copies]) if self._copies else None)
        self._pending: av.Packet | None = None

    def _attach(self, source: str | os.PathLike[str]) -> None:
        """Copy the source's attachments (the fonts that styled subtitles need, cover art)."""
        attachments = [s for s in self._source.streams if s.type == "attachment"]
        if not attachments:
            return
        if self._container.format.name != "matroska":
            log.warning("%s: %s cannot carry the source's %d attachment(s) (%s); they are left out "
                        "(use .mkv to keep them)", self.name, self._container.format.name, len(attachments),
                        ", ".join(str(a.name) for a in attachments))
            return
        for a in attachments:
            self._container.add_attachment(str(a.name), str(a.mimetype or "application/octet-stream"),
                                           bytes(a.data))

    def _open_video(self, width: int, height: int) -> av.VideoStream:
        s = self.settings
        src = self._src_video
        fps = src.average_rate or src.guessed_rate or Fraction(25)
        self._pix_fmt = output_pix_fmt(s, src.codec_context.pix_fmt or "yuv420p", str(self.name))
        if self._pix_fmt.startswith(("yuv420", "nv12")) and (width % 2 or height % 2):
            if s.codec not in ("x264", "x265"):
                raise EncoderError(f"{self.name}: {width}x{height} has an odd side; {self._pix_fmt} needs even "
                                   "sides (use --codec ffv1 or x264)")
            log.warning("%s: %dx%d has an odd side, so the output is 4:4:4 (yuv444p) instead of %s",
                        self.name, width, height, self._pix_fmt)
            self._pix_fmt = "yuv444p"
        opts, attrs = _stream_options(s)
        stream = _add_stream(self._container, s.encoder, fps, width, height, self._pix_fmt, opts, attrs)
        if src.time_base:
            stream.time_base = src.time_base
            stream.codec_context.time_base = src.time_base
        ctx, sctx = stream.codec_context, src.codec_context
        for name in ("color_range", "color_primaries", "color_trc", "colorspace"):
            value = getattr(sctx, name, None)
            if name == "color_range" and value and int(value) != 1 and not self._planes:
                # swscale writes limited ("tv") range from RGB; do not tag it as full range.
                value = 1
            if value:
                try:
                    setattr(ctx, name, value)
                except (ValueError, TypeError, AttributeError):
                    log.debug("cannot set %s=%r on the output", name, value)
        sar = sctx.sample_aspect_ratio
        if sar and sar.numerator > 0 and sar != 1:
            # Anamorphic sources (DVD, broadcast) display wider or narrower than stored.
            ctx.sample_aspect_ratio = sar
        _copy_tags(src, stream)
        if self._rotation:
            stream.set_display_rotation(self._rotation)
        return stream

    def write(self, picture: np.ndarray | YUVPlanes, pts: int | None, time: float | None = None) -> None:
        """Encode one picture with the source's ``pts`` (in its time base).

        Args:
            picture: :class:`~codecave.codec.priors.YUVPlanes` (passed to the encoder
                unchanged when the output has their format, the default) or an
                ``(H, W, 3)`` uint8 RGB frame (converted by swscale with the source's matrix).
            pts: presentation timestamp in the source's time base (None for raw streams).
            time: source time in seconds, for interleaving the copied streams.
        """
        planes = picture if isinstance(picture, YUVPlanes) else None
        size = (planes.height, planes.width) if planes is not None else picture.shape[:2]
        if size != (self._stream.height, self._stream.width):
            raise EncoderError(f"{self.name}: frame {self.frames} is {size[1]}x{size[0]}, "
                               f"the video is {self._stream.width}x{self._stream.height}")
        stream = self._stream
        if planes is not None:
            out = planes_to_frame(planes, self._pix_fmt)
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            space = _SPACE_NAMES.get(int(self._src_video.codec_context.colorspace or 0))
            out = rgb_frame_to_yuv420(frame, space, self._pix_fmt)
        if pts is None:  # raw streams: continue one frame after the last timestamp
            pts = 0 if self._last_pts is None else self._last_pts + self._frame_ticks
        self._last_pts = pts
        out.pts = pts - self._shift
        out.time_base = self._time_base
        with self._writing():
            for packet in stream.encode(out):
                self._container.mux(packet)
            self.frames += 1
            if time is None:
                time = float(pts * self._time_base)
            self._last_time = time
            self._copy_until(time, inclusive=True)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn encoder and file errors into one :class:`EncoderError` that names the output."""
        try:
            yield
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise EncoderError(f"{self.name}: writing failed at frame {self.frames} ({reason})") from exc

    def _copy_until(self, seconds: float | None, inclusive: bool = False) -> None:
        """Mux copied packets whose source time is before ``seconds`` (all when None)."""
        if self._packets is None:
            return
        while True:
            packet = self._pending
            if packet is None:
                packet = next(self._packets, None)
                if packet is None:
                    self._packets = None
                    return
            if packet.dts is None and packet.pts is None:
                self._pending = None
                continue
            t = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
            if seconds is not None and (t > seconds if inclusive else t >= seconds):
                self._pending = packet
                return
            self._pending = None
            if self.start is not None and t < self.start:
                continue
            if self.offset:
                shift = round(Fraction(self.offset) / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
            packet.stream = self._copies[packet.stream_index]
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the remaining packets and close the file."""
        if self.frames == 0:
            self.abort()
            raise EncoderError(f"{self.name}: no frames were written")
        try:
            with self._writing():
                for packet in self._stream.encode():
                    self._container.mux(packet)
                if self.start is None:
                    self._copy_until(None)
                elif self._last_time is not None:
                    self._copy_until(self._last_time + self._frame_seconds)
                self._container.close()
        finally:
            self.abort()

    def abort(self) -> None:
        """Close without finishing; the caller removes the file."""
        for c in (self._container, self._source):
            try:
                c.close()
            except (av.FFmpegError, OSError):
                pass


def _with_hdr(settings: EncodeSettings, hdr: dict[str, str] | None, path: Path) -> EncodeSettings:
    """Settings that carry the source's HDR10 metadata, where the encoder can."""
    if not hdr:
        return settings
    if settings.encoder == "libx265":
        return settings.with_(params={**hdr, "hdr10": "1", **settings.params})
    log.warning("%s: the source carries HDR10 metadata (%s) that %s cannot write; the output loses it "
                "(use --codec x265 to keep it)", path, ", ".join(f"{k}={v}" for k, v in hdr.items()),
                settings.encoder)
    return settings


#: ``EncodeSettings.pix_fmt`` value that means "the source's own 4:2:0 format and bit depth".
SOURCE_FORMAT = "source"


def output_pix_fmt(settings: EncodeSettings, source_pix_fmt: str, path: str = "output") -> str:
    """The pixel format to encode in.

    ``settings.pix_fmt`` is taken as given, except :data:`SOURCE_FORMAT`, which picks
    the planar 4:2:0 format of the source's bit depth (``yuv420p10le`` for a 10-bit
    source), or the deepest 4:2:0 format the encoder takes below it (with a warning),
    and ``yuv420p`` for sources that are not 4:2:0.
    """
    if settings.pix_fmt != SOURCE_FORMAT:
        return settings.pix_fmt
    if not is_420(source_pix_fmt):
        return "yuv420p"
    depth = format_bit_depth(source_pix_fmt)
    formats = {f.name for f in (av.codec.Codec(settings.encoder, "w").video_formats or ())}
    for d in range(depth, 7, -1):
        if planar_format(d) in formats or not formats:
            if d != depth:
                log.warning("%s: %s cannot encode %d-bit 4:2:0; writing %d bits", path, settings.encoder, depth, d)
            return planar_format(d)
    return "yuv420p"


#: Stream tags that describe content (muxer bookkeeping such as DURATION is left out).
COPIED_TAGS = ("language", "title", "handler_name")


def _copy_tags(source: av.stream.Stream, target: av.stream.Stream) -> None:
    """Carry a stream's language and title over to its counterpart in the output."""
    for key, value in source.metadata.items():
        if key.lower() in COPIED_TAGS and value:
            target.metadata[key.lower()] = value


#: The codec each encoder writes, as FFmpeg's muxers name it.
CODEC_OF_ENCODER = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1", "ffv1": "ffv1",
                    "mpeg4": "mpeg4", "mpeg2video": "mpeg2video"}
#: Output codecs tried in this order when none is chosen (x265 first for HDR sources).
AUTO_CODECS = ("x264", "x265", "svtav1", "ffv1")
#: Codecs any muxer that really lists what it carries names (MPEG-TS lists only its defaults).
_MODERN_CODECS = frozenset({"h264", "hevc", "av1", "vp9", "ffv1", "mpeg4"})
#: Muxers that write pictures, not videos.
_PICTURE_MUXERS = ("image2", "apng", "gif", "webp")


def output_container(path: str | os.PathLike[str]) -> tuple[str, frozenset[str]]:
    """The muxer FFmpeg picks for ``path``'s extension and the codecs it can carry
    (nothing is written: :func:`trial_write` checks the folder).

    Returns:
        ``(muxer name, codec names)``; an empty set means the muxer does not list them.

    Raises:
        EncoderError: the extension is not a video container FFmpeg writes (naming ``path``).
    """
    path = Path(path)
    try:
        # Opening for writing creates nothing until a header is written.
        container = av.open(str(path), mode="w")
    except (ValueError, av.FFmpegError) as exc:
        raise EncoderError(f"{path}: FFmpeg has no video container for "
                           f"{path.suffix or 'a name without an extension'!r} (use .mp4, .mkv, .mov or .webm)") from exc
    try:
        name, codecs = container.format.name, frozenset(container.supported_codecs)
    finally:
        container.close()
    if not codecs & _MODERN_CODECS:  # a muxer with no codec list (MPEG-TS) names only its defaults
        codecs = frozenset()
    if name in _PICTURE_MUXERS:
        raise EncoderError(f"{path}: {path.suffix} is a picture format, not a video container "
                           "(use .mp4, .mkv, .mov or .webm)")
    return name, codecs


def _written_codec(codec: str) -> str:
    """The codec (FFmpeg's name) that encoder ``codec`` (codecave's or FFmpeg's name) writes."""
    from codecave.codec.encode import ENCODERS

    return CODEC_OF_ENCODER.get(ENCODERS.get(codec, codec), codec)


def carries(codecs: frozenset[str], codec: str) -> bool:
    """Whether a container that lists ``codecs`` can carry what encoder ``codec`` writes."""
    return not codecs or _written_codec(codec) in codecs


def choose_codec(path: str | os.PathLike[str], chosen: str | None, hdr: dict[str, str] | None = None) -> str:
    """The output codec for ``path``: ``chosen`` if its container can carry it, else the
    first of :data:`AUTO_CODECS` it can (x265 first when the source has HDR10 metadata,
    which only x265 writes).

    Raises:
        EncoderError: ``chosen`` cannot go into this container (the message lists those that can),
            or the container is not one FFmpeg writes (see :func:`output_container`).
    """
    path = Path(path)
    muxer, codecs = output_container(path)
    usable = [c for c in AUTO_CODECS if carries(codecs, c)]
    if chosen is not None:
        if carries(codecs, chosen):
            return chosen
        hint = f"use --codec {' or '.join(usable)}" if usable else "use .mkv or .mp4"
        raise EncoderError(f"{path}: {muxer} cannot carry {_written_codec(chosen)} (--codec {chosen}): {hint}")
    order = ("x265", *AUTO_CODECS) if hdr else AUTO_CODECS
    for codec in order:
        if carries(codecs, codec):
            return codec
    raise EncoderError(f"{path}: {muxer} carries none of the codecs codecave writes ({', '.join(AUTO_CODECS)}); "
                       "use .mkv or .mp4")


def trial_write(output: str | os.PathLike[str], source: str | os.PathLike[str], settings: EncodeSettings,
                scale: int = 1) -> None:
    """Open ``output`` as it will be written (container, encoder, picture size and pixel
    format, copied streams) and write its header to a throwaway file beside it, so that
    what would fail at the first frame (a muxer that takes no such codec, as ``.y4m`` or
    ``.ogv`` with x264; an encoder that refuses the size) fails before any frame is
    enhanced. Warnings are left to the real run.

    Raises:
        EncoderError: naming ``output`` and the reason (its folder cannot be written to,
            or the container or encoder refuses).
    """
    output = Path(output)
    probe = output.with_name(f".{output.stem}.codecave-check-{os.getpid()}{output.suffix}")
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise EncoderError(f"{output}: cannot write in {output.parent} ({exc.strerror})") from exc
    writer = None
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        writer = VideoWriter(probe, source, settings, name=output, scale=scale)
        try:
            writer._container.start_encoding()
        except (av.FFmpegError, ValueError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise EncoderError(f"{output}: {writer._container.format.name} cannot take {settings.encoder} "
                               f"video ({reason}); choose another --codec or extension (.mkv takes all)") from exc
    finally:
        log.setLevel(level)
        if writer is not None:
            writer.abort()
        probe.unlink(missing_ok=True)
