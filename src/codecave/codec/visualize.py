"""PNG pictures of a frame's codec priors, for ``codecave probe --viz DIR``.

Three pictures per frame, each the decoded frame with one prior drawn over it:
motion vectors as arrows, the block partition as coloured outlines, and the
per-macroblock QP as a heat map. Figures are built with
:class:`matplotlib.figure.Figure` on the Agg canvas (never pyplot), so nothing
global in matplotlib changes; matplotlib is imported only when a picture is drawn.

The picture area shows the frame at one screen pixel per frame pixel, enlarged by
a whole factor for small frames so that labels stay readable; title, legend and
colour bar sit in margins around it, never over the frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codecave.codec.priors import MB, CodedFrame, FrameType
from codecave.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


#: Colours of the four partition classes of :mod:`codecave.codec.rasterize`, in class order.
_CLASS_COLOURS = ("#2ca02c", "#1f77ff", "#ff2d2d", "#ffb000")
#: Arrow colours of past (direction -1) and future (+1) vectors.
_PAST_COLOUR = "#ffd400"
_FUTURE_COLOUR = "#00d5ff"

_DPI = 100
#: Frames are enlarged by a whole factor until their longer side reaches this.
_MIN_LONG_SIDE = 480
#: Margins around the picture area, in output pixels.
_TITLE_PX = 30
_LEGEND_ROW_PX = 20
#: Width one legend entry needs, in output pixels.
_LEGEND_ENTRY_PX = 135
_COLOURBAR_PX = 80
_FONT = 9


@dataclass(frozen=True)
class _Layout:
    """Pixel geometry of one figure: picture area plus margins."""

    zoom: int
    width: int  # picture area, output pixels
    height: int
    top: int
    bottom: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        """Whole figure (width, height) in output pixels."""
        return self.width + self.right, self.height + self.top + self.bottom


def _layout(frame: CodedFrame, *, legend_entries: int = 0, right: int = 0) -> _Layout:
    """Geometry for ``frame``, with room below for a legend and on the right for a bar."""
    zoom = max(1, math.ceil(_MIN_LONG_SIDE / max(frame.width, frame.height, 1)))
    width, height = frame.width * zoom, frame.height * zoom
    bottom = 0
    if legend_entries:
        bottom = 14 + _LEGEND_ROW_PX * _legend_rows(width, legend_entries)
    return _Layout(zoom, width, height, _TITLE_PX, bottom, right)


def _legend_rows(width: int, entries: int) -> int:
    return -(-entries // max(1, min(entries, width // _LEGEND_ENTRY_PX)))


def _legend_columns(width: int, entries: int) -> int:
    """Columns that fill every legend row evenly."""
    return -(-entries // _legend_rows(width, entries))


def _figure(frame: CodedFrame, layout: _Layout, title: str) -> tuple[Figure, Axes]:
    """A figure of ``layout``'s size with the frame drawn in its picture area."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig_w, fig_h = layout.size
    fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(
        (0.0, layout.bottom / fig_h, layout.width / fig_w, layout.height / fig_h)
    )
    ax.set_axis_off()
    ax.set_xlim(0, frame.width)
    ax.set_ylim(frame.height, 0)
    fig.text(
        0.5 * layout.width / fig_w,
        1.0 - 0.5 * layout.top / fig_h,
        title,
        ha="center",
        va="center",
        fontsize=_FONT + 1,
    )
    return fig, ax


def _show_frame(ax: Axes, frame: CodedFrame, *, fade: float = 0.0) -> None:
    """Draw the frame's pixels, blended towards white by ``fade`` (0 to 1)."""
    rgb = np.asarray(frame.rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * (255.0 if rgb.dtype.kind == "f" else 1.0), 0, 255).astype(np.uint8)
    if fade > 0:
        rgb = (rgb.astype(np.float32) * (1.0 - fade) + 255.0 * fade).astype(np.uint8)
    ax.imshow(
        rgb,
        extent=(0, frame.width, frame.height, 0),
        interpolation="nearest",
        resample=False,
    )


def _title(frame: CodedFrame, what: str) -> str:
    p = frame.priors
    kind = FrameType(p.frame_type).name
    qp = "?" if p.qp is None else f"{p.qp:.4g}"
    source = "" if p.source == "bitstream" else f" ({p.source})"
    return f"frame {frame.index} · {kind}{' key' if p.key_frame else ''} · QP {qp} · {what}{source}"


def _legend(fig: Figure, layout: _Layout, handles: list, labels: list[str]) -> None:
    """Legend centred in the bottom margin, one row when it fits."""
    fig_w, fig_h = layout.size
    ncol = _legend_columns(layout.width, len(labels))
    fig.legend(
        handles,
        labels,
        loc="center",
        bbox_to_anchor=(0.5 * layout.width / fig_w, 0.5 * layout.bottom / fig_h),
        ncol=ncol,
        fontsize=_FONT,
        frameon=False,
        handlelength=1.6,
        columnspacing=1.2,
    )


def _note(ax: Axes, text: str) -> None:
    """A boxed message in the middle of the picture area."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=_FONT + 1,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.3", "alpha": 0.9},
    )


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, format="png")
    log.debug("wrote %s", path)
    return path


def draw_motion_vectors(frame: CodedFrame, path: str | Path, *, stride: int = 1) -> Path:
    """Draw the frame's motion vectors as arrows over the decoded picture.

    Each vector of ``frame.priors.mvs`` goes from its block's centre
    ``(x + w/2, y + h/2)`` to ``centre + (dx, dy)``, the matching point in the
    reference frame, at true length; past and future vectors get their own colour.

    Args:
        frame: the frame and its priors.
        path: PNG file to write (parent folders are created).
        stride: draw every ``stride``-th vector, to thin out dense fields.

    Returns:
        The path written.

    Raises:
        ConfigError: ``stride`` is below 1.
    """
    if stride < 1:
        raise ConfigError(f"stride={stride}: must be 1 or more")
    from matplotlib.lines import Line2D

    mvs = np.asarray(frame.priors.mvs)[::stride]
    layout = _layout(frame, legend_entries=2)
    fig, ax = _figure(frame, layout, _title(frame, f"{len(frame.priors.mvs)} motion vectors"))
    _show_frame(ax, frame, fade=0.25)
    handles, labels = [], []
    for direction, colour, name in ((-1, _PAST_COLOUR, "past"), (1, _FUTURE_COLOUR, "future")):
        rows = mvs[mvs["direction"] == direction] if len(mvs) else mvs
        handles.append(Line2D([], [], color=colour, lw=2, marker=">", markersize=5))
        labels.append(f"{name} ({len(rows)})")
        if len(rows):
            _arrows(ax, rows, colour, layout.zoom)
    _legend(fig, layout, handles, labels)
    if len(frame.priors.mvs) == 0:
        intra = FrameType(frame.priors.frame_type) == FrameType.I
        _note(ax, "no motion vectors (intra frame)" if intra else "no motion vectors")
    return _save(fig, path)


def _arrows(ax: Axes, rows: np.ndarray, colour: str, zoom: int) -> None:
    """Arrows of true length in frame pixels from block centres, outlined in black."""
    cx = rows["x"].astype(np.float32) + rows["w"].astype(np.float32) / 2
    cy = rows["y"].astype(np.float32) + rows["h"].astype(np.float32) / 2
    dx, dy = rows["dx"].astype(np.float32), rows["dy"].astype(np.float32)
    still = (dx == 0) & (dy == 0)
    if still.any():  # zero vectors: a dot on the block centre
        ax.scatter(cx[still], cy[still], s=2.0 + zoom, c=colour, edgecolors="black",
                   linewidths=0.4, zorder=3)
    if (~still).any():
        ax.quiver(
            cx[~still], cy[~still], dx[~still], dy[~still],
            color=colour, angles="xy", scale_units="xy", scale=1, units="dots",
            width=1.2 + 0.15 * zoom, headwidth=3.5, headlength=4, headaxislength=3.5,
            minlength=1, edgecolor="black", linewidth=0.5, zorder=4,
        )


def draw_partition_map(frame: CodedFrame, path: str | Path) -> Path:
    """Draw the block partition as outlines coloured by size class over the faded frame.

    Blocks with a motion vector are outlined in the colour of their class
    (16x16; 16x8 or 8x16; 8x8 and smaller); macroblocks with no vector at all
    (intra, or priors missing) are outlined and lightly filled in the intra colour.

    Args:
        frame: the frame and its priors.
        path: PNG file to write (parent folders are created).

    Returns:
        The path written.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    from codecave.codec.rasterize import INTRA, PARTITION_CLASSES

    layout = _layout(frame, legend_entries=len(PARTITION_CLASSES))
    fig, ax = _figure(frame, layout, _title(frame, "partition"))
    _show_frame(ax, frame, fade=0.55)
    blocks, classes = _blocks_with_class(frame)
    counts = np.bincount(classes, minlength=len(PARTITION_CLASSES))
    line = max(0.7, 0.3 * layout.zoom)  # points
    inset = 0.5 * line * _DPI / 72 / layout.zoom  # frame pixels: neighbours' edges stay apart
    for cls in (INTRA, 0, 1, 2):  # intra first, small blocks last, on top
        chosen = blocks[classes == cls]
        if not len(chosen):
            continue
        x, y, w, h = (chosen[:, i].astype(np.float32) for i in range(4))
        x, y, w, h = x + inset, y + inset, np.maximum(w - 2 * inset, 0.5), np.maximum(h - 2 * inset, 0.5)
        polys = np.stack([np.stack([x, y], 1), np.stack([x + w, y], 1),
                          np.stack([x + w, y + h], 1), np.stack([x, y + h], 1)], axis=1)
        face = (*_rgb(_CLASS_COLOURS[INTRA]), 0.25) if cls == INTRA else "none"
        ax.add_collection(
            PolyCollection(
                polys, facecolors=face, edgecolors=_CLASS_COLOURS[cls], linewidths=line, zorder=3
            )
        )
    handles = [Patch(facecolor="none", edgecolor=c, linewidth=2) for c in _CLASS_COLOURS]
    labels = [f"{name} ({n})" for name, n in zip(PARTITION_CLASSES, counts, strict=True)]
    _legend(fig, layout, handles, labels)
    return _save(fig, path)


def _blocks_with_class(frame: CodedFrame) -> tuple[np.ndarray, np.ndarray]:
    """Distinct blocks ``(N, 4)`` as x, y, w, h, and their partition class ``(N,)``.

    Blocks are the vectors' blocks (a bi-predicted block counted once) plus every
    macroblock that no vector touches, as intra.
    """
    from codecave.codec.rasterize import INTRA, size_class

    mvs = np.asarray(frame.priors.mvs)
    if len(mvs):
        inter = np.stack([mvs["x"], mvs["y"], mvs["w"], mvs["h"]], axis=1).astype(np.int64)
        inter = np.unique(inter, axis=0)
    else:
        inter = np.zeros((0, 4), dtype=np.int64)
    rows, cols = -(-frame.height // MB), -(-frame.width // MB)
    covered = np.zeros((rows, cols), dtype=bool)
    x, y, w, h = inter.T
    r0, r1 = np.clip(y // MB, 0, rows - 1), np.clip((y + h - 1) // MB, 0, rows - 1)
    c0, c1 = np.clip(x // MB, 0, cols - 1), np.clip((x + w - 1) // MB, 0, cols - 1)
    for dr in range(int((r1 - r0).max(initial=0)) + 1):  # blocks span 1 macroblock in H.264
        for dc in range(int((c1 - c0).max(initial=0)) + 1):
            covered[np.minimum(r0 + dr, r1), np.minimum(c0 + dc, c1)] = True
    my, mx = np.nonzero(~covered)
    intra = np.stack([mx * MB, my * MB, np.full_like(mx, MB), np.full_like(my, MB)], axis=1)
    blocks = np.concatenate([inter, intra.astype(np.int64)])
    classes = np.concatenate([size_class(w, h).astype(np.int64), np.full(len(intra), INTRA, np.int64)])
    return blocks, classes


def _rgb(colour: str) -> tuple[float, float, float]:
    value = int(colour.lstrip("#"), 16)
    return ((value >> 16) & 255) / 255, ((value >> 8) & 255) / 255, (value & 255) / 255


def draw_qp_map(frame: CodedFrame, path: str | Path) -> Path:
    """Draw the per-macroblock QP as a heat map over the frame, with a colour bar.

    Each cell of ``frame.priors.qp_map`` covers one 16x16 macroblock; values are
    printed in the cells when they are large enough to read. When the frame has
    no QP map, the picture says so instead.

    Args:
        frame: the frame and its priors.
        path: PNG file to write (parent folders are created).

    Returns:
        The path written.
    """
    qp_map = None if frame.priors.qp_map is None else np.asarray(frame.priors.qp_map, np.float32)
    layout = _layout(frame, right=_COLOURBAR_PX)
    fig, ax = _figure(frame, layout, _title(frame, "QP per macroblock"))
    if qp_map is None or qp_map.ndim != 2 or not np.isfinite(qp_map).any():
        _show_frame(ax, frame, fade=0.6)
        _note(ax, "no QP map: the decoder exported none")
        return _save(fig, path)
    _show_frame(ax, frame, fade=0.3)
    lo, hi = float(np.nanmin(qp_map)), float(np.nanmax(qp_map))
    if hi - lo < 2:  # a flat map still gets a readable, whole-number colour bar
        lo, hi = (lo + hi) / 2 - 1, (lo + hi) / 2 + 1
    rows, cols = qp_map.shape
    image = ax.imshow(
        qp_map,
        extent=(0, cols * MB, rows * MB, 0),
        cmap="magma",
        vmin=lo,
        vmax=hi,
        alpha=0.65,
        interpolation="nearest",
        resample=False,
    )
    ax.set_xlim(0, frame.width)
    ax.set_ylim(frame.height, 0)
    if MB * layout.zoom >= 28 and qp_map.size <= 2000:
        _label_cells(ax, qp_map, lo, hi, layout.zoom)
    fig_w, fig_h = layout.size
    cax = fig.add_axes(
        (
            (layout.width + 12) / fig_w,
            (layout.bottom + 0.1 * layout.height) / fig_h,
            14 / fig_w,
            0.8 * layout.height / fig_h,
        )
    )
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(image, cax=cax, ticks=MaxNLocator(nbins=8, integer=True))
    bar.solids.set_alpha(1.0)
    bar.ax.tick_params(labelsize=_FONT - 1)
    bar.set_label("QP", fontsize=_FONT)
    return _save(fig, path)


def _label_cells(ax: Axes, qp_map: np.ndarray, lo: float, hi: float, zoom: int) -> None:
    """Print each macroblock's QP in its cell, dark on light cells and light on dark."""
    size = min(_FONT, max(6, MB * zoom // 5))
    for (r, c), value in np.ndenumerate(qp_map):
        if not np.isfinite(value) or (c * MB >= ax.get_xlim()[1]) or (r * MB >= ax.get_ylim()[0]):
            continue
        light = (value - lo) / (hi - lo) > 0.6
        ax.text(
            c * MB + MB / 2,
            r * MB + MB / 2,
            f"{value:.0f}",
            ha="center",
            va="center",
            fontsize=size,
            color="black" if light else "white",
            zorder=3,
        )


def save_frame_figures(frame: CodedFrame, directory: str | Path) -> list[Path]:
    """Write the motion-vector, partition and QP pictures of one frame.

    Args:
        frame: the frame and its priors.
        directory: folder for the files (created if missing).

    Returns:
        The paths written: ``{index:05d}_mv.png``, ``{index:05d}_partition.png`` and
        ``{index:05d}_qp.png``, in that order.
    """
    directory = Path(directory)
    stem = f"{frame.index:05d}"
    return [
        draw_motion_vectors(frame, directory / f"{stem}_mv.png"),
        draw_partition_map(frame, directory / f"{stem}_partition.png"),
        draw_qp_map(frame, directory / f"{stem}_qp.png"),
    ]
