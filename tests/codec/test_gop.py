"""Reference resolution rules on hand-made GOPs."""

from __future__ import annotations

from codecave.codec.gop import ReferenceTracker, fallback_references, h264_is_reference
from codecave.codec.priors import FrameType

I, P, B = FrameType.I, FrameType.P, FrameType.B


def resolve(display_decode: list[int], types: list[FrameType], flags: list[bool | None] | None = None):
    tracker = ReferenceTracker()
    for k, dec in enumerate(display_decode):
        tracker.add_frame(dec, types[k], None if flags is None else flags[k])
    return [(tracker.past_reference(k), tracker.future_reference(k)) for k in range(len(types))]


def test_pyramid_from_decode_order() -> None:
    # display I0 B1 B2 B3 P4, decoded I0 P4 B2 B1 B3
    refs = resolve([0, 3, 2, 4, 1], [I, B, B, B, P])
    assert refs[1] == (1, 1)   # B1: I0 and the reference B2
    assert refs[2] == (2, 2)   # B2: I0 and P4
    assert refs[3] == (1, 1)   # B3: B2 and P4
    assert refs[4][0] == 4     # P4: I0


def test_plain_b_frames_are_skipped() -> None:
    # display I0 B1 B2 P3, decoded I0 P3 B1 B2 (no pyramid)
    refs = resolve([0, 2, 3, 1], [I, B, B, P])
    assert refs[2] == (2, 1)


def test_reference_flag_beats_decode_order() -> None:
    # two B-frames, the first one a reference decoded in display order (x264 pyramid, 2 Bs)
    refs = resolve([0, 2, 3, 1], [I, B, B, P], flags=[True, True, False, True])
    assert refs[2] == (1, 1)


def test_fallback_by_types() -> None:
    types = [I, B, B, P, B, P]
    assert fallback_references(types, 2) == (2, 1)
    assert fallback_references(types, 3) == (3, None)
    assert fallback_references(types, 0) == (None, None)


def test_nal_ref_idc_annexb_and_avcc() -> None:
    ref_slice = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x41\x9a"   # AUD, then nal_ref_idc=2 slice
    nonref = b"\x00\x00\x01\x01\x9e"
    assert h264_is_reference(ref_slice, None) is True
    assert h264_is_reference(nonref, None) is False
    avcc = (2).to_bytes(4, "big") + b"\x09\xf0" + (2).to_bytes(4, "big") + b"\x01\x9e"
    assert h264_is_reference(avcc, 4) is False
    assert h264_is_reference(b"\x00\x00\x01\x09\xf0", None) is None
