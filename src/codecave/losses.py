"""Training losses."""

from __future__ import annotations

import torch


def charbonnier(x: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss ``mean(sqrt((x - target)^2 + eps^2))``, a smooth L1 (in float32)."""
    return elementwise_loss("charbonnier", x, target, eps).mean()


def round_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round ``[0, 1]`` values to the 8-bit grid, with a straight-through gradient.

    The forward value is what an 8-bit frame holds (``round(255 x) / 255`` after
    clamping); the backward pass treats the rounding as the identity, so a loss on
    the rounded output still trains the network.
    """
    q = x.clamp(0, 1).mul(255).round().div(255)
    return x + (q - x).detach()


def elementwise_loss(name: str, x: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The loss ``name`` (``charbonnier``, ``l1`` or ``mse``) at every element, in float32
    (for masked losses; :func:`training_loss` is its mean).

    Raises:
        ValueError: an unknown name.
    """
    d = x.float() - target.float()
    if name == "charbonnier":
        return torch.sqrt(d * d + eps * eps)
    if name == "l1":
        return d.abs()
    if name == "mse":
        return d * d
    raise ValueError(f"unknown loss {name!r}; choose charbonnier, l1 or mse")


def training_loss(name: str, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss ``name`` (``charbonnier``, ``l1`` or ``mse``), computed in float32.

    Raises:
        ValueError: an unknown name.
    """
    return elementwise_loss(name, x, target).mean()
