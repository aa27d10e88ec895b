"""Neighbourhood attention in pure PyTorch (forward and backward on CPU).

Each query position ``i`` attends to the ``k x k`` positions around ``i`` in a key/value
map (Hassani et al., "Neighborhood Attention Transformer", CVPR 2023), here written as a
sum over the ``k * k`` shifts of a zero-padded key/value map (the "pad and shift" form of
``../shared/papers/SPECS.md`` 0.2: about 25 % faster than ``F.unfold`` on CPU, and it
never holds ``k * k`` copies of the map). Window positions that fall outside the picture
are masked (they get no weight), so a border position attends to fewer positions, unlike
NATTEN, which shifts the window inside the picture and keeps ``k * k`` of them.

``natten`` has no CPU backward; CRDS's mutual neighbourhood attention
(:mod:`codecave.models.crds`) is built on this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_offsets(kernel: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(kernel * kernel, 2)`` offsets ``(dx, dy)`` of the window positions from its centre,
    row-major (the order of the attention weights' axis)."""
    r = kernel // 2
    d = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten()], dim=1)


def neighbourhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: int,
                            bias: torch.Tensor | None = None, mask_centre: bool | torch.Tensor = False,
                            scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of every position over the ``kernel x kernel`` window around it.

    Args:
        q: ``(N, heads, d, H, W)`` queries.
        k: ``(N, heads, d, H, W)`` keys, already aligned to the queries (window centre at the
            query's own position: warp them by the motion first).
        v: ``(N, heads, e, H, W)`` values, aligned like ``k``.
        kernel: odd window side.
        bias: ``(heads, kernel * kernel)`` learnable relative-position bias added to the logits, or None.
        mask_centre: give the window centre no weight (intra prediction must not see the
            position it predicts; SPECS 1.6 f): for all, or per item (an ``(N,)`` bool tensor).
        scale: logit scale; default ``1 / sqrt(d)``.

    Returns:
        ``(out (N, heads, e, H, W), weights (N, heads, kernel * kernel, H, W))``; the
        weights sum to 1 over the window axis (row-major offsets, :func:`window_offsets`).

    Raises:
        ValueError: an even kernel, a kernel of 1 with the centre masked, or shapes that differ.
    """
    if kernel % 2 == 0 or kernel < 1:
        raise ValueError(f"neighbourhood attention needs an odd kernel; got {kernel}")
    masked = torch.as_tensor(mask_centre, device=q.device).expand(q.shape[0])
    if kernel == 1 and bool(masked.any()):
        raise ValueError("a 1x1 window with its centre masked attends to nothing")
    if q.shape != k.shape or k.shape[:2] != v.shape[:2] or k.shape[-2:] != v.shape[-2:]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit")
    n, heads, d, h, w = q.shape
    r = kernel // 2
    scale = d ** -0.5 if scale is None else scale
    kp = F.pad(k.flatten(1, 2), (r, r, r, r)).unflatten(1, (heads, d))
    vp = F.pad(v.flatten(1, 2), (r, r, r, r)).unflatten(1, (heads, v.shape[2]))
    inside = F.pad(q.new_ones(1, 1, h, w), (r, r, r, r))
    logits = []
    for j in range(kernel * kernel):
        dy, dx = divmod(j, kernel)
        logit = (q * kp[..., dy:dy + h, dx:dx + w]).sum(dim=2) * scale  # (N, heads, H, W)
        if bias is not None:
            logit = logit + bias[:, j].view(1, heads, 1, 1).to(logit.dtype)
        valid = inside[:, 0, dy:dy + h, dx:dx + w] > 0
        valid = valid.expand(n, h, w)
        if j == (kernel * kernel) // 2:
            valid = valid & ~masked.view(n, 1, 1)
        logits.append(logit.masked_fill(~valid[:, None], float("-inf")))
    weights = torch.softmax(torch.stack(logits, dim=2), dim=2)
    out = torch.zeros_like(v)
    for j in range(kernel * kernel):
        dy, dx = divmod(j, kernel)
        out = out + weights[:, :, j:j + 1] * vp[..., dy:dy + h, dx:dx + w]
    return out, weights


__all__ = ["neighbourhood_attention", "window_offsets"]
