"""Turn per-block codec priors into grids and dense per-pixel tensors.

Two levels, as in the design's data contract:

* :class:`CompactPriors`: one frame on the 4x4-pixel grid (the smallest H.264
  partition) with QP per 16x16 macroblock. This is what datasets store.
* :func:`dense_priors`: a clip's compact priors upsampled to pixels, as float
  tensors shaped ``(T, C, H, W)`` ready to batch into ``(B, T, C, H, W)``.

Vectors on the grid are scaled to a one-frame step: a past vector that points
``ref_past`` frames back is divided by ``ref_past``, so ``mv_past`` says where a
pixel sits in frame ``t-1`` under constant motion.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from codecave.codec.priors import GRID, MB, CodedFrame, FramePriors
from codecave.layers.warp import flow_warp

#: Names of the partition classes, in one-hot channel order.
PARTITION_CLASSES = ("16x16", "16x8/8x16", "8x8 and smaller", "intra/none")
INTRA = 3


def size_class(w: np.ndarray | int, h: np.ndarray | int) -> np.ndarray:
    """Partition class of blocks of size ``w`` x ``h`` pixels.

    Returns:
        uint8 array: 0 for 16x16 (and larger), 1 for 16x8 / 8x16, 2 for 8x8 and smaller.
    """
    area = np.asarray(w, dtype=np.int32) * np.asarray(h, dtype=np.int32)
    return np.where(area >= 256, 0, np.where(area >= 128, 1, 2)).astype(np.uint8)


def grid_shape(height: int, width: int, cell: int = GRID) -> tuple[int, int]:
    """Cells needed to cover ``height`` x ``width`` pixels."""
    return -(-height // cell), -(-width // cell)


@dataclass
class CompactPriors:
    """One frame's priors on the 4x4 grid.

    Attributes:
        mv: ``(2, 2, Hg, Wg)`` float32, ``[past/future, dx/dy]`` per cell, scaled to a
            one-frame step; zero where invalid.
        mv_valid: ``(2, Hg, Wg)`` bool, per direction.
        partition: ``(Hg, Wg)`` uint8 class index (see :data:`PARTITION_CLASSES`).
        qp_map: ``(Hm, Wm)`` float32 per macroblock (NaN when unknown).
        frame_type, qp, ref_past, ref_future: the frame's scalars (qp NaN when unknown,
            references 0 when absent).
    """

    mv: np.ndarray
    mv_valid: np.ndarray
    partition: np.ndarray
    qp_map: np.ndarray
    frame_type: int
    qp: float
    ref_past: int
    ref_future: int


def compact_priors(priors: FramePriors, height: int, width: int) -> CompactPriors:
    """Rasterise one frame's block vectors and QP onto the 4x4 / 16x16 grids.

    Args:
        priors: the frame's priors as read or estimated.
        height, width: picture size in pixels.
    """
    gh, gw = grid_shape(height, width)
    mv = np.zeros((2, 2, gh, gw), dtype=np.float32)
    valid = np.zeros((2, gh, gw), dtype=bool)
    partition = np.full((gh, gw), INTRA, dtype=np.uint8)
    rows = priors.mvs
    for slot, direction, ref in ((0, -1, priors.ref_past), (1, 1, priors.ref_future)):
        sel = rows[rows["direction"] == direction]
        if len(sel) == 0:
            continue
        scale = 1.0 / float(ref or 1)
        cls = size_class(sel["w"], sel["h"])
        values = (sel["dx"] * scale, sel["dy"] * scale)
        _paint(sel, gh, gw, [(mv[slot, 0], values[0]), (mv[slot, 1], values[1]),
                             (valid[slot], True), (partition, cls)])
    hm, wm = grid_shape(height, width, MB)
    if priors.qp_map is not None and priors.qp_map.size:
        qp_map = np.full((hm, wm), np.nan, dtype=np.float32)
        src = np.asarray(priors.qp_map, dtype=np.float32)[:hm, :wm]
        qp_map[: src.shape[0], : src.shape[1]] = src
    elif priors.qp is not None:
        qp_map = np.full((hm, wm), priors.qp, dtype=np.float32)
    else:
        qp_map = np.full((hm, wm), np.nan, dtype=np.float32)
    return CompactPriors(
        mv=mv,
        mv_valid=valid,
        partition=partition,
        qp_map=qp_map,
        frame_type=int(priors.frame_type),
        qp=float("nan") if priors.qp is None else float(priors.qp),
        ref_past=int(priors.ref_past or 0),
        ref_future=int(priors.ref_future or 0),
    )


def _paint(rows: np.ndarray, gh: int, gw: int, targets: list[tuple[np.ndarray, object]]) -> None:
    """Write per-block values into every grid cell each block covers (one scatter per target)."""
    gx0 = rows["x"].astype(np.int64) // GRID
    gy0 = rows["y"].astype(np.int64) // GRID
    cw = np.maximum(rows["w"].astype(np.int64) // GRID, 1)
    ch = np.maximum(rows["h"].astype(np.int64) // GRID, 1)
    counts = cw * ch
    block = np.repeat(np.arange(len(rows)), counts)
    local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    gy = gy0[block] + local // cw[block]
    gx = gx0[block] + local % cw[block]
    inside = (gy >= 0) & (gy < gh) & (gx >= 0) & (gx < gw)
    flat = (gy * gw + gx)[inside]
    block = block[inside]
    for grid, value in targets:
        v = value if np.isscalar(value) or isinstance(value, bool) else np.asarray(value)[block]
        grid.reshape(-1)[flat] = v


def _upsample(grid: torch.Tensor, factor: int, height: int, width: int) -> torch.Tensor:
    """Nearest upsampling of ``(..., h, w)`` by ``factor``, cropped to ``height`` x ``width``."""
    out = grid.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return out[..., :height, :width]


def stack_compact(frames: Sequence[CompactPriors]) -> dict[str, np.ndarray]:
    """Stack a clip's compact priors into arrays with a leading time axis (for storage)."""
    return {
        "mv": np.stack([f.mv for f in frames]).astype(np.float16),
        "mv_valid": np.stack([f.mv_valid for f in frames]),
        "partition": np.stack([f.partition for f in frames]),
        "qp_map": np.stack([f.qp_map for f in frames]).astype(np.float16),
        "frame_type": np.array([f.frame_type for f in frames], dtype=np.int64),
        "qp": np.array([f.qp for f in frames], dtype=np.float32),
        "ref_past": np.array([f.ref_past for f in frames], dtype=np.int16),
        "ref_future": np.array([f.ref_future for f in frames], dtype=np.int16),
    }


def crop_compact(stacked: dict[str, np.ndarray], y: int, x: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Cut a picture region out of stacked compact priors.

    Args:
        stacked: output of :func:`stack_compact` (any time slice).
        y, x: top-left corner in pixels, multiples of 16 (the macroblock grid, which
            is also on the 4x4 prior grid).
        height, width: region size in pixels (may end at a partial block).

    Returns:
        The same keys, cut to the region; scalars per frame unchanged.
    """
    if y % MB or x % MB:
        raise ValueError(f"crop corner ({x}, {y}) is not on the {MB}-pixel macroblock grid")
    g = (slice(y // GRID, -(-(y + height) // GRID)), slice(x // GRID, -(-(x + width) // GRID)))
    m = (slice(y // MB, -(-(y + height) // MB)), slice(x // MB, -(-(x + width) // MB)))
    out = dict(stacked)
    out["mv"] = stacked["mv"][..., g[0], g[1]]
    out["mv_valid"] = stacked["mv_valid"][..., g[0], g[1]]
    out["partition"] = stacked["partition"][..., g[0], g[1]]
    out["qp_map"] = stacked["qp_map"][..., m[0], m[1]]
    return out


def dense_priors(stacked: dict[str, np.ndarray], height: int, width: int) -> dict[str, torch.Tensor]:
    """Upsample a clip's stacked compact priors to pixels (the design's contract).

    Args:
        stacked: output of :func:`stack_compact` (possibly sliced in time or cropped
            on the 4x4 grid).
        height, width: picture size in pixels.

    Returns:
        ``frame_type (T,)`` int64, ``qp (T,)`` float32, ``qp_map (T, 1, H, W)``,
        ``mv_past`` / ``mv_future (T, 2, H, W)`` float32, ``mv_valid (T, 2, H, W)`` bool,
        ``partition (T, 4, H, W)`` float32 one-hot.
    """
    mv = torch.from_numpy(np.asarray(stacked["mv"], dtype=np.float32))
    mv = _upsample(mv, GRID, height, width)
    valid = _upsample(torch.from_numpy(np.asarray(stacked["mv_valid"])), GRID, height, width)
    part = torch.from_numpy(np.asarray(stacked["partition"], dtype=np.int64))
    one_hot = F.one_hot(_upsample(part, GRID, height, width), len(PARTITION_CLASSES))
    qp_map = torch.from_numpy(np.asarray(stacked["qp_map"], dtype=np.float32))
    return {
        "frame_type": torch.from_numpy(np.asarray(stacked["frame_type"], dtype=np.int64)),
        "qp": torch.from_numpy(np.asarray(stacked["qp"], dtype=np.float32)),
        "qp_map": _upsample(qp_map, MB, height, width).unsqueeze(1),
        "mv_past": mv[:, 0],
        "mv_future": mv[:, 1],
        "mv_valid": valid,
        "partition": one_hot.permute(0, 3, 1, 2).float(),
    }


def grid_priors(stacked: dict[str, np.ndarray], grid_height: int | None = None,
                grid_width: int | None = None) -> dict[str, torch.Tensor]:
    """A clip's stacked compact priors as tensors on the 4x4 grid, with no upsampling.

    The priors of ``yuv420`` models (design section 3): one value per 4x4 luma block,
    the positions of :func:`codecave.grid.pack`.

    Args:
        stacked: output of :func:`stack_compact` (possibly sliced in time or cropped).
        grid_height, grid_width: pad (by edge replication) to this many positions, for
            pictures padded to whole macroblocks; default: the priors' own size.

    Returns:
        ``frame_type (T,)`` int64, ``qp (T,)`` float32, ``qp_map (T, 1, h, w)`` (QP per
        position), ``mv_past`` / ``mv_future (T, 2, h, w)`` float32 in grid units
        (pixels / 4, one-frame step), ``mv_valid (T, 2, h, w)`` bool and
        ``partition (T, 4, h, w)`` float32 one-hot.
    """
    mv = torch.from_numpy(np.asarray(stacked["mv"], dtype=np.float32)) / GRID
    valid = torch.from_numpy(np.asarray(stacked["mv_valid"]))
    part = F.one_hot(torch.from_numpy(np.asarray(stacked["partition"], dtype=np.int64)), len(PARTITION_CLASSES))
    part = part.permute(0, 3, 1, 2).float()
    gh, gw = mv.shape[-2:]
    qp_map = torch.from_numpy(np.asarray(stacked["qp_map"], dtype=np.float32)).unsqueeze(1)
    qp_map = _upsample(qp_map, MB // GRID, gh, gw)
    out = {"mv_past": mv[:, 0], "mv_future": mv[:, 1], "mv_valid": valid, "partition": part, "qp_map": qp_map}
    th, tw = grid_height or gh, grid_width or gw
    if (th, tw) != (gh, gw):
        for key, value in out.items():
            padded = F.pad(value.float(), (0, tw - gw, 0, th - gh), mode="replicate")
            out[key] = padded.bool() if value.dtype == torch.bool else padded
    out["frame_type"] = torch.from_numpy(np.asarray(stacked["frame_type"], dtype=np.int64))
    out["qp"] = torch.from_numpy(np.asarray(stacked["qp"], dtype=np.float32))
    return out


def motion_compensate(
    compact: CompactPriors,
    past: np.ndarray | None,
    future: np.ndarray | None,
    current: np.ndarray,
) -> np.ndarray:
    """Motion-compensated prediction of a frame from its references.

    Each pixel is fetched (bilinear, quarter-pel) from the past and/or future
    reference along its block's full vector, averaged where the block is
    bi-predicted. Intra pixels (no vector) predict themselves, so their residual is
    zero. This approximates the decoder's own prediction: H.264's 6-tap luma filter,
    weighted prediction and intra prediction are not modelled.

    Args:
        compact: the frame's priors on the 4x4 grid.
        past, future: reference pictures ``(H, W, 3)`` uint8, or ``None``.
        current: the decoded picture ``(H, W, 3)`` uint8.

    Returns:
        The prediction, ``(H, W, 3)`` float32 in [0, 1].
    """
    h, w = current.shape[:2]
    cur = torch.from_numpy(current).permute(2, 0, 1).float().div(255)
    total = torch.zeros_like(cur)
    count = torch.zeros(1, h, w)
    for slot, ref, dist in ((0, past, compact.ref_past), (1, future, compact.ref_future)):
        if ref is None or not compact.mv_valid[slot].any():
            continue
        flow = _upsample(torch.from_numpy(compact.mv[slot] * max(dist, 1)), GRID, h, w)
        ok = _upsample(torch.from_numpy(compact.mv_valid[slot]), GRID, h, w).float()
        img = torch.from_numpy(ref).permute(2, 0, 1).float().div(255)
        total += warp_image(img, flow) * ok
        count += ok
    pred = torch.where(count > 0, total / count.clamp(min=1), cur)
    return pred.permute(1, 2, 0).numpy()


def residual(
    compact: CompactPriors,
    past: np.ndarray | None,
    future: np.ndarray | None,
    current: np.ndarray,
) -> np.ndarray:
    """Decoded frame minus its motion-compensated prediction.

    Returns:
        ``(3, H, W)`` float32 in [-1, 1]; zero on intra pixels.
    """
    pred = motion_compensate(compact, past, future, current)
    return (current.astype(np.float32) / 255 - pred).transpose(2, 0, 1).copy()


def warp_image(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image (C, H, W)`` at ``p + flow(p)``, bilinear, edges clamped.

    Args:
        image: ``(C, H, W)`` picture.
        flow: ``(2, H, W)`` displacement (dx, dy) in pixels.
    """
    return flow_warp(image.unsqueeze(0), flow.unsqueeze(0))[0]


def iter_residuals(
    frames: Iterable[CodedFrame], *, history: int = 16
) -> Iterator[tuple[CodedFrame, CompactPriors, np.ndarray]]:
    """Pair each frame with its compact priors and residual, streaming.

    Frames are held back only until their future reference has been seen, and the
    last ``history`` frames are kept for past references, so memory stays flat.

    Args:
        frames: frames in display order, e.g. a :class:`~codecave.codec.reader.VideoReader`.
        history: past frames kept as possible references.

    Yields:
        ``(frame, compact, residual)`` with ``residual (3, H, W)`` float32.
    """
    recent: dict[int, CodedFrame] = {}
    waiting: deque[tuple[CodedFrame, CompactPriors]] = deque()

    def ready(item: tuple[CodedFrame, CompactPriors], last: int) -> bool:
        frame, compact = item
        return compact.ref_future == 0 or frame.index + compact.ref_future <= last

    def finish(item: tuple[CodedFrame, CompactPriors]) -> tuple[CodedFrame, CompactPriors, np.ndarray]:
        frame, compact = item
        past = recent.get(frame.index - compact.ref_past) if compact.ref_past else None
        future = recent.get(frame.index + compact.ref_future) if compact.ref_future else None
        return frame, compact, residual(compact, None if past is None else past.rgb,
                                        None if future is None else future.rgb, frame.rgb)

    last = -1
    for frame in frames:
        recent[frame.index] = frame
        last = frame.index
        waiting.append((frame, compact_priors(frame.priors, frame.height, frame.width)))
        while waiting and (ready(waiting[0], last) or len(waiting) > history):
            yield finish(waiting.popleft())
        for old in [i for i in recent if i < last - history]:
            del recent[old]
    while waiting:
        yield finish(waiting.popleft())
