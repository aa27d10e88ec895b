"""Encode and decode pictures in memory: the real codec inside a training loop.

Neural wrapping (CVPR 2025) trains a pre- and a post-processor around a standard codec,
so every training step needs the codec's decoded pictures and its bits per picture. This
drives FFmpeg's encoders through PyAV's codec contexts, with no container and no file:
the bits are the sizes of the coded packets (headers included), the decoded planes are
the decoder's output, exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from codecave.codec.convert import planes_from_frame, planes_to_frame
from codecave.codec.encode import EncodeSettings, _stream_options
from codecave.codec.priors import YUVPlanes
from codecave.errors import EncoderError

log = logging.getLogger(__name__)

#: AVPictureType codes (libavutil) as letters.
_PICT_TYPES = {1: "I", 2: "P", 3: "B"}

#: The decoder that reads each encoder's bitstream.
DECODERS = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "libdav1d"}


@dataclass(frozen=True)
class RoundTrip:
    """What the codec made of a group of pictures.

    Attributes:
        decoded: the decoded pictures, in display order.
        bits: coded bits of each picture in display order (its packet's size times 8;
            the first packet carries the stream headers).
        frame_types: ``"I"``, ``"P"`` or ``"B"`` of each picture in display order, as
            the decoder reports them.
    """

    decoded: tuple[YUVPlanes, ...]
    bits: tuple[int, ...]
    frame_types: tuple[str, ...]


def _decoder(encoder: str) -> av.CodecContext:
    name = DECODERS.get(encoder)
    if name is None:
        raise EncoderError(f"{encoder}: no in-memory round trip; use one of {sorted(DECODERS)}")
    try:
        return av.CodecContext.create(name, "r")
    except (av.FFmpegError, ValueError):
        if encoder == "libsvtav1":
            return av.CodecContext.create("av1", "r")
        raise


def round_trip(pictures: Sequence[YUVPlanes], settings: EncodeSettings) -> RoundTrip:
    """Encode ``pictures`` as one stream and decode it again, in memory.

    Args:
        pictures: 8-bit 4:2:0 planes of one size (even width and height); the first is
            coded as an intra picture.
        settings: the encoder and its settings (x264, x265 or SVT-AV1; ``frame_qps`` is
            not supported here).

    Returns:
        The decoded pictures and the bits of each, in display order.

    Raises:
        EncoderError: no pictures, an unsupported encoder or setting, the encoder failed,
            or the decoder returned another number of pictures.
    """
    if not pictures:
        raise EncoderError("round_trip: no pictures")
    if settings.frame_qps:
        raise EncoderError("round_trip: frame_qps is not supported; use qp or crf")
    enc_name = settings.encoder
    height, width = pictures[0].y.shape
    if width % 2 or height % 2:
        raise EncoderError(f"round_trip: {width}x{height} has an odd side; 4:2:0 needs even sides")
    opts, attrs = _stream_options(settings)
    try:
        enc = av.CodecContext.create(enc_name, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise EncoderError(f"encoder {enc_name} is not available in this FFmpeg build: {exc}") from exc
    enc.width, enc.height, enc.pix_fmt = width, height, settings.pix_fmt
    enc.time_base = Fraction(1, 25)
    enc.framerate = Fraction(25)
    for key, value in attrs.items():
        setattr(enc, key, value)
    enc.options = opts
    packets: list[av.Packet] = []
    try:
        for n, planes in enumerate(pictures):
            if planes.y.shape != (height, width) or planes.bit_depth != 8:
                raise EncoderError(f"round_trip: picture {n} is {planes.y.shape[::-1]} at {planes.bit_depth} "
                                   f"bits; the group is {width}x{height} at 8 bits")
            frame = planes_to_frame(planes, settings.pix_fmt)
            frame.pts = n
            frame.time_base = enc.time_base
            packets.extend(enc.encode(frame))
        packets.extend(enc.encode(None))
    except av.FFmpegError as exc:
        raise EncoderError(f"round_trip: {enc_name} failed: {exc}") from exc
    dec = _decoder(enc_name)
    size_at_pts = {int(p.pts): 8 * p.size for p in packets}
    decoded: list[tuple[int, YUVPlanes, str]] = []
    for packet in [*packets, None]:
        for frame in dec.decode(packet):
            decoded.append((int(frame.pts), planes_from_frame(frame), _PICT_TYPES.get(int(frame.pict_type), "?")))
    if len(decoded) != len(pictures):
        raise EncoderError(f"round_trip: coded {len(pictures)} pictures, decoded {len(decoded)}")
    decoded.sort(key=lambda d: d[0])
    return RoundTrip(tuple(d[1] for d in decoded), tuple(size_at_pts[d[0]] for d in decoded),
                     tuple(d[2] for d in decoded))


def round_trip_packed(codes: np.ndarray, settings: EncodeSettings) -> tuple[np.ndarray, np.ndarray]:
    """:func:`round_trip` of packed-grid frames.

    Args:
        codes: ``(T, 24, H/4, W/4)`` uint8 packed 4:2:0 codes (:func:`codecave.grid.pack_planes`).
        settings: the encoder and its settings.

    Returns:
        The decoded codes, same shape and dtype, and the bits of each frame ``(T,)`` int64.

    Raises:
        EncoderError: as :func:`round_trip`.
    """
    from codecave.grid import pack_planes, unpack_planes

    result = round_trip([unpack_planes(c) for c in codes], settings)
    return np.stack([pack_planes(p) for p in result.decoded]), np.asarray(result.bits, np.int64)


__all__ = ["DECODERS", "RoundTrip", "round_trip", "round_trip_packed"]
