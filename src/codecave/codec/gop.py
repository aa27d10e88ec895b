"""Resolve which frame a motion vector refers to, from the GOP structure.

FFmpeg exports only a vector's *direction* (past or future), not its reference
frame. codecave resolves it with this rule, from the order in which pictures are
decoded (packet order) and displayed (timestamps):

* The candidates for frame ``k`` are the frames decoded before ``k``. Decode
  positions travel from packet to frame through FFmpeg's ``opaque`` field, so no
  timestamps are needed.
* The **future reference** is the nearest candidate displayed after ``k``. Any
  frame decoded before ``k`` but shown after it was sent early to serve as a
  reference, so no further test is needed.
* The **past reference** is the nearest candidate displayed before ``k`` that is
  itself a reference picture. For H.264 the packet says so exactly: the
  ``nal_ref_idc`` of its slice NAL units (B-pyramid reference B-frames have it set,
  plain B-frames not), read by :func:`h264_is_reference`. For other codecs, I and
  P frames are references, and a B frame is one when it was decoded out of display
  order (some frame decoded after it is displayed before it), which recognises the
  middle B-frame of a pyramid but not a reference B decoded in display order.

With several reference frames (x264 ``ref`` > 1) an encoder may pick an older
picture for some blocks; the rule then names the nearest one. How often that
happens is measured by ``benchmarks/reference_accuracy.py``.

When the decode order is unknown, :func:`fallback_references` uses frame types
alone: the nearest I/P frame in each direction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from codecave.codec.priors import FrameType

#: How far in display order references are looked for. Reorder depths and
#: reference distances of real encoders are far below this.
WINDOW = 32


@dataclass
class ReferenceTracker:
    """Resolve reference distances from decode order, frames given in display order.

    Feed every frame as the decoder outputs it (display order) with the position of
    its packet in decoding order; ask for the references of any recent frame.
    Memory is bounded by :data:`WINDOW`.
    """

    _decode: list[int] = field(default_factory=list)
    _types: list[FrameType] = field(default_factory=list)
    _flags: list[bool | None] = field(default_factory=list)
    _offset: int = 0  # display index of _decode[0]

    def add_frame(self, decode_index: int, frame_type: FrameType, reference: bool | None = None) -> int:
        """Record the next frame in display order; return its display index.

        Args:
            decode_index: position of the frame's packet in decoding order.
            frame_type: its picture type.
            reference: whether the bitstream marks it as a reference, if known.
        """
        self._decode.append(decode_index)
        self._types.append(frame_type)
        self._flags.append(reference)
        if len(self._decode) > 3 * WINDOW:
            cut = len(self._decode) - 2 * WINDOW
            del self._decode[:cut], self._types[:cut], self._flags[:cut]
            self._offset += cut
        return self._offset + len(self._decode) - 1

    def _is_reference(self, i: int) -> bool:
        if self._flags[i] is not None:
            return bool(self._flags[i])
        if self._types[i] != FrameType.B:
            return True
        return any(d > self._decode[i] for d in self._decode[max(0, i - WINDOW) : i])

    def past_reference(self, index: int) -> int | None:
        """Distance back to the past reference of the frame at display ``index``."""
        i = index - self._offset
        dec = self._decode[i]
        for j in range(i - 1, max(-1, i - WINDOW - 1), -1):
            if self._decode[j] < dec and self._is_reference(j):
                return i - j
        return None

    def future_reference(self, index: int) -> int | None:
        """Distance ahead to the future reference, ``None`` if not seen (yet)."""
        i = index - self._offset
        dec = self._decode[i]
        for j in range(i + 1, min(len(self._decode), i + WINDOW + 1)):
            if self._decode[j] < dec:
                return j - i
        return None


def fallback_references(types: list[FrameType], k: int) -> tuple[int | None, int | None]:
    """References by frame type alone: the nearest I/P frame each way.

    Args:
        types: picture types in display order (enough of them around ``k``).
        k: index of the frame asked about.

    Returns:
        ``(past_distance, future_distance)`` in frames, ``None`` where no anchor.
        P frames get no future reference; I frames none at all.
    """
    if types[k] == FrameType.I:
        return None, None
    past = next((k - j for j in range(k - 1, -1, -1) if types[j] != FrameType.B), None)
    if types[k] == FrameType.P:
        return past, None
    future = next((j - k for j in range(k + 1, len(types)) if types[j] != FrameType.B), None)
    return past, future


def h264_nal_length_size(extradata: bytes) -> int | None:
    """NAL length-prefix size of an ``avcC`` (MP4/MKV) stream, ``None`` for Annex B."""
    if len(extradata) >= 5 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def _annexb_nals(data: bytes) -> Iterator[int]:
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        yield data[i + 3]
        i = data.find(b"\x00\x00\x01", i + 3)


def _avcc_nals(data: bytes, length_size: int) -> Iterator[int]:
    i = 0
    while i + length_size < len(data):
        size = int.from_bytes(data[i : i + length_size], "big")
        if size <= 0:
            return
        yield data[i + length_size]
        i += length_size + size


def h264_is_reference(packet: bytes, length_size: int | None) -> bool | None:
    """Whether an H.264 access unit is a reference picture (``nal_ref_idc`` != 0).

    Args:
        packet: the coded picture's bytes.
        length_size: from :func:`h264_nal_length_size` (``None``: Annex B start codes).

    Returns:
        ``True``/``False`` from the first slice NAL unit, ``None`` if none is found.
    """
    nals = _annexb_nals(packet) if length_size is None else _avcc_nals(packet, length_size)
    for header in nals:
        if header & 0x1F in (1, 5):  # coded slice, non-IDR or IDR
            return bool(header & 0x60)
    return None
