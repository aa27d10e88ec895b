"""Shifted-DCT shrinkage (codecave.layers.dct): spp's method with QP-set thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from codecave.layers.dct import ShiftedDCTShrinkage, dct_basis, qstep


def test_basis_is_orthonormal_and_qstep_follows_h264() -> None:
    b = dct_basis().reshape(64, 64).double()
    torch.testing.assert_close(b @ b.T, torch.eye(64, dtype=torch.float64), atol=1e-6, rtol=0)
    # H.264's table: 0.625 at QP 0, about 1 at QP 4, doubling every 6 QP (16 at QP 28)
    torch.testing.assert_close(qstep(torch.tensor([0.0, 4.0, 6.0, 12.0, 28.0])),
                               torch.tensor([0.625, 1.0, 1.25, 2.5, 16.0]), rtol=0.01, atol=0)


def test_inverse_equals_the_transposed_convolution_and_no_grad_path_the_graded_one() -> None:
    g = torch.Generator().manual_seed(4)
    shrink = ShiftedDCTShrinkage()
    coeff = torch.randn(2, 64, 9, 13, generator=g, dtype=torch.float64)
    expected = torch.nn.functional.conv_transpose2d(coeff, dct_basis().double(), stride=2)
    torch.testing.assert_close(shrink._inverse(coeff), expected, atol=1e-12, rtol=0)
    x = 0.5 + torch.randn(3, 1, 20, 27, generator=g) * 4 / 255
    qp = torch.tensor([22.0, 37.0, float("nan")])
    with torch.no_grad():
        fast = shrink(x, qp)
    torch.testing.assert_close(shrink(x, qp).detach(), fast, atol=1e-7, rtol=0)


def test_unknown_qp_returns_the_picture_and_a_known_one_changes_it() -> None:
    g = torch.Generator().manual_seed(0)
    x = 0.5 + torch.randn(2, 1, 21, 30, generator=g) * 3 / 255  # odd sides: padded and cropped back
    shrink = ShiftedDCTShrinkage()
    out = shrink(x, torch.tensor([float("nan"), 30.0]))
    assert out.shape == x.shape
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
    assert (out[1] - x[1]).abs().mean() > 1e-3


def test_pictures_go_through_in_groups_with_the_same_result(monkeypatch) -> None:
    from codecave.layers import dct

    g = torch.Generator().manual_seed(3)
    x = 0.5 + torch.randn(5, 1, 16, 24, generator=g) * 3 / 255
    qp = torch.tensor([20.0, 30.0, float("nan"), 35.0, 25.0])
    shrink = ShiftedDCTShrinkage()
    whole = shrink(x, qp)
    monkeypatch.setattr(dct, "CHUNK_PIXELS", 2 * 16 * 24)  # two pictures per group
    torch.testing.assert_close(shrink(x, qp), whole, atol=0, rtol=0)


def test_removes_small_noise_and_keeps_an_edge() -> None:
    """A step edge plus noise of about a quantiser step: the output is closer to the clean
    picture than the input, and the edge's height survives."""
    g = torch.Generator().manual_seed(1)
    clean = torch.zeros(1, 1, 48, 48)
    clean[..., 24:] = 0.6
    noisy = clean + torch.randn(clean.shape, generator=g) * 2.0 / 255
    out = ShiftedDCTShrinkage()(noisy, torch.tensor([30.0]))
    assert ((out - clean) ** 2).mean() < 0.5 * ((noisy - clean) ** 2).mean()
    assert out[..., 8:40, 30:40].mean() - out[..., 8:40, 8:18].mean() > 0.59


def test_thresholds_learn_and_grow_with_qp() -> None:
    shrink = ShiftedDCTShrinkage(init_scale=1.0, init_exponent=0.5)
    t = shrink.thresholds(torch.tensor([22.0, 34.0]))[:, :, 0, 0]
    assert t[:, 0].abs().max() == 0  # DC untouched
    torch.testing.assert_close(t[1, 1] / t[0, 1], torch.tensor(math.sqrt(4.0)))  # 12 QP: step x4, threshold x2
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    shrink(x, torch.tensor([32.0])).sum().backward()
    assert shrink.log_scale.grad.abs().sum() > 0 and shrink.exponent.grad.abs() > 0


@pytest.mark.parametrize("size", [(16, 24), (37, 61), (9, 9), (40, 18)])
def test_strips_of_rows_outside_training_give_the_whole_picture_result(monkeypatch, size) -> None:
    """Outside training the plane goes through in strips of rows (each with the rows of the
    blocks that reach into it); the result is that of the whole picture, sample for sample,
    for even and odd sides and strips down to the smallest."""
    from codecave.layers import dct

    g = torch.Generator().manual_seed(5)
    x = 0.5 + torch.randn(2, 1, *size, generator=g) * 4 / 255
    qp = torch.tensor([24.0, 38.0])
    shrink = ShiftedDCTShrinkage()
    with torch.no_grad():
        shrink.log_scale.add_(torch.randn(64, generator=g) * 0.3)
    whole = shrink(x, qp).detach()  # gradients on: one pass over the padded picture
    for strip in (1, 2 * 40 * 26):  # 16-row strips; a few strips
        monkeypatch.setattr(dct, "STRIP_PIXELS", strip)
        with torch.no_grad():
            torch.testing.assert_close(shrink(x, qp), whole, atol=1e-6, rtol=0)
