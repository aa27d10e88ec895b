"""Pictures of what enhancement changed: frames, error maps on one scale, and a zoomed crop.

:func:`comparison_figure` draws, for one frame, the original, the compressed input and
the enhanced output; below them the absolute Y error of input and output against the
original **on the same colour scale** (so a small gain looks small), and the change of
error (blue where the output is closer to the original, red where it is further);
last, the crop where the output gained most, zoomed, labelled with its own ΔPSNR-Y
beside the whole frame's (it is the best place, not a typical one).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _psnr(err2: float, peak: float) -> float:
    return float(10 * np.log10(peak * peak / max(err2, 1e-12)))


def largest_gain_crop(reference: np.ndarray, compressed: np.ndarray, enhanced: np.ndarray,
                      side: int) -> tuple[int, int]:
    """Top-left corner of the ``side x side`` window (stride ``side / 2``) where the
    squared Y error dropped most from ``compressed`` to ``enhanced``.

    Args:
        reference, compressed, enhanced: ``(H, W)`` Y planes (any numeric dtype).
        side: window side in pixels (at most the picture's smaller side).
    """
    ref = reference.astype(np.float64)
    drop = (compressed.astype(np.float64) - ref) ** 2 - (enhanced.astype(np.float64) - ref) ** 2
    h, w = drop.shape
    side = min(side, h, w)
    step = max(1, side // 2)
    table = np.pad(drop.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, corner = -np.inf, (0, 0)
    for y in [*range(0, h - side + 1, step), h - side]:
        for x in [*range(0, w - side + 1, step), w - side]:
            total = table[y + side, x + side] - table[y, x + side] - table[y + side, x] + table[y, x]
            if total > best:
                best, corner = total, (y, x)
    return corner


def comparison_figure(path: str | os.PathLike[str], *, reference_y: np.ndarray, compressed_y: np.ndarray,
                      enhanced_y: np.ndarray, reference_rgb: np.ndarray, compressed_rgb: np.ndarray,
                      enhanced_rgb: np.ndarray, peak: float = 255.0, title: str = "") -> Path:
    """Save the 3x3 comparison of one frame (see the module docstring).

    Args:
        path: PNG to write.
        reference_y, compressed_y, enhanced_y: ``(H, W)`` Y planes, codes of ``peak``.
        reference_rgb, compressed_rgb, enhanced_rgb: ``(H, W, 3)`` uint8 for display only
            (scores are computed on the Y planes).
        peak: largest code (255 for 8 bits).
        title: figure title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = reference_y.astype(np.float64)
    e_in, e_out = np.abs(compressed_y - ref), np.abs(enhanced_y - ref)
    scale = max(1.0, float(np.percentile(e_in, 99.5)))  # one scale for both maps and the change
    frame_in, frame_out = _psnr(float((e_in ** 2).mean()), peak), _psnr(float((e_out ** 2).mean()), peak)
    h, w = ref.shape
    side = max(16, min(h, w) // 4)
    y0, x0 = largest_gain_crop(ref, compressed_y, enhanced_y, side)
    crop = (slice(y0, y0 + side), slice(x0, x0 + side))
    local_in = _psnr(float((e_in[crop] ** 2).mean()), peak)
    local_out = _psnr(float((e_out[crop] ** 2).mean()), peak)

    fig, axes = plt.subplots(3, 3, figsize=(13, 12))
    frames = [("original", reference_rgb, ""), ("compressed (input)", compressed_rgb, f": {frame_in:.2f} dB"),
              ("enhanced (output)", enhanced_rgb, f": {frame_out:.2f} dB ({frame_out - frame_in:+.2f})")]
    for ax, (name, image, note) in zip(axes[0], frames):
        ax.imshow(image)
        ax.add_patch(plt.Rectangle((x0, y0), side, side, fill=False, color="yellow", lw=1.5))
        ax.set_title(f"{name}{note}", fontsize=10)
    amplified = f"|Y error|, 0 to {scale:.0f} codes (x{peak / scale:.0f})"
    im = axes[1, 0].imshow(e_in, cmap="inferno", vmin=0, vmax=scale)
    axes[1, 0].set_title(f"input error: {amplified}", fontsize=9)
    axes[1, 1].imshow(e_out, cmap="inferno", vmin=0, vmax=scale)
    axes[1, 1].set_title("output error, same scale", fontsize=9)
    fig.colorbar(im, ax=axes[1, :2], fraction=0.02, pad=0.01, label="|error| (codes)")
    change = axes[1, 2].imshow(e_in - e_out, cmap="RdBu", vmin=-scale, vmax=scale)
    axes[1, 2].set_title("error removed (blue) / added (red), same scale", fontsize=9)
    fig.colorbar(change, ax=axes[1, 2], fraction=0.04, pad=0.01)
    crops = [("original", reference_rgb, ""), ("compressed", compressed_rgb, f": {local_in:.2f} dB"),
             ("enhanced", enhanced_rgb, f": {local_out:.2f} dB ({local_out - local_in:+.2f})")]
    for ax, (name, image, note) in zip(axes[2], crops):
        ax.imshow(image[crop], interpolation="nearest")
        ax.set_title(f"{name}, largest-gain crop{note}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle((title + "\n" if title else "") + f"ΔPSNR-Y {frame_out - frame_in:+.3f} dB over the frame, "
                 f"{local_out - local_in:+.3f} dB in the yellow crop (the frame's largest gain, not a typical place)",
                 fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
