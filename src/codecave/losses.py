"""Training losses."""

from __future__ import annotations

import torch


def charbonnier(x: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss ``mean(sqrt((x - target)^2 + eps^2))``, a smooth L1."""
    return torch.sqrt((x - target).pow(2) + eps * eps).mean()
