"""Synthetic camera motion over still photos, with exact optical flow.

A still photo becomes a short clip by moving a virtual camera over it: a smooth
pan, zoom and small rotation, rendered sub-pixel with anti-aliasing. Because every
frame is an affine view of the same photo, the optical flow between frames is
known analytically and is exact up to float32 rounding.

Geometry. Frame ``t`` samples the photo at ``A_t(p)``, an affine map from output
pixel coordinates ``p = (x, y)`` (pixel centres at integers) to photo pixel
coordinates::

    A_t(p) = c + o_t + s_t * R(theta_t) @ (p - p_c)

where ``p_c`` is the centre of the output frame, ``c`` places the trajectory in
the middle of the photo, ``s_t`` is the sampling scale (photo pixels per output
pixel), ``theta_t`` the camera roll and ``o_t`` the accumulated pan. Flows follow
the project's contract (``mv_past`` / ``mv_future`` in DESIGN.md, section 3)::

    flow_past[t](p)   = A_{t-1}^{-1}(A_t(p)) - p    # where p of frame t sits in t-1
    flow_future[t](p) = A_{t+1}^{-1}(A_t(p)) - p    # where p of frame t sits in t+1

Rendering prefilters the photo for the sampling rate (integer area downscale,
then a Gaussian for the rest), takes ``supersample x supersample`` Catmull-Rom
samples per output pixel placed symmetrically about its centre, and averages
them, so the box average adds no shift.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from codecave.errors import ConfigError, DatasetError

__all__ = ["CameraMotion", "SynthClip", "load_still", "synthesize_clip"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraMotion:
    """Per-frame camera trajectory parameters (all smooth in time).

    Attributes:
        pan: Camera velocity ``(vx, vy)`` in output pixels per frame, measured in
            the previous frame: the centre of frame ``t`` sits at
            ``centre + pan`` in frame ``t - 1``. The content therefore moves by
            ``-pan`` on screen, and a pure pan gives ``flow_past == +pan`` and
            ``flow_future == -pan``.
        zoom: Relative scale change per frame; ``0.01`` magnifies the content by
            1% each frame (zoom in), negative values zoom out. Must be > -1.
        rotation: Camera roll in degrees per frame; positive turns the sampling
            grid clockwise on screen (x right, y down), so the content turns
            anticlockwise.
        pan_accel: Change of ``pan`` per frame, in output pixels per frame
            squared: the step from frame ``t - 1`` to ``t`` uses
            ``pan + (t - 1) * pan_accel``.
    """

    pan: tuple[float, float]
    zoom: float
    rotation: float
    pan_accel: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        pan = _pair(self.pan, "pan")
        pan_accel = _pair(self.pan_accel, "pan_accel")
        zoom, rotation = float(self.zoom), float(self.rotation)
        if not (math.isfinite(zoom) and zoom > -1.0):
            raise ConfigError(f"zoom={self.zoom!r}: must be a finite number > -1")
        if not math.isfinite(rotation):
            raise ConfigError(f"rotation={self.rotation!r}: must be finite")
        object.__setattr__(self, "pan", pan)
        object.__setattr__(self, "pan_accel", pan_accel)
        object.__setattr__(self, "zoom", zoom)
        object.__setattr__(self, "rotation", rotation)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        max_pan: float = 4.0,
        max_zoom: float = 0.01,
        max_rotation: float = 0.5,
        max_pan_accel: float = 0.0,
    ) -> CameraMotion:
        """Draws a motion uniformly within the given bounds.

        Args:
            rng: Source of randomness.
            max_pan: Largest pan speed ``|pan|`` in output pixels per frame; the
                direction is uniform.
            max_zoom: ``zoom`` is uniform in ``[-max_zoom, max_zoom]``.
            max_rotation: ``rotation`` is uniform in degrees in
                ``[-max_rotation, max_rotation]``.
            max_pan_accel: Largest ``|pan_accel|``; 0 keeps the pan constant.

        Returns:
            The drawn motion.
        """
        bounds = {
            "max_pan": max_pan,
            "max_zoom": max_zoom,
            "max_rotation": max_rotation,
            "max_pan_accel": max_pan_accel,
        }
        for name, value in bounds.items():
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name}={value!r}: must be a finite number >= 0")
        if max_zoom >= 1:
            raise ConfigError(f"max_zoom={max_zoom!r}: must be < 1")
        pan = _random_vector(rng, max_pan)
        zoom = float(rng.uniform(-max_zoom, max_zoom))
        rotation = float(rng.uniform(-max_rotation, max_rotation))
        pan_accel = _random_vector(rng, max_pan_accel)
        return cls(pan=pan, zoom=zoom, rotation=rotation, pan_accel=pan_accel)


@dataclass
class SynthClip:
    """A rendered clip and its exact optical flow.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        flow_past: ``(T, 2, H, W)`` float32 ``(dx, dy)``: pixel ``(x, y)`` of frame
            ``t`` sits at ``(x + dx, y + dy)`` in frame ``t - 1``; ``flow_past[0]``
            is all NaN.
        flow_future: ``(T, 2, H, W)`` float32, the same w.r.t. frame ``t + 1``;
            ``flow_future[T - 1]`` is all NaN.
        motion: The camera motion that was rendered.
        affine: ``(T, 2, 3)`` float64 maps ``A_t`` from output pixel coordinates
            ``(x, y, 1)`` to pixel coordinates of the input photo (pixel centres at
            integers in both).
    """

    frames: np.ndarray
    flow_past: np.ndarray
    flow_future: np.ndarray
    motion: CameraMotion
    affine: np.ndarray


def synthesize_clip(
    image: np.ndarray,
    n_frames: int,
    size: tuple[int, int],
    motion: CameraMotion | None = None,
    *,
    seed: int = 0,
    supersample: int = 2,
    scale: float | None = None,
    fill: float = 0.5,
) -> SynthClip:
    """Renders a clip of a still photo seen by a moving camera.

    The whole trajectory is centred in the photo and never samples outside it.
    The sampling scale (photo pixels per output pixel, taken at the most zoomed-in
    frame) is ``scale`` if given; otherwise it is chosen so that the union of all
    views spans ``fill`` of the photo along its limiting axis, but never below 1,
    so a photo only just large enough gives a plain centred crop and a much larger
    photo is downscaled instead of showing a tiny patch of it.

    Args:
        image: ``(H_s, W_s, 3)`` RGB photo, uint8 or float in [0, 1].
        n_frames: Number of frames ``T`` (>= 1).
        size: ``(H, W)`` of the output frames.
        motion: Camera motion; None draws ``CameraMotion.random`` from
            ``np.random.default_rng(seed)``.
        seed: Seed used when ``motion`` is None.
        supersample: Samples per output pixel along each axis, box-averaged.
        scale: Photo pixels per output pixel at the most zoomed-in frame; None
            chooses it from ``fill``.
        fill: In (0, 1], the fraction of the photo the trajectory covers when
            ``scale`` is None.

    Returns:
        The clip: frames ``(T, H, W, 3)`` uint8, flows ``(T, 2, H, W)`` float32.

    Raises:
        DatasetError: The photo is not an RGB array, or is too small for the clip
            and its motion at scale 1 (or at the requested ``scale``).
        ConfigError: A numeric argument is out of range.
    """
    photo = _check_photo(image)
    height, width = _check_args(n_frames, size, supersample, scale, fill)
    if motion is None:
        motion = CameraMotion.random(np.random.default_rng(seed))
    unit = _unit_trajectory(motion, n_frames, (height, width))
    s, shift = _place(unit, photo.shape[:2], (height, width), n_frames, scale, fill)
    affine = unit * s
    affine[:, :, 2] += shift
    logger.debug(
        "synth clip %dx%dx%d from photo %dx%d at scale %.3f, motion %s",
        n_frames, width, height, photo.shape[1], photo.shape[0], s, motion,
    )
    frames = _render(photo, affine, (height, width), supersample)
    flow_past, flow_future = _flows(affine, (height, width))
    return SynthClip(frames, flow_past, flow_future, motion, affine)


def load_still(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads a photo as RGB, applying its EXIF orientation.

    Args:
        path: Image file Pillow can read (PNG, JPEG, ...).

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        DatasetError: The file is missing or not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise DatasetError(f"{os.fspath(path)}: no such file") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{os.fspath(path)}: not a readable image ({exc})") from exc


# --------------------------------------------------------------------------- checks


def _pair(value: tuple[float, float], name: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}={value!r}: must be a pair of numbers") from exc
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(f"{name}={value!r}: must be finite")
    return (x, y)


def _random_vector(rng: np.random.Generator, max_norm: float) -> tuple[float, float]:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    norm = rng.uniform(0.0, max_norm)
    return (float(norm * math.cos(angle)), float(norm * math.sin(angle)))


def _check_photo(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DatasetError(f"photo of shape {image.shape}: expected (H, W, 3) RGB")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise DatasetError(f"photo of dtype {image.dtype}: expected uint8 or float in [0, 1]")
    return image


def _check_args(
    n_frames: int, size: tuple[int, int], supersample: int, scale: float | None, fill: float
) -> tuple[int, int]:
    if int(n_frames) != n_frames or n_frames < 1:
        raise ConfigError(f"n_frames={n_frames!r}: must be an integer >= 1")
    if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
        raise ConfigError(f"size={size!r}: must be (H, W) with positive integers")
    if int(supersample) != supersample or supersample < 1:
        raise ConfigError(f"supersample={supersample!r}: must be an integer >= 1")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"scale={scale!r}: must be a positive number or None")
    if not (0 < fill <= 1):
        raise ConfigError(f"fill={fill!r}: must be in (0, 1]")
    return int(size[0]), int(size[1])


# ------------------------------------------------------------------------- geometry


def _unit_trajectory(motion: CameraMotion, n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """Affine maps at unit scale (most zoomed-in frame samples 1:1), origin-centred.

    Returns:
        ``(T, 2, 3)`` float64 ``A_t`` before scaling and placement.
    """
    height, width = size
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    t = np.arange(n_frames, dtype=np.float64)
    log_g = -t * math.log1p(motion.zoom)
    g = np.exp(log_g - log_g.min())
    theta = np.deg2rad(motion.rotation) * t
    cos, sin = np.cos(theta), np.sin(theta)
    linear = g[:, None, None] * np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    pan = np.asarray(motion.pan)
    accel = np.asarray(motion.pan_accel)
    offset = np.zeros((n_frames, 2))
    for k in range(1, n_frames):
        step = pan + (k - 1) * accel
        offset[k] = offset[k - 1] + linear[k - 1] @ step
    affine = np.empty((n_frames, 2, 3))
    affine[:, :, :2] = linear
    affine[:, :, 2] = offset - linear @ centre
    return affine


def _footprint(affine: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box ``(min_xy, max_xy)`` of all frames' pixel areas in photo coords."""
    height, width = size
    corners = np.array(
        [[-0.5, -0.5, 1], [width - 0.5, -0.5, 1], [-0.5, height - 0.5, 1], [width - 0.5, height - 0.5, 1]]
    )
    points = np.einsum("tij,kj->tki", affine, corners).reshape(-1, 2)
    return points.min(0), points.max(0)


def _place(
    unit: np.ndarray,
    photo_size: tuple[int, int],
    size: tuple[int, int],
    n_frames: int,
    scale: float | None,
    fill: float,
) -> tuple[float, np.ndarray]:
    """Chooses the scale and the translation that centres the trajectory in the photo."""
    photo_h, photo_w = photo_size
    height, width = size
    if photo_w < width or photo_h < height:
        raise DatasetError(
            f"photo {photo_w}x{photo_h} is smaller than the requested {width}x{height} clip; "
            "use a larger photo or a smaller clip size"
        )
    lo, hi = _footprint(unit, size)
    extent = hi - lo
    s_max = min(photo_w / extent[0], photo_h / extent[1])
    tol = 1e-9  # rounding slack, a billionth of a pixel per pixel
    need = f"{math.ceil(extent[0] - 1e-6)}x{math.ceil(extent[1] - 1e-6)}"
    if s_max < 1 - tol and scale is None:
        raise DatasetError(
            f"photo {photo_w}x{photo_h} is too small for a {width}x{height} clip of {n_frames} "
            f"frames with this camera motion: it needs {need} pixels at scale 1; use a larger "
            "photo, fewer frames or a gentler motion"
        )
    if scale is not None and scale > s_max * (1 + tol):
        raise DatasetError(
            f"photo {photo_w}x{photo_h} is too small for a {width}x{height} clip of {n_frames} "
            f"frames at scale {scale:g}: it needs {need} pixels at scale 1, so at most scale "
            f"{s_max:.3f}; lower the scale or use a larger photo"
        )
    s = float(scale) if scale is not None else max(1.0, fill * s_max)
    photo_centre = np.array([(photo_w - 1) / 2.0, (photo_h - 1) / 2.0])
    return s, photo_centre - s * (lo + hi) / 2.0


def _flows(affine: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Analytic flows ``(T, 2, H, W)`` float32 from the per-frame affine maps."""
    height, width = size
    n_frames = affine.shape[0]
    square = np.zeros((n_frames, 3, 3))
    square[:, :2] = affine
    square[:, 2, 2] = 1.0
    inverse = np.linalg.inv(square)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xs, ys, np.ones_like(xs)])  # (3, H, W)

    def flow(src: int, dst: int) -> np.ndarray:
        rel = (inverse[dst] @ square[src])[:2]  # maps frame src pixels to frame dst pixels
        return (np.einsum("ij,jhw->ihw", rel, grid) - grid[:2]).astype(np.float32)

    flow_past = np.full((n_frames, 2, height, width), np.nan, dtype=np.float32)
    flow_future = np.full((n_frames, 2, height, width), np.nan, dtype=np.float32)
    for t in range(1, n_frames):
        flow_past[t] = flow(t, t - 1)
        flow_future[t - 1] = flow(t - 1, t)
    return flow_past, flow_future


# ------------------------------------------------------------------------ rendering


def _render(
    photo: np.ndarray, affine: np.ndarray, size: tuple[int, int], supersample: int
) -> np.ndarray:
    """Samples every frame from the photo with anti-aliasing.

    Args:
        photo: ``(H_s, W_s, 3)`` uint8 or float in [0, 1].
        affine: ``(T, 2, 3)`` output-pixel to photo-pixel maps.
        size: ``(H, W)`` of the frames.
        supersample: Samples per pixel along each axis.

    Returns:
        ``(T, H, W, 3)`` uint8.
    """
    height, width = size
    k = supersample
    work, to_work, sigmas = _working_photo(photo, affine, size, k)
    # Sub-sample j of an axis sits at (j + 0.5) / k - 0.5: the k sub-samples of a pixel
    # are symmetric about its centre, so their box average is centred on it.
    sub_y = (np.arange(height * k) + 0.5) / k - 0.5
    sub_x = (np.arange(width * k) + 0.5) / k - 0.5
    ys, xs = np.meshgrid(sub_y, sub_x, indexing="ij")
    points = np.stack([xs, ys, np.ones_like(xs)])  # (3, Hk, Wk)

    frames = np.empty((affine.shape[0], height, width, 3), dtype=np.uint8)
    blurred, blurred_sigma = work, 0.0
    for t in range(affine.shape[0]):
        if sigmas[t] != blurred_sigma:
            blurred, blurred_sigma = _gaussian_blur(work, float(sigmas[t])), sigmas[t]
        u, v = np.einsum("ij,jhw->ihw", to_work @ np.vstack([affine[t], [0, 0, 1]]), points)
        dense = _sample_catmull_rom(blurred, u, v)  # (3, Hk, Wk)
        pixel = F.avg_pool2d(dense[None], k)[0].clamp_(0.0, 1.0)
        frames[t] = np.rint(pixel.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    return frames


def _working_photo(
    photo: np.ndarray, affine: np.ndarray, size: tuple[int, int], supersample: int
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Crops the photo to the trajectory and area-downscales it by an integer factor.

    The factor leaves the sub-sample spacing at >= 1 working pixel at the most
    zoomed-in frame; the rest of the anti-aliasing is a per-frame Gaussian.

    Returns:
        The working image ``(3, h, w)`` float32, the ``(2, 3)`` map from photo to
        working pixel coordinates, and the per-frame Gaussian sigmas ``(T,)`` in
        working pixels.
    """
    scales = np.sqrt(np.abs(np.linalg.det(affine[:, :, :2])))  # photo px per output px
    factor = max(1, int(math.floor(scales.min() / supersample + 1e-9)))
    sigmas = np.maximum(0.0, (scales / (supersample * factor) - 1.0) / 2.0)
    margin = int(math.ceil(3 * sigmas.max() * factor + 3 * factor + 2))  # blur + cubic taps
    lo, hi = _footprint(affine, size)
    x0, y0 = (max(0, int(math.floor(v)) - margin) for v in lo)
    x1 = min(photo.shape[1], int(math.ceil(hi[0])) + margin + 1)
    y1 = min(photo.shape[0], int(math.ceil(hi[1])) + margin + 1)
    work = _area_downscale(_to_tensor(photo[y0:y1, x0:x1]), factor)
    # working pixel j has its centre at photo coordinate origin + j * factor + (factor - 1) / 2
    offset = (factor - 1) / 2.0
    to_work = np.array([[1 / factor, 0, -(x0 + offset) / factor], [0, 1 / factor, -(y0 + offset) / factor]])
    return work, to_work, sigmas


def _to_tensor(photo: np.ndarray) -> torch.Tensor:
    """``(h, w, 3)`` uint8 or float array -> ``(3, h, w)`` float32 in [0, 1]."""
    array = np.ascontiguousarray(photo)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float()
    if photo.dtype == np.uint8:
        tensor = tensor / 255.0
    return tensor.contiguous()


def _area_downscale(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Box-averages ``factor x factor`` blocks of ``(3, h, w)``; edges replicate-padded.

    Output pixel ``j`` has its centre at input coordinate ``j * factor + (factor - 1) / 2``.
    """
    if factor == 1:
        return image
    pad_h = -image.shape[1] % factor
    pad_w = -image.shape[2] % factor
    if pad_h or pad_w:
        image = F.pad(image[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
    return F.avg_pool2d(image[None], factor)[0]


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable sampled-Gaussian blur of ``(C, h, w)``, reflect-padded.

    The sampled kernel tends to a unit impulse as ``sigma -> 0``, so the blur changes
    continuously with the zoom.
    """
    if sigma <= 0:
        return image
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, image.shape[1] - 1, image.shape[2] - 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).tolist()
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")[0]
    h, w = image.shape[1:]
    rows = sum(tap * padded[:, :, i : i + w] for i, tap in enumerate(taps))
    return sum(tap * rows[:, i : i + h, :] for i, tap in enumerate(taps))


def _catmull_rom_taps(coord: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """1-D Catmull-Rom interpolation as three linear-interpolation taps.

    The weights of taps ``-1, 0, 1, 2`` are ``w_m, w_0, w_1, w_2`` with ``w_0 + w_1 >= 1``,
    so taps 0 and 1 merge into one linear fetch at ``i + w_1 / (w_0 + w_1)``; the outer
    taps are fetched at integer positions. The result is exact Catmull-Rom (exact on
    quadratics) computed with a bilinear sampler.

    Args:
        coord: Pixel coordinates, any shape, float64.

    Returns:
        Positions and weights of the three taps, float32 shaped like ``coord``.
    """
    floor = np.floor(coord)
    base = torch.from_numpy(floor.astype(np.float32))
    f = torch.from_numpy((coord - floor).astype(np.float32))
    f2, f3 = f * f, f * f * f
    w_m = 0.5 * (-f3 + 2 * f2 - f)
    w_0 = 0.5 * (3 * f3 - 5 * f2 + 2)
    w_1 = 0.5 * (-3 * f3 + 4 * f2 + f)
    w_2 = 0.5 * (f3 - f2)
    w_mid = w_0 + w_1
    return [base - 1, base + w_1 / w_mid, base + 2], [w_m, w_mid, w_2]


def _sample_catmull_rom(image: torch.Tensor, u: np.ndarray, v: np.ndarray) -> torch.Tensor:
    """Samples ``(C, h, w)`` at pixel coordinates ``(u, v)`` of shape ``(Hk, Wk)``.

    Nine bilinear ``grid_sample`` fetches give exact 4x4-tap Catmull-Rom; taps outside
    the image replicate the border.

    Returns:
        ``(C, Hk, Wk)`` float32.
    """
    channels, h, w = image.shape
    xs, wxs = _catmull_rom_taps(u)
    ys, wys = _catmull_rom_taps(v)
    grid = torch.empty((9, *u.shape, 2), dtype=torch.float32)  # normalised (x, y)
    weights = torch.empty((9, *u.shape), dtype=torch.float32)
    for i, (y, wy) in enumerate(zip(ys, wys)):
        for j, (x, wx) in enumerate(zip(xs, wxs)):
            grid[3 * i + j, ..., 0] = (2 * x + 1) / w - 1
            grid[3 * i + j, ..., 1] = (2 * y + 1) / h - 1
            torch.mul(wy, wx, out=weights[3 * i + j])
    fetched = F.grid_sample(
        image[None].expand(9, -1, -1, -1),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )  # (9, C, Hk, Wk)
    return torch.einsum("nchw,nhw->chw", fetched, weights)
