"""Read the encoder settings that x264 and x265 write into the bitstream.

Both encoders store their full command line as text in a "user data
unregistered" SEI message (a 16-byte UUID followed by the text), sent with the
first picture (x264) or in the parameter sets (x265, hence in the MP4/MKV
``extradata``). Examples, shortened::

    x264 - core 164 r3108 31e19f9 - H.264/MPEG-4 AVC codec - Copyleft 2003-2023 -
    http://www.videolan.org/x264.html - options: cabac=1 ref=3 ... bframes=3
    b_pyramid=2 ... keyint=250 keyint_min=25 ... rc=crf mbtree=1 crf=23.0 ...

    x265 (build 216) - 4.2+1-e444744:[Linux][GCC 14.2.1][64 bit] 8bit+10bit+12bit -
    H.265/HEVC codec - Copyright 2013-2018 (c) Multicoreware, Inc - http://x265.org -
    options: cpuid=1111039 frame-threads=1 no-wpp ... ref=2 ... min-keyint=1
    keyint=12 ... bframes=2 b-adapt=2 b-pyramid ... rc=crf crf=28.0 ...

x264 writes only ``key=value`` pairs; x265 also writes bare flags (``b-pyramid``)
and negated flags (``no-b-pyramid``). Fixed-QP encodes say ``rc=cqp ... qp=30`` in
both.

The SEI carries the sequence CRF (the papers' CRF_s), which the priors contract
calls ``crf``; see :class:`codecave.codec.priors.EncoderSettings`.
"""

from __future__ import annotations

import logging
import re

from codecave.codec.priors import EncoderSettings

log = logging.getLogger(__name__)

_X264_HEADER = re.compile(r"^x264 - (?P<version>.*?) - H\.264/MPEG-4 AVC codec\b")
_X265_HEADER = re.compile(r"^x265 \(build (?P<build>\d+)\) - (?P<version>[^:\s]+)")
_OPTIONS = " options: "

# x265 (through 4.x) forgets a space before this one and writes
# "...scenecut-aware-qp=0conformance-window-offsets right=0 bottom=0".
_X265_CONF_WINDOW = re.compile(
    r"(?:(?<=\S)|\s)conformance-window-offsets right=(?P<right>\S+) bottom=(?P<bottom>\S+)"
)

# Where the settings text can start in raw bytes; it runs while bytes are printable.
_TEXT_IN_BYTES = re.compile(rb"(?:x264 - core|x265 \(build )[\x20-\x7e]*")


def parse_encoder_info(text: str) -> EncoderSettings | None:
    """Parse the settings text of x264 or x265.

    Args:
        text: the SEI text, starting at ``x264`` or ``x265`` (leading whitespace
            and a trailing NUL are tolerated).

    Returns:
        The typed settings; every option also appears, as a string, in
        ``options`` (bare flags as ``"1"``, ``no-`` flags as ``"0"`` under the
        flag's own name). ``None`` when the text is not x264/x265 settings text.
        Never raises on bad input.
    """
    if not isinstance(text, str):
        return None
    text = text.strip().split("\x00", 1)[0].strip()
    if text.startswith("x264"):
        encoder, header = "x264", _X264_HEADER.match(text)
    elif text.startswith("x265"):
        encoder, header = "x265", _X265_HEADER.match(text)
    else:
        return None
    at = text.find(_OPTIONS)
    if header is None or at < 0:
        log.debug("not %s settings text: %.80r", encoder, text)
        return None
    options = _parse_options(text[at + len(_OPTIONS) :])
    return _settings(encoder, header.group("version").strip(), options)


def find_encoder_settings(data: bytes) -> EncoderSettings | None:
    """Find and parse x264/x265 settings text in raw bitstream bytes.

    Works on anything that holds the SEI message: an Annex-B or length-prefixed
    packet, the ``avcC``/``hvcC`` extradata of an MP4/MKV stream, or the payload
    of a decoded frame's ``SEI_UNREGISTERED`` side data. Emulation-prevention
    bytes (``00 00 03``) are removed first; the text ends at its NUL terminator
    or at the first byte that is not printable ASCII.

    Args:
        data: raw bytes to scan.

    Returns:
        The settings of the first x264/x265 text found, or ``None`` when there is
        none (or it cannot be parsed). Never raises on bad input.
    """
    try:
        raw = unescape_rbsp(bytes(data))
    except (TypeError, ValueError):
        return None
    for match in _TEXT_IN_BYTES.finditer(raw):
        settings = parse_encoder_info(match.group().decode("ascii"))
        if settings is not None:
            return settings
    return None


def unescape_rbsp(data: bytes) -> bytes:
    """Remove H.264/H.265 emulation-prevention bytes.

    Every ``03`` that follows two zero bytes (``00 00 03``) was inserted by the
    encoder so that the payload cannot mimic a start code; dropping it restores
    the raw byte sequence payload.

    Args:
        data: escaped NAL unit bytes.

    Returns:
        The bytes with each emulation-prevention ``03`` removed.
    """
    if b"\x00\x00\x03" not in data:
        return data
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _parse_options(text: str) -> dict[str, str]:
    """Split ``key=value`` pairs and flags into a dict of strings."""
    options: dict[str, str] = {}
    conf = _X265_CONF_WINDOW.search(text)
    if conf is not None:
        options["conformance-window-offsets"] = f"right={conf['right']} bottom={conf['bottom']}"
        text = text[: conf.start()] + " " + text[conf.end() :]
    for token in text.split():
        key, sep, value = token.partition("=")
        if not key:
            continue
        if sep:
            options[key] = value
        elif key.startswith("no-") and len(key) > 3:
            options[key[3:]] = "0"
        else:
            options[key] = "1"
    return options


def _settings(encoder: str, version: str, options: dict[str, str]) -> EncoderSettings:
    """Build typed settings from the option strings of one encoder."""
    rate_control = options.get("rc")
    crf = _float(options.get("crf")) if rate_control == "crf" else None
    qp = _float(options.get("qp")) if rate_control == "cqp" else None
    zones = _int(options.get("zone-count"))
    if encoder == "x265" and crf == 0 and zones and _int(options.get("qpmin")) is not None:
        # codecave's low-delay P streams (codec.encode, frame_qps): every P frame's QP forced
        # by a zone, the intra frame held at the base QP by crf=0 and qpmin; the CRF is not in
        # charge, the base QP is the stream's constant quantiser
        crf, qp = None, _float(options.get("qpmin"))
    if encoder == "x264":
        b_pyramid, keyint_min = _int(options.get("b_pyramid")), _int(options.get("keyint_min"))
    else:
        b_pyramid, keyint_min = _int(options.get("b-pyramid")), _int(options.get("min-keyint"))
    return EncoderSettings(
        encoder=encoder,
        version=version or None,
        rate_control=rate_control,
        crf=crf,
        qp=qp,
        bframes=_int(options.get("bframes")),
        b_pyramid=b_pyramid,
        keyint=_int(options.get("keyint")),
        keyint_min=keyint_min,
        ref=_int(options.get("ref")),
        options=options,
    )


def _int(value: str | None) -> int | None:
    """``int(value)``, or ``None`` when absent or not an integer (``keyint=infinite``)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    """``float(value)``, or ``None`` when absent or not a number."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
