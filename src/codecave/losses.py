"""Training losses."""

from __future__ import annotations

import torch


def charbonnier(x: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss ``mean(sqrt((x - target)^2 + eps^2))``, a smooth L1."""
    return torch.sqrt((x - target).pow(2) + eps * eps).mean()


def round_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round ``[0, 1]`` values to the 8-bit grid, with a straight-through gradient.

    The forward value is what an 8-bit frame holds (``round(255 x) / 255`` after
    clamping); the backward pass treats the rounding as the identity, so a loss on
    the rounded output still trains the network.
    """
    q = x.clamp(0, 1).mul(255).round().div(255)
    return x + (q - x).detach()
