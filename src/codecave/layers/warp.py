"""Backward warping with a dense displacement field."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def displaced_grid(flow: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid_sample`` coordinates (``align_corners=True``) of ``p + flow(p)``.

    Args:
        flow: ``(N, 2, H, W)`` displacement (dx, dy) in pixels.
        dtype: dtype of the pixel positions ``p`` (default: the flow's).

    Returns:
        Normalised x and y, each ``(N, H, W)``.
    """
    h, w = flow.shape[-2:]
    dtype = dtype or flow.dtype
    ys = torch.arange(h, dtype=dtype, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=dtype, device=flow.device).view(1, 1, w)
    return (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0, (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0


def flow_warp(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)`` with bilinear interpolation.

    With ``flow = mv_past[t]`` this aligns frame (or features) ``t-1`` to frame ``t``
    (design section 3).

    Args:
        x: ``(N, C, H, W)`` pictures or features.
        flow: ``(N, 2, H, W)`` displacement (dx, dy) in pixels.
        padding_mode: ``grid_sample`` padding for samples outside the picture.

    Returns:
        ``(N, C, H, W)`` warped ``x``.
    """
    gx, gy = displaced_grid(flow, x.dtype)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)
