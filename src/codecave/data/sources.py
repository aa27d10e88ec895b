"""Ground-truth sources for datasets: frame folders, y4m, raw yuv, lossless video, stills.

Every source yields ``(H, W, 3)`` uint8 RGB frames, or YUV 4:2:0 planes on request. Video-like sources are read
through :mod:`codecave.codec.reader` (FFmpeg demuxes y4m and raw yuv too); stills
become clips by synthetic camera motion (:mod:`codecave.data.synth`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from codecave.codec.priors import YUVPlanes
from codecave.errors import DatasetError

FRAME_EXTS = (".png",)
STILL_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mkv", ".mp4", ".mov", ".avi", ".webm", ".y4m", ".264", ".h264", ".265", ".hevc",
              ".ivf", ".m2v", ".mpg", ".ts", ".nut")
YUV_EXTS = (".yuv",)


@dataclass(frozen=True)
class Source:
    """One ground-truth clip to prepare.

    Attributes:
        path: file or folder.
        kind: ``"frames"`` (folder of PNGs), ``"video"`` (y4m or any video FFmpeg reads,
            lossless for ground truth), ``"yuv"`` (raw planar YUV), ``"still"`` (a photo
            animated by synthetic camera motion).
        name: unique clip name used in the dataset.
    """

    path: Path
    kind: str
    name: str


def _kind(path: Path, stills: bool) -> str | None:
    if path.is_dir():
        if stills:
            return None
        return "frames" if any(p.suffix.lower() in FRAME_EXTS for p in path.iterdir()) else None
    ext = path.suffix.lower()
    if ext in YUV_EXTS:
        return "yuv"
    if ext in VIDEO_EXTS:
        return "video"
    if stills and ext in STILL_EXTS:
        return "still"
    return None


def discover_sources(paths: Sequence[str | os.PathLike[str]], *, stills: bool = False) -> list[Source]:
    """Find the clips named by files and folders.

    A folder that holds PNG frames is one clip; any other folder is searched one
    level down for videos and frame folders. With ``stills``, every image in a
    folder is a photo to animate instead (an image named directly always is).

    Raises:
        DatasetError: a path does not exist or holds nothing usable.
    """
    found: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        kind = _kind(path, stills) if path.is_dir() else _kind(path, True)
        if kind is not None and not (kind == "frames" and _has_subclips(path)):
            found.append(Source(path, kind, path.stem))
            continue
        if path.is_dir():
            for child in sorted(path.iterdir()):
                child_kind = _kind(child, stills)
                if child_kind is not None:
                    found.append(Source(child, child_kind, child.stem))
    if not found:
        raise DatasetError(f"no video, frame folder or still found in {[str(p) for p in paths]}")
    names = [s.name for s in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        found = [Source(s.path, s.kind, f"{s.path.parent.name}_{s.name}") for s in found]
    return found


def _has_subclips(path: Path) -> bool:
    return any(p.is_dir() for p in path.iterdir())


def read_frames(
    source: Source,
    *,
    max_frames: int | None = None,
    yuv_size: tuple[int, int] | None = None,
    yuv_format: str = "yuv420p",
    fps: Fraction | int = 25,
    planes: bool = False,
) -> Iterator[np.ndarray] | Iterator[YUVPlanes]:
    """Yield a source's frames as ``(H, W, 3)`` uint8 RGB, or as YUV 4:2:0 planes (not for stills).

    Args:
        source: a frames, video or yuv source.
        max_frames: stop after this many frames.
        yuv_size: ``(width, height)`` of a raw ``.yuv`` file (required for yuv).
        yuv_format: FFmpeg pixel format of a raw ``.yuv`` file.
        fps: frame rate of a raw ``.yuv`` file.
        planes: yield :class:`~codecave.codec.priors.YUVPlanes`: a 4:2:0 source's own
            planes, exactly; any other source converted once by
            :func:`~codecave.codec.convert.rgb_to_planes` (BT.601 limited range).
    """
    from codecave.codec.convert import rgb_to_planes

    limit = max_frames if max_frames is not None else float("inf")
    if source.kind == "frames":
        from PIL import Image

        files = sorted(p for p in source.path.iterdir() if p.suffix.lower() in FRAME_EXTS)
        for i, file in enumerate(files):
            if i >= limit:
                return
            with Image.open(file) as im:
                rgb = np.asarray(im.convert("RGB"))
            yield rgb_to_planes(rgb) if planes else rgb
        return
    from codecave.codec.reader import open_video, yuv_options

    if source.kind == "yuv":
        if yuv_size is None:
            raise DatasetError(f"{source.path}: raw .yuv needs its size: give --yuv-size WIDTHxHEIGHT")
        reader = open_video(source.path, format="rawvideo", priors=False,
                            options=yuv_options(*yuv_size, yuv_format, fps))
    elif source.kind == "video":
        reader = open_video(source.path, priors=False)
    else:
        raise DatasetError(f"{source.path}: a {source.kind} source has no frames to read")
    with reader:
        for i, frame in enumerate(reader):
            if i >= limit:
                return
            if planes:
                yield frame.planes if frame.has_planes else rgb_to_planes(frame.rgb)
            else:
                yield frame.rgb
        reader.check()


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of a folder's files in name order."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
