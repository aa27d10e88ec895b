"""Pictures between PyAV frames, YUV 4:2:0 planes and RGB.

* :func:`planes_from_frame`: a decoded frame's planes, bit for bit (what ``ffmpeg -f
  rawvideo`` writes for the same file), without passing through RGB.
* :func:`planes_to_rgb`: RGB for people and RGB models, chroma brought to 4:4:4 first
  (swscale's direct 4:2:0 -> RGB path darkens by about one level).
* :func:`rgb_to_planes`: the one conversion of RGB ground truth to 4:2:0, with a stated
  matrix, range and chroma filter (:data:`RGB_TO_YUV420`).
* :func:`planes_to_frame`: planes into a PyAV frame for an encoder.
"""

from __future__ import annotations

import av
import numpy as np

from codecave.codec.priors import YUVPlanes
from codecave.errors import UnsupportedVideoError

#: Pixel formats read as 4:2:0 planes (semi-planar NV12 is de-interleaved, losslessly).
PLANAR_420 = ("yuv420p", "yuvj420p", "yuv420p9le", "yuv420p10le", "yuv420p12le", "yuv420p14le", "yuv420p16le")
SEMI_PLANAR_420 = {"nv12": "yuv420p", "p010le": "yuv420p10le", "p016le": "yuv420p16le"}

#: How :func:`rgb_to_planes` converts, recorded in dataset manifests.
RGB_TO_YUV420 = {
    "matrix": "bt601",
    "range": "tv",
    "chroma_filter": "2x2 box average (centre-sited chroma), rounded",
    "formula": "Y = 16 + 65.481 R + 128.553 G + 24.966 B; Cb = 128 - 37.797 R - 74.203 G + 112 B; "
               "Cr = 128 + 112 R - 93.786 G - 18.214 B (R, G, B in [0, 1])",
}
_RGB_TO_YCBCR = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
_RANGES = {1: "tv", 2: "pc"}
_SPACES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
_SPACE_CODES = {v: k for k, v in _SPACES.items()}


def is_420(pix_fmt: str) -> bool:
    """Whether frames of ``pix_fmt`` are read as 4:2:0 planes."""
    return pix_fmt in PLANAR_420 or pix_fmt in SEMI_PLANAR_420


def format_bit_depth(pix_fmt: str) -> int:
    """Bits per sample of a pixel format (``yuv420p10le`` -> 10)."""
    return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)


def planar_format(bit_depth: int) -> str:
    """The planar 4:2:0 pixel format for ``bit_depth`` (8 -> ``yuv420p``, 10 -> ``yuv420p10le``)."""
    return "yuv420p" if bit_depth == 8 else f"yuv420p{bit_depth}le"


def _plane(plane: av.video.plane.VideoPlane, dtype: np.dtype) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    buf = np.frombuffer(memoryview(plane), dtype=dtype)
    return buf.reshape(plane.height, plane.line_size // itemsize)[:, : plane.width].copy()


def planes_from_frame(frame: av.VideoFrame) -> YUVPlanes:
    """A decoded frame's Y, U and V planes, copied out of the decoder's buffers.

    Raises:
        UnsupportedVideoError: the frame is not 4:2:0 (the message names its format).
    """
    name = frame.format.name
    if name in SEMI_PLANAR_420:
        frame = frame.reformat(format=SEMI_PLANAR_420[name])  # de-interleaving only: exact
        name = frame.format.name
    if name not in PLANAR_420:
        raise UnsupportedVideoError(f"pixel format {name} is not YUV 4:2:0")
    depth = format_bit_depth(name)
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    y, u, v = (_plane(p, dtype) for p in frame.planes[:3])
    full = name.startswith("yuvj") or int(frame.color_range or 0) == 2
    color_range = "pc" if full else _RANGES.get(int(frame.color_range or 0))
    return YUVPlanes(y, u, v, depth, color_range, _SPACES.get(int(frame.colorspace or 0)))


def planes_to_frame(planes: YUVPlanes, pix_fmt: str | None = None) -> av.VideoFrame:
    """Planes into a PyAV frame (planar 4:2:0 of their bit depth unless ``pix_fmt`` says otherwise).

    The frame is tagged with the planes' range and matrix. A different ``pix_fmt``
    (an encoder that takes only 8 bits, say) is reached through swscale.
    """
    depth = planes.bit_depth
    fmt = planar_format(depth)
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    h, w = planes.y.shape
    stacked = np.empty((h * 3 // 2, w), dtype=dtype)
    stacked[:h] = planes.y
    stacked[h:].reshape(-1)[: planes.u.size] = planes.u.reshape(-1)
    stacked[h:].reshape(-1)[planes.u.size :] = planes.v.reshape(-1)
    frame = av.VideoFrame.from_ndarray(stacked, format=fmt)
    if planes.color_range:
        frame.color_range = 2 if planes.color_range == "pc" else 1
    if planes.color_space in _SPACE_CODES:
        frame.colorspace = _SPACE_CODES[planes.color_space]
    if pix_fmt is not None and pix_fmt != fmt:
        frame = frame.reformat(format=pix_fmt)
    return frame


def planes_to_rgb(planes: YUVPlanes) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of 4:2:0 planes, through 4:4:4 (no darkening), with the
    planes' own matrix and range (BT.601 limited when unspecified)."""
    frame = planes_to_frame(planes)
    full = "yuv444p" if planes.bit_depth == 8 else f"yuv444p{planes.bit_depth}le"
    try:
        frame = frame.reformat(format=full)
    except (ValueError, av.FFmpegError):
        pass
    return frame.to_ndarray(format="rgb24")


def rgb_to_planes(rgb: np.ndarray) -> YUVPlanes:
    """Convert RGB ground truth to 8-bit 4:2:0 planes, as :data:`RGB_TO_YUV420` states.

    Args:
        rgb: ``(H, W, 3)`` uint8 with even ``H`` and ``W``.

    Returns:
        BT.601 limited-range planes (Y in [16, 235], chroma in [16, 240]), chroma the
        rounded mean of each 2x2 block of full-resolution Cb / Cr.

    Raises:
        ValueError: odd sides or not ``(H, W, 3)`` uint8.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"{w}x{h}: 4:2:0 needs even sides")
    ycc = rgb.astype(np.float64) / 255.0 @ _RGB_TO_YCBCR.T
    y = np.clip(np.rint(16.0 + ycc[..., 0]), 16, 235).astype(np.uint8)
    chroma = 128.0 + ycc[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    chroma = np.clip(np.rint(chroma), 16, 240).astype(np.uint8)
    return YUVPlanes(y, np.ascontiguousarray(chroma[..., 0]), np.ascontiguousarray(chroma[..., 1]), 8, "tv",
                     "smpte170m")


def rgb_to_yuv420_like_encoder(rgb: np.ndarray, color_space: str | None = None) -> YUVPlanes:
    """RGB output of an RGB model -> 8-bit 4:2:0 planes, as :class:`~codecave.codec.writer.VideoWriter`
    converts it for the encoder (swscale, limited range, the source's matrix when known).

    Args:
        rgb: ``(H, W, 3)`` uint8 with even sides.
        color_space: matrix name of the source (``"bt709"``...), None for swscale's default (BT.601).
    """
    frame = rgb_frame_to_yuv420(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"), color_space)
    return planes_from_frame(frame)


def rgb_frame_to_yuv420(frame: av.VideoFrame, color_space: str | None, pix_fmt: str = "yuv420p") -> av.VideoFrame:
    """swscale's RGB -> YUV conversion with the given matrix (the single definition the writer uses)."""
    code = _SPACE_CODES.get(color_space or "")
    try:
        out = frame.reformat(format=pix_fmt, dst_colorspace=code) if code else frame.reformat(format=pix_fmt)
    except (ValueError, av.FFmpegError):
        out = frame.reformat(format=pix_fmt)
    if code:
        out.colorspace = code
    out.color_range = 1
    return out


def require_420(pix_fmt: str, path: str) -> None:
    """Raise :class:`UnsupportedVideoError` naming ``pix_fmt`` unless it is read as 4:2:0."""
    if not is_420(pix_fmt):
        raise UnsupportedVideoError(
            f"{path}: pixel format {pix_fmt} is not YUV 4:2:0; YUV models take yuv420p, yuvj420p, nv12 and "
            "their 9- to 16-bit forms (convert it: ffmpeg -i IN -pix_fmt yuv420p OUT)")
