"""Expert mixing, dynamic transfer and warping."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codecave.layers.dynamic import ExpertConv2d, FrameParameterGenerator, SequenceWeightGenerator, frame_code
from codecave.layers.warp import flow_warp


def test_mixed_expert_conv_equals_weighted_sum_of_expert_outputs() -> None:
    torch.manual_seed(0)
    layer = ExpertConv2d(4, 5, 3, n_experts=6)
    torch.nn.init.normal_(layer.bias)
    alpha = torch.softmax(torch.randn(2, 6), dim=-1)
    x = torch.randn(2, 3, 4, 12, 10)
    mixed = layer(x, layer.mix(alpha))
    for b in range(2):
        outs = [F.conv2d(x[b], layer.weight[n], layer.bias[n], padding=1) for n in range(6)]
        expected = sum(alpha[b, n] * outs[n] for n in range(6))
        torch.testing.assert_close(mixed[b], expected, atol=1e-5, rtol=1e-5)


def test_frame_scale_equals_scaling_the_mixed_weights() -> None:
    torch.manual_seed(1)
    layer = ExpertConv2d(3, 4, 3, n_experts=2)
    alpha = torch.tensor([[0.3, 0.7]])
    weight, bias = layer.mix(alpha)
    scale = torch.rand(1, 2, 4) * 2
    x = torch.randn(1, 2, 3, 8, 8)
    y = layer(x, (weight, bias), scale)
    for t in range(2):
        s = scale[0, t]
        expected = F.conv2d(x[0, t : t + 1], weight[0] * s.view(4, 1, 1, 1), bias[0] * s, padding=1)
        torch.testing.assert_close(y[0, t : t + 1], expected, atol=1e-5, rtol=1e-5)


def test_generators_give_distributions_and_bounded_scales() -> None:
    alpha = SequenceWeightGenerator(6)(torch.tensor([0.0, 25.0, 51.0]))
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    code = frame_code(torch.tensor([[30.0, float("nan")]]), torch.tensor([[1, 2]]))
    torch.testing.assert_close(code[0], torch.tensor([[30 / 51, 1, 0, 0, 0], [0, 0, 0, 0, 1.0]]))
    scale = FrameParameterGenerator(7)(code)
    assert scale.shape == (1, 2, 7) and bool(((scale > 0) & (scale < 2)).all())


def test_warp_with_known_integer_shift() -> None:
    torch.manual_seed(2)
    x = torch.rand(1, 3, 20, 24)
    flow = torch.zeros(1, 2, 20, 24)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    y = flow_warp(x, flow)
    # y(p) = x(p + (3, -2)): compare where the source is inside the picture.
    torch.testing.assert_close(y[..., 2:, :-3], x[..., :-2, 3:])


def test_warp_half_pixel_is_bilinear_average() -> None:
    x = torch.arange(10.0).view(1, 1, 1, 10).repeat(1, 1, 4, 1)
    flow = torch.zeros(1, 2, 4, 10)
    flow[:, 0] = 0.5
    y = flow_warp(x, flow)
    torch.testing.assert_close(y[0, 0, :, :-1], x[0, 0, :, :-1] + 0.5)
