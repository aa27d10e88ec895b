"""Tests of codecave.codec.sei: x264/x265 settings read back from real bitstreams."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.priors import EncoderSettings
from codecave.codec.sei import find_encoder_settings, parse_encoder_info, unescape_rbsp

X264_TEXT = (
    "x264 - core 164 r3108 31e19f9 - H.264/MPEG-4 AVC codec - Copyleft 2003-2023 - "
    "http://www.videolan.org/x264.html - options: cabac=1 ref=3 deblock=1:0:0 "
    "analyse=0x3:0x113 bframes=3 b_pyramid=2 keyint=250 keyint_min=25 rc=crf "
    "mbtree=1 crf=23.0 qcomp=0.60 aq=1:1.00"
)
X265_TEXT = (
    "x265 (build 199) - 3.5+1-f0c1022b6:[Linux][GCC 11.2.0][64 bit] 8bit - H.265/HEVC "
    "codec - Copyright 2013-2018 (c) Multicoreware, Inc - http://x265.org - options: "
    "cpuid=1111039 no-wpp ref=4 min-keyint=5 keyint=60 bframes=3 no-b-pyramid "
    "rc=abr bitrate=500 scenecut-aware-qp=0conformance-window-offsets right=0 bottom=0"
)
# The UUID x264 writes before its text.
X264_UUID = bytes.fromhex("dc45e9bde6d948b7962cd820d923eeef")


def _clip() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return [np.roll(base, 2 * i, axis=1) for i in range(8)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sei")
    settings = {
        "x264_crf.mp4": EncodeSettings(codec="x264", crf=23, bframes=2, keyint=12, ref=3),
        "x264_qp.mkv": EncodeSettings(codec="x264", qp=30, crf=None),
        "x265_crf.mp4": EncodeSettings(codec="x265", crf=28, bframes=2, keyint=12, ref=2),
    }
    frames = _clip()
    for name, s in settings.items():
        encode_frames(frames, folder / name, s)
    return {name: folder / name for name in settings}


def _from_container(path: Path) -> tuple[EncoderSettings | None, EncoderSettings | None]:
    """Settings found in (extradata, first packet) of the file's video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = find_encoder_settings(stream.codec_context.extradata or b"")
        packet = find_encoder_settings(bytes(next(iter(container.demux(stream)))))
    return extradata, packet


def _from_side_data(path: Path) -> EncoderSettings | None:
    """Settings found in the first decoded frame's SEI_UNREGISTERED side data."""
    sei = av.sidedata.sidedata.Type.SEI_UNREGISTERED
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        payloads = [bytes(sd) for sd in frame.side_data if sd.type == sei]
    assert payloads, "the decoder exported no SEI_UNREGISTERED side data"
    return find_encoder_settings(b"".join(payloads))


def test_x264_crf_read_back_from_first_packet(clips: dict[str, Path]) -> None:
    extradata, packet = _from_container(clips["x264_crf.mp4"])
    assert extradata is None  # x264 sends the SEI with the first picture, not in avcC
    assert packet is not None
    assert packet.encoder == "x264"
    assert packet.version is not None and packet.version.startswith("core ")
    assert packet.rate_control == "crf"
    assert packet.crf == 23.0 and packet.qp is None
    assert (packet.bframes, packet.keyint, packet.ref) == (2, 12, 3)
    assert packet.keyint_min == 1  # encode_frames sets min-keyint=1 with keyint
    assert packet.b_pyramid == 2
    assert packet.options["crf"] == "23.0" and packet.options["cabac"] == "1"
    assert _from_side_data(clips["x264_crf.mp4"]) == packet


def test_x264_qp_read_back(clips: dict[str, Path]) -> None:
    _, packet = _from_container(clips["x264_qp.mkv"])
    assert packet is not None
    assert packet.rate_control == "cqp"
    assert packet.qp == 30.0 and packet.crf is None
    assert packet.keyint == 250 and packet.keyint_min == 25  # x264 defaults
    assert _from_side_data(clips["x264_qp.mkv"]) == packet


def test_x265_crf_read_back_from_extradata(clips: dict[str, Path]) -> None:
    extradata, _ = _from_container(clips["x265_crf.mp4"])
    assert extradata is not None  # x265 puts its SEI with the parameter sets (hvcC)
    assert extradata.encoder == "x265"
    assert extradata.rate_control == "crf"
    assert extradata.crf == 28.0 and extradata.qp is None
    assert (extradata.bframes, extradata.keyint, extradata.ref) == (2, 12, 2)
    assert extradata.keyint_min == 1
    assert extradata.b_pyramid == 1  # bare flag "b-pyramid"
    assert extradata.options["wpp"] == "0"  # "no-wpp"
    assert _from_side_data(clips["x265_crf.mp4"]) == extradata


def test_parse_x264_text() -> None:
    s = parse_encoder_info(X264_TEXT + "\x00")
    assert s == EncoderSettings(
        encoder="x264",
        version="core 164 r3108 31e19f9",
        rate_control="crf",
        crf=23.0,
        qp=None,
        bframes=3,
        b_pyramid=2,
        keyint=250,
        keyint_min=25,
        ref=3,
        options=s.options if s else {},
    )
    assert s is not None and s.options["deblock"] == "1:0:0" and s.options["aq"] == "1:1.00"


def test_parse_x265_text_flags_and_abr() -> None:
    s = parse_encoder_info(X265_TEXT)
    assert s is not None
    assert (s.encoder, s.version, s.rate_control) == ("x265", "3.5+1-f0c1022b6", "abr")
    assert s.crf is None and s.qp is None
    assert (s.bframes, s.b_pyramid, s.keyint, s.keyint_min, s.ref) == (3, 0, 60, 5, 4)
    assert s.options["b-pyramid"] == "0" and s.options["wpp"] == "0"
    assert s.options["bitrate"] == "500"
    # x265 glues this option onto the one before it; both come back apart.
    assert s.options["scenecut-aware-qp"] == "0"
    assert s.options["conformance-window-offsets"] == "right=0 bottom=0"


def test_unescape_rbsp() -> None:
    assert unescape_rbsp(b"\x00\x00\x03\x01") == b"\x00\x00\x01"
    assert unescape_rbsp(b"\x00\x00\x03\x00\x00\x03\x02") == b"\x00\x00\x00\x00\x02"
    assert unescape_rbsp(b"\x00\x00\x03\x03") == b"\x00\x00\x03"
    assert unescape_rbsp(b"\x01\x03\x00\x03") == b"\x01\x03\x00\x03"


def test_find_in_escaped_annexb_nal() -> None:
    payload = b"\x00\x00\x01\x00" + X264_UUID[4:] + X264_TEXT.encode() + b"\x00"
    assert len(payload) > 255
    sei = b"\x05" + b"\xff" * (len(payload) // 255) + bytes([len(payload) % 255]) + payload
    escaped = bytearray()
    zeros = 0
    for byte in sei + b"\x80":
        if zeros >= 2 and byte <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    assert b"\x00\x00\x03" in escaped
    nal = b"\x00\x00\x00\x01\x06" + bytes(escaped) + b"\x00\x00\x00\x01\x65\x88\x84"
    s = find_encoder_settings(nal)
    assert s is not None and s.crf == 23.0 and s.options["aq"] == "1:1.00"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "x264 - core 164 - H.264/MPEG-4 AVC codec",  # no options
        "x265 garbage options: ref=3",
        "Lavc60.3.100 libx264",
        "\x00\x01\x02",
    ],
)
def test_parse_garbage_returns_none(text: str) -> None:
    assert parse_encoder_info(text) is None


def test_find_garbage_returns_none() -> None:
    rng = np.random.default_rng(1)
    assert find_encoder_settings(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()) is None
    assert find_encoder_settings(b"") is None
    assert find_encoder_settings(b"x264 - core \xff\xfe") is None
    assert find_encoder_settings(b"\x00\x00\x03" * 10) is None


def test_parse_tolerates_odd_values() -> None:
    s = parse_encoder_info(
        "x264 - core 1 - H.264/MPEG-4 AVC codec - options: keyint=infinite rc=crf crf=abc ="
    )
    assert s is not None
    assert s.keyint is None and s.options["keyint"] == "infinite"
    assert s.crf is None and s.rate_control == "crf"
