"""Neighbourhood attention (pure PyTorch): equal to a naive loop, differentiable, masks hold."""

from __future__ import annotations

import math

import pytest
import torch

from codecave.layers.attention import neighbourhood_attention, window_offsets


def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: int, bias: torch.Tensor | None,
          mask_centre: bool) -> torch.Tensor:
    """Position by position: softmax over the window positions inside the picture."""
    n, heads, d, h, w = q.shape
    out = torch.zeros_like(v)
    for b in range(n):
        for a in range(heads):
            for y in range(h):
                for x in range(w):
                    logits, values = [], []
                    for j, (dx, dy) in enumerate(window_offsets(kernel).int().tolist()):
                        yy, xx = y + dy, x + dx
                        if not (0 <= yy < h and 0 <= xx < w) or (mask_centre and dx == 0 and dy == 0):
                            continue
                        logit = (q[b, a, :, y, x] * k[b, a, :, yy, xx]).sum() / math.sqrt(d)
                        logits.append(logit + (bias[a, j] if bias is not None else 0))
                        values.append(v[b, a, :, yy, xx])
                    weights = torch.softmax(torch.stack(logits), dim=0)
                    out[b, a, :, y, x] = (weights[:, None] * torch.stack(values)).sum(0)
    return out


@pytest.mark.parametrize("kernel,mask_centre", [(3, False), (3, True), (5, False)])
def test_equals_a_naive_loop_including_the_borders(kernel: int, mask_centre: bool) -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 2, 3, 5, 6), torch.randn(2, 2, 3, 5, 6)
    v, bias = torch.randn(2, 2, 4, 5, 6), torch.randn(2, kernel * kernel)
    out, weights = neighbourhood_attention(q, k, v, kernel, bias=bias, mask_centre=mask_centre)
    torch.testing.assert_close(out, naive(q, k, v, kernel, bias, mask_centre), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(2), torch.ones(2, 2, 5, 6))


def test_gradients_pass_gradcheck_in_double_precision() -> None:
    torch.manual_seed(0)
    args = [torch.randn(1, 2, 2, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    bias = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: neighbourhood_attention(q, k, v, 3, bias=b, mask_centre=True)[0], (*args, bias))


def test_the_centre_mask_holds_and_a_one_hot_window_copies_that_neighbour() -> None:
    torch.manual_seed(0)
    q, k, v = torch.zeros(1, 1, 2, 6, 6), torch.zeros(1, 1, 2, 6, 6), torch.randn(1, 1, 2, 6, 6)
    bias = torch.zeros(1, 9)
    bias[0, 4] = 1e4  # everything on the centre...
    _, weights = neighbourhood_attention(q, k, v, 3, bias=bias, mask_centre=True)
    assert weights[:, :, 4].abs().max() == 0  # ...which the mask refuses
    bias = torch.zeros(1, 9)
    bias[0, 5] = 1e4  # offset (dx, dy) = (1, 0): the right neighbour
    out, _ = neighbourhood_attention(q, k, v, 3, bias=bias)
    torch.testing.assert_close(out[..., :, :-1], v[..., :, 1:])


def test_the_centre_mask_can_differ_per_item() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 1, 2, 4, 4), torch.randn(2, 1, 2, 4, 4), torch.randn(2, 1, 2, 4, 4)
    _, weights = neighbourhood_attention(q, k, v, 3, mask_centre=torch.tensor([True, False]))
    assert weights[0, :, 4].abs().max() == 0 and weights[1, :, 4].min() > 0
    out, _ = neighbourhood_attention(q, k, v, 3, mask_centre=torch.tensor([False, True]))
    torch.testing.assert_close(out[0], neighbourhood_attention(q[:1], k[:1], v[:1], 3)[0][0])


def test_bad_arguments_are_named() -> None:
    x = torch.zeros(1, 1, 2, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        neighbourhood_attention(x, x, x, 2)
    with pytest.raises(ValueError, match="attends to nothing"):
        neighbourhood_attention(x, x, x, 1, mask_centre=True)
