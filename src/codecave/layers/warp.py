"""Backward warping with a dense displacement field."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    n, _, h, w = x.shape
    ys = torch.arange(h, dtype=x.dtype, device=x.device).view(1, h, 1)
    xs = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)
