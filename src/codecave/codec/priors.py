"""Data classes for decoded frames and the codec priors that come with them.

Everything here is plain NumPy: models see tensors built from these by
:mod:`codecave.codec.rasterize`, never these objects.

Motion vectors of one frame are a structured array of :data:`MV_DTYPE`, one row per
(block, reference direction), in the frame's pixel grid:

* ``direction``: -1 when the block is predicted from the past, +1 from the future.
* ``x``, ``y``: top-left corner of the block in the current frame (pixels).
* ``w``, ``h``: block size in pixels (16, 8 or 4 for H.264).
* ``dx``, ``dy``: displacement in pixels, quarter-pel precision for H.264: the
  block's pixel (x, y) is predicted from (x + dx, y + dy) in the reference frame.
  This is the raw vector, over the full distance to the reference frame; the dense
  fields of :mod:`codecave.codec.rasterize` divide it by that distance.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np

PriorSource = Literal["bitstream", "estimated"]

MV_DTYPE = np.dtype(
    [
        ("direction", np.int8),
        ("w", np.uint8),
        ("h", np.uint8),
        ("x", np.int16),
        ("y", np.int16),
        ("dx", np.float32),
        ("dy", np.float32),
    ]
)

#: Size of the prior grid cell in pixels: the smallest H.264 partition.
GRID = 4
#: Macroblock size in pixels (granularity of the QP map).
MB = 16


def empty_mvs(n: int = 0) -> np.ndarray:
    """Return a zeroed motion-vector array of ``n`` rows of :data:`MV_DTYPE`."""
    return np.zeros(n, dtype=MV_DTYPE)


class FrameType(enum.IntEnum):
    """Picture type, numbered as in the design contract (0 = I, 1 = P, 2 = B)."""

    I = 0  # noqa: E741 - the codec's own name
    P = 1
    B = 2

    @classmethod
    def from_letter(cls, letter: str) -> FrameType:
        """Map a picture-type letter (``I``, ``P``, ``B``; ``S``/``SI``/``SP`` fold in)."""
        letter = letter.upper()
        if letter in ("I", "SI"):
            return cls.I
        if letter in ("B", "BI"):
            return cls.B
        return cls.P


@dataclass(frozen=True)
class EncoderSettings:
    """Encoder settings as written by x264 or x265 into the bitstream's SEI.

    Attributes:
        encoder: ``"x264"`` or ``"x265"``.
        version: encoder version string (``"core 164 r3108 31e19f9"``).
        rate_control: ``"crf"``, ``"cqp"``, ``"abr"`` or ``"2pass"``, as the SEI says.
        crf: constant rate factor when ``rate_control == "crf"``.
        qp: constant quantiser when ``rate_control == "cqp"``.
        bframes: maximum consecutive B-frames.
        b_pyramid: B-pyramid mode (0 none, 1 strict, 2 normal for x264).
        keyint: maximum GOP length.
        keyint_min: minimum GOP length.
        ref: number of reference frames.
        options: every ``key=value`` pair of the SEI, as strings.
    """

    encoder: str
    version: str | None = None
    rate_control: str | None = None
    crf: float | None = None
    qp: float | None = None
    bframes: int | None = None
    b_pyramid: int | None = None
    keyint: int | None = None
    keyint_min: int | None = None
    ref: int | None = None
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamInfo:
    """Stream-level facts about a video.

    Attributes:
        path: the file read.
        container: demuxer name (``"mov,mp4,m4a,3gp,3g2,mj2"``).
        codec: decoder name (``"h264"``, ``"hevc"``, ``"mpeg2video"``...).
        profile: codec profile, if known.
        width, height: coded picture size in pixels.
        pix_fmt: FFmpeg pixel format of the decoded pictures.
        frame_rate: average frame rate, if known.
        time_base: time base of the stream's timestamps.
        duration: duration in seconds, if known.
        frames: frame count from the container, if it states one.
        bit_rate: bits per second, if known.
        color_range, color_space, color_primaries, color_trc: colour metadata
            (FFmpeg's names; ``None`` when unspecified).
        rotation: display rotation in degrees (0 when none).
        encoder: settings parsed from the encoder's SEI, if present.
        prior_source: ``"bitstream"`` when the decoder exports motion vectors and
            QP, ``"estimated"`` when codecave computes them from pixels.
        hdr: HDR10 static metadata (mastering display, content light level) of the
            first frame, in x265's notation (:func:`codecave.codec.reader.hdr_metadata`),
            or None.
    """

    path: str
    container: str
    codec: str
    profile: str | None
    width: int
    height: int
    pix_fmt: str
    frame_rate: Fraction | None
    time_base: Fraction | None
    duration: float | None
    frames: int | None
    bit_rate: int | None
    color_range: str | None
    color_space: str | None
    color_primaries: str | None
    color_trc: str | None
    rotation: int
    encoder: EncoderSettings | None
    prior_source: PriorSource
    hdr: dict[str, str] | None = None


@dataclass
class FramePriors:
    """Codec priors of one frame, in the frame's own coding terms.

    Attributes:
        frame_type: I, P or B.
        key_frame: whether the frame is a random-access point.
        qp: frame QP (the papers' frame-wise CRF_i); ``None`` when unknown.
        qp_map: per-macroblock QP, shape ``(ceil(H/16), ceil(W/16))`` float32, or
            ``None`` when unknown.
        mvs: motion vectors, a :data:`MV_DTYPE` array (empty for intra frames).
        ref_past: display-order distance to the reference that past vectors point
            to (resolved by :mod:`codecave.codec.gop`), ``None`` when no past vector.
        ref_future: likewise for future vectors.
        source: ``"bitstream"`` or ``"estimated"``.
        codec_qp: the frame's mean quantiser in its codec's own units, where they differ
            from H.264's QP scale that ``qp`` and ``qp_map`` always use: for MPEG-1/2/4
            Part 2 and H.263, FFmpeg's ``quantiser_scale`` (twice the qscale, 2 to 62),
            mapped to ``qp`` by :func:`mpeg_quantiser_to_qp`; for H.264 above 8 bits, the
            exported ``QP'Y = qp + 6 x (bit depth - 8)``. None for 8-bit H.264.
    """

    frame_type: FrameType
    key_frame: bool
    qp: float | None
    qp_map: np.ndarray | None
    mvs: np.ndarray
    ref_past: int | None = None
    ref_future: int | None = None
    source: PriorSource = "bitstream"
    codec_qp: float | None = None


@dataclass(frozen=True)
class YUVPlanes:
    """One picture's YUV 4:2:0 planes, exactly as the decoder produced them.

    Attributes:
        y: ``(H, W)`` luma codes.
        u, v: ``(H/2, W/2)`` chroma codes.
        bit_depth: bits per sample (8: uint8 arrays; 9 to 16: uint16 arrays).
        color_range: ``"tv"`` (limited), ``"pc"`` (full) or None when unspecified.
        color_space: matrix name (``"bt709"``, ``"smpte170m"``...) or None.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    bit_depth: int = 8
    color_range: str | None = None
    color_space: str | None = None

    @property
    def height(self) -> int:
        """Luma height in pixels."""
        return int(self.y.shape[0])

    @property
    def width(self) -> int:
        """Luma width in pixels."""
        return int(self.y.shape[1])


class CodedFrame:
    """A decoded picture with its codec priors, in display order.

    The picture is held as its YUV 4:2:0 planes (:attr:`planes`) when the stream is
    4:2:0; RGB (:attr:`rgb`) is computed only when asked, and kept. ``rgb`` may be
    given as an array or as a function that makes it (the reader passes one that
    converts the decoder's own frame, so chroma siting is honoured).

    Attributes:
        index: display-order index in the stream, from 0.
        pts: presentation timestamp in ``time_base`` units, if known.
        time: presentation time in seconds, if known.
        packet_size: bytes of the coded picture (its packet), if known.
        priors: the frame's codec priors.
        decode_index: position of the frame's packet in decoding order, if known.
        corrupt: whether FFmpeg flagged the frame as corrupt (concealed errors) or its packet as damaged.
        pix_fmt: FFmpeg pixel format the picture was decoded in.
    """

    def __init__(self, index: int, pts: int | None, time: float | None, packet_size: int | None,
                 priors: FramePriors, *, planes: YUVPlanes | None = None,
                 rgb: np.ndarray | Callable[[], np.ndarray] | None = None,
                 decode_index: int | None = None, corrupt: bool = False, pix_fmt: str = "yuv420p") -> None:
        if planes is None and rgb is None:
            raise ValueError("a CodedFrame needs its planes or its RGB picture")
        self.index, self.pts, self.time, self.packet_size = index, pts, time, packet_size
        self.priors = priors
        self.decode_index, self.corrupt, self.pix_fmt = decode_index, corrupt, pix_fmt
        self._planes, self._rgb = planes, rgb

    def __repr__(self) -> str:
        return (f"CodedFrame(index={self.index}, pts={self.pts}, {self.width}x{self.height} {self.pix_fmt}, "
                f"{self.priors.frame_type.name})")

    @property
    def planes(self) -> YUVPlanes:
        """The decoded YUV 4:2:0 planes.

        Raises:
            UnsupportedVideoError: the stream is not 4:2:0 (4:2:2, 4:4:4, gray, RGB...).
        """
        if self._planes is None:
            from codecave.errors import UnsupportedVideoError

            raise UnsupportedVideoError(
                f"frame {self.index}: pixel format {self.pix_fmt} is not YUV 4:2:0; codecave's YUV models take "
                "yuv420p / yuvj420p / nv12 and their 10- to 16-bit forms (convert with ffmpeg -pix_fmt yuv420p)")
        return self._planes

    @property
    def has_planes(self) -> bool:
        """Whether the picture is available as YUV 4:2:0 planes."""
        return self._planes is not None

    @property
    def rgb(self) -> np.ndarray:
        """The decoded picture as ``(H, W, 3)`` uint8 RGB (computed on first use)."""
        if self._rgb is None:
            from codecave.codec.convert import planes_to_rgb

            self._rgb = planes_to_rgb(self._planes)  # type: ignore[arg-type]
        elif callable(self._rgb):
            self._rgb = self._rgb()
        return self._rgb

    @property
    def height(self) -> int:
        """Picture height in pixels."""
        return self._planes.height if self._planes is not None else int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Picture width in pixels."""
        return self._planes.width if self._planes is not None else int(self.rgb.shape[1])


#: Mean frame QP minus CRF per slice type in x264 CRF encodes (preset medium, 3
#: B-frames), measured over the training set's 15/25/35 rate points; see
#: ``benchmarks/crf_estimate.py``, which re-measures them and the estimate's error.
CRF_QP_OFFSET = {FrameType.I: 1.7, FrameType.P: 4.9, FrameType.B: 5.5}


#: Decoders whose exported quantiser is an MPEG ``quantiser_scale``, not an H.264 QP.
MPEG_QUANTISER_CODECS = frozenset({"mpeg1video", "mpeg2video", "mpeg4", "h263", "h263p", "msmpeg4v3", "flv"})


def mpeg_quantiser_to_qp(quantiser_scale: np.ndarray | float) -> np.ndarray | float:
    """The H.264-equivalent QP of an MPEG-1/2/4 Part 2 or H.263 quantiser.

    FFmpeg exports these codecs' quantisers as ``quantiser_scale`` = 2 x qscale (2 to 62:
    MPEG-2's own value; MPEG-1/4 and H.263 qscale doubled). The qscale is mapped with
    x264's ``qscale2qp`` (``encoder/ratecontrol.c``), the convention libavcodec and x264
    share for comparing the two scales: ``QP = 12 + 6 log2(qscale / 0.85)``. So Xvid's
    ``-q:v 5`` (quantiser_scale 10) is QP 27.3, not 10; qscale 2 is QP 19.4, qscale 31 is
    QP 43.1.

    Args:
        quantiser_scale: values as exported (scalar or array).

    Returns:
        QPs on H.264's scale, same shape (float32 for arrays).
    """
    q = np.maximum(np.asarray(quantiser_scale, dtype=np.float64) / 2.0, 0.5)
    qp = 12.0 + 6.0 * np.log2(q / 0.85)
    return qp.astype(np.float32) if qp.ndim else float(qp)


#: x264 CRF of equal mean PSNR-Y for x265's and SVT-AV1's CRFs, measured by
#: ``python benchmarks/crf_equivalence.py <28 training sequences> --clips 8 --frames 16``
#: (8 clips, 256x448 crops, preset medium; the README gives the full output). codecave's
#: models are conditioned on x264's CRF scale; other encoders' CRFs are mapped onto it.
X264_EQUIVALENT_CRF: dict[str, tuple[tuple[float, float], ...]] = {
    "x265": ((10, 8.9), (14, 12.3), (18, 15.8), (22, 19.6), (26, 23.5), (30, 27.5), (34, 31.7), (38, 35.8),
             (42, 40.0), (46, 44.0), (51, 48.6)),
    "svtav1": ((10, 11.3), (16, 13.8), (22, 15.5), (28, 17.6), (34, 19.9), (40, 22.4), (46, 24.7), (52, 27.1),
               (58, 30.4), (63, 36.9)),
}
_ENCODER_FAMILY = {"x265": "x265", "libx265": "x265", "hevc": "x265",
                   "svtav1": "svtav1", "libsvtav1": "svtav1", "av1": "svtav1"}


def x264_equivalent_crf(encoder: str | None, crf: float) -> float:
    """The x264 CRF that gives the same mean PSNR-Y as ``crf`` of ``encoder``.

    x264 (and unknown encoders) keep their value; x265 and SVT-AV1 are interpolated
    in :data:`X264_EQUIVALENT_CRF` (the end values hold outside the measured range).
    """
    table = X264_EQUIVALENT_CRF.get(_ENCODER_FAMILY.get(str(encoder or "").lower(), ""))
    if table is None:
        return float(crf)
    xs, ys = zip(*table)
    return float(np.interp(float(crf), xs, ys))


def estimate_crf(qp: Sequence[float], frame_type: Sequence[int]) -> float | None:
    """Estimate a sequence CRF from frame QPs (for files without encoder settings).

    Each frame's QP minus the typical offset of its slice type (:data:`CRF_QP_OFFSET`)
    is averaged. Returns None when no frame has a QP.
    """
    values = [q - CRF_QP_OFFSET[FrameType(int(t))] for q, t in zip(qp, frame_type)
              if q is not None and math.isfinite(q)]
    return float(sum(values) / len(values)) if values else None


def sequence_crf(encoder: EncoderSettings | None, qp: Sequence[float], frame_type: Sequence[int]) -> tuple[float, str]:
    """The sequence CRF a model is conditioned on, and where it came from.

    Order: the encoder's CRF from its SEI, its constant QP, an estimate from the
    frame QPs (:func:`estimate_crf`), and finally 23 (x264's default) when the file
    carries no QP at all.

    An x265 CRF is mapped to x264's scale (:func:`x264_equivalent_crf`); the source
    then names both values.

    Returns:
        ``(crf, source)`` with source ``"encoder crf"`` (or ``"encoder crf (x265 CRF 28)"``),
        ``"encoder qp"``, ``"estimated from frame QP"`` or ``"default (no QP in the file)"``.
    """
    if encoder is not None and encoder.crf is not None:
        crf = x264_equivalent_crf(encoder.encoder, encoder.crf)
        if encoder.encoder != "x264":
            return crf, f"encoder crf ({encoder.encoder} CRF {encoder.crf:g})"
        return crf, "encoder crf"
    if encoder is not None and encoder.qp is not None:
        return float(encoder.qp), "encoder qp"
    estimate = estimate_crf(qp, frame_type)
    if estimate is not None:
        return max(0.0, min(51.0, estimate)), "estimated from frame QP"
    return 23.0, "default (no QP in the file)"
