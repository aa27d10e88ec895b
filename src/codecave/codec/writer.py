"""Write frames into a new video shaped like a source video.

The new file keeps the source's frame rate, time base and per-frame timestamps
(variable frame rate included), colour metadata and display rotation, and copies
every audio and subtitle stream without re-encoding, interleaved by time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from codecave.codec.encode import EncodeSettings, _add_stream, _stream_options
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
        time_range: copy only extra-stream packets in ``[start, end)`` seconds (for
            excerpts); None copies all.

    Use as a context manager; :meth:`abort` discards a half-written file.
    """

    def __init__(self, path: str | os.PathLike[str], source: str | os.PathLike[str], settings: EncodeSettings,
                 *, rotation: int = 0, time_range: tuple[float, float] | None = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self.time_range = time_range
        self._source = av.open(str(source))
        try:
            self._container = av.open(str(self.path), mode="w")
        except (av.FFmpegError, ValueError) as exc:
            self._source.close()
            raise EncoderError(f"{self.path}: cannot write this container ({exc})") from exc
        src = self._source.streams.video[0]
        self._src_video = src
        self._rotation = rotation
        self.frames = 0
        try:
            self._stream = self._open_video(src.codec_context.width, src.codec_context.height)
        except BaseException:
            self.abort()
            raise
        self._copies = {}
        for s in self._source.streams:
            if s.type in COPIED_KINDS:
                try:
                    self._copies[s.index] = self._container.add_stream_from_template(s)
                except (av.FFmpegError, ValueError) as exc:
                    log.warning("%s: stream %d (%s) cannot go into %s and is left out: %s",
                                source, s.index, s.type, self.path.suffix, exc)
        self._packets: Iterator[av.Packet] | None = (
            self._source.demux(*[self._source.streams[i] for i in self._copies]) if self._copies else None)
        self._pending: av.Packet | None = None

    def _open_video(self, width: int, height: int) -> av.VideoStream:
        s = self.settings
        src = self._src_video
        fps = src.average_rate or src.guessed_rate or Fraction(25)
        self._pix_fmt = s.pix_fmt
        if s.pix_fmt.startswith(("yuv420", "nv12")) and (width % 2 or height % 2):
            if s.codec not in ("x264", "x265"):
                raise EncoderError(f"{self.path}: {width}x{height} has an odd side; {s.pix_fmt} needs even sides "
                                   "(use --codec ffv1 or x264)")
            log.warning("%s: %dx%d has an odd side, so the output is 4:4:4 (yuv444p) instead of %s",
                        self.path, width, height, s.pix_fmt)
            self._pix_fmt = "yuv444p"
        opts, attrs = _stream_options(s)
        stream = _add_stream(self._container, s.encoder, fps, width, height, self._pix_fmt, opts, attrs)
        if src.time_base:
            stream.time_base = src.time_base
            stream.codec_context.time_base = src.time_base
        ctx, sctx = stream.codec_context, src.codec_context
        for name in ("color_range", "color_primaries", "color_trc", "colorspace"):
            value = getattr(sctx, name, None)
            if value:
                try:
                    setattr(ctx, name, value)
                except (ValueError, TypeError, AttributeError):
                    log.debug("cannot set %s=%r on the output", name, value)
        if self._rotation:
            stream.set_display_rotation(self._rotation)
        return stream

    def write(self, rgb: np.ndarray, pts: int | None, time: float | None = None) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame with the source's ``pts`` (in its time base)."""
        if rgb.shape[:2] != (self._stream.height, self._stream.width):
            raise EncoderError(f"{self.path}: frame {self.frames} is {rgb.shape[1]}x{rgb.shape[0]}, "
                               f"the video is {self._stream.width}x{self._stream.height}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        stream = self._stream
        colorspace = self._src_video.codec_context.colorspace
        kwargs = {"dst_colorspace": colorspace} if colorspace else {}
        try:
            out = frame.reformat(format=self._pix_fmt, **kwargs)
        except (ValueError, av.FFmpegError):
            out = frame.reformat(format=self._pix_fmt)
        out.pts = pts if pts is not None else self.frames
        out.time_base = stream.time_base
        try:
            for packet in stream.encode(out):
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise EncoderError(f"{self.path}: {self.settings.encoder} failed at frame {self.frames}: {exc}") from exc
        self.frames += 1
        if time is not None:
            self._copy_until(time)

    def _copy_until(self, seconds: float | None) -> None:
        """Mux copied packets whose time is before ``seconds`` (all when None)."""
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
            if seconds is not None and t > seconds:
                self._pending = packet
                return
            self._pending = None
            if self.time_range is not None and not (self.time_range[0] <= t < self.time_range[1]):
                continue
            packet.stream = self._copies[packet.stream_index]
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the remaining packets and close the file."""
        if self.frames == 0:
            self.abort()
            raise EncoderError(f"{self.path}: no frames were written")
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._copy_until(None)
        finally:
            self._container.close()
            self._source.close()

    def abort(self) -> None:
        """Close without finishing; the caller removes the file."""
        for c in (self._container, self._source):
            try:
                c.close()
            except (av.FFmpegError, OSError):
                pass
