"""The non-learned transform-coding model of the codec (neural wrapping's rate gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codecave.engine.wrapping import codec_in_the_loop, codec_settings
from codecave.grid import luma, pack
from codecave.models.transform_proxy import RateCalibration, block_motion_prediction, transform_code
from tests.conftest import pan_frames


def _gop(frames: int = 4, side: int = 64, step: tuple[int, int] = (2, 1)) -> torch.Tensor:
    from codecave.codec.convert import rgb_to_planes

    planes = [rgb_to_planes(f) for f in pan_frames(frames, side, side, step=step)]
    y, u, v = (torch.stack([torch.from_numpy(getattr(p, c)).float() / 255 for p in planes]) for c in "yuv")
    return pack(y, u, v).unsqueeze(0)


def test_block_search_finds_a_known_shift() -> None:
    """A picture that is its reference displaced by (3, -2) is predicted exactly away
    from the edges, and a picture equal to its reference by the zero vector."""
    torch.manual_seed(0)
    ref = torch.rand(1, 48, 48)
    cur = torch.roll(ref, shifts=(3, -2), dims=(1, 2))
    pred = block_motion_prediction(cur, ref, block=8, radius=4)
    assert torch.equal(pred[:, 8:-8, 8:-8], cur[:, 8:-8, 8:-8])
    assert torch.equal(block_motion_prediction(ref, ref, 8, 4), ref)
    assert not pred.requires_grad


def test_rate_surrogate_is_differentiable_and_falls_when_the_input_is_smoothed() -> None:
    gop = _gop()
    i_c, _ = codec_in_the_loop(gop, codec_settings("x264", 30, "medium", 4))
    x = gop.clone().requires_grad_(True)
    surrogate = transform_code(x, i_c, 30).surrogate
    surrogate.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    y = luma(gop)
    smooth_y = F.avg_pool2d(y.flatten(0, 1).unsqueeze(1), 3, 1, 1, count_include_pad=False).squeeze(1)
    from codecave.grid import unpack

    _, u, v = unpack(gop)
    smoothed = pack(smooth_y.reshape(y.shape), u, v)
    smoothed_surrogate = transform_code(smoothed, i_c, 30).surrogate
    assert (smoothed_surrogate < surrogate.detach()).all()


def test_rate_surrogate_follows_the_codec_and_its_reconstruction_the_quantiser() -> None:
    """Across QPs and picture contents, the surrogate orders the codec's real bits; the
    model's reconstruction loses quality as the QP rises, as the codec's does."""
    gops = torch.cat([_gop(step=(2, 1)), _gop(step=(0, 0)), _gop(step=(-3, 2))])
    surrogates, bits, psnr_model, psnr_codec = [], [], [], []
    for qp in (22, 30, 38):
        i_c, r_c = codec_in_the_loop(gops, codec_settings("x264", qp, "medium", 4))
        s, rec, _ = transform_code(gops, i_c, qp)
        surrogates.append(s[:, 1:].flatten())  # P pictures (intra ones have their own slope)
        bits.append(r_c[:, 1:].flatten())
        for out, store in ((rec, psnr_model), (i_c, psnr_codec)):
            store.append(float(10 * torch.log10(1 / (luma(out) - luma(gops)).pow(2).mean())))
    s, r = torch.cat(surrogates).numpy(), torch.cat(bits).numpy()
    assert np.corrcoef(s, r)[0, 1] > 0.9
    at_30 = slice(len(s) // 3, 2 * len(s) // 3)  # within one QP too: the content alone
    assert np.corrcoef(s[at_30], r[at_30])[0, 1] > 0.9
    assert psnr_model[0] > psnr_model[1] > psnr_model[2]
    assert abs(psnr_model[1] - psnr_codec[1]) < 3


def test_rate_calibration_recovers_an_affine_map_per_picture_type_and_follows_a_drift() -> None:
    torch.manual_seed(0)
    s = torch.rand(8, 4)
    bits = torch.where(torch.arange(4) == 0, 3.0 * s + 0.1, 0.5 * s - 0.02)
    calibration = RateCalibration(decay=0.5)
    for _ in range(3):
        slopes = calibration.update(s, bits)
    alpha, beta = calibration.fit()
    assert torch.allclose(alpha, torch.tensor([3.0, 0.5], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(beta, torch.tensor([0.1, -0.02], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(slopes, torch.tensor([3.0, 0.5, 0.5, 0.5]), atol=1e-5)
    # the map drifts: the inter slope doubles; a moving average weighs the past by 0.5 per batch
    drifted = torch.where(torch.arange(4) == 0, bits, 1.0 * s - 0.02)
    history = []
    for _ in range(12):
        history.append(float(calibration.update(s, drifted)[1]))
    assert 0.5 < history[0] < 1.0 and history[0] < history[3] and abs(history[-1] - 1.0) < 1e-3
    still = RateCalibration(decay=0.0)  # no memory: this batch alone
    still.update(s, bits)
    assert float(still.update(s, drifted)[1]) == pytest.approx(1.0, abs=1e-6)


def test_distortion_gradient_passes_through_the_coded_coefficients_only() -> None:
    """``coded`` has the reconstruction's values; its gradient is the orthogonal projection
    onto the coded 4x4 DCT coefficients (``<Pg, g> = |Pg|^2``), which keeps less of the
    gradient of the predicted pictures at a coarse quantiser than at a fine one."""
    gop = _gop()
    torch.manual_seed(0)
    upstream = torch.randn_like(gop)
    kept = {}
    for qp in (12, 45):
        i_c, _ = codec_in_the_loop(gop, codec_settings("x264", qp, "medium", 4))
        x = gop.clone().requires_grad_(True)
        coding = transform_code(x, i_c, qp)
        (coding.coded * upstream).sum().backward()
        g = x.grad
        assert float((g * upstream).sum()) == pytest.approx(float((g * g).sum()), rel=1e-4)
        kept[qp] = float(g[:, 1:].pow(2).sum() / upstream[:, 1:].pow(2).sum())
    assert 0 <= kept[45] < kept[12] <= 1


def test_x264_quantiser_settings_and_vector_costs() -> None:
    """Chroma QP by H.264's Table 8-15; a longer vector never costs fewer bits; with a
    Lagrangian the search keeps the zero vector where the SAD gain is below the vector's cost."""
    from codecave.models.transform_proxy import chroma_qp, motion_lambda, vector_bits

    assert [chroma_qp(q) for q in (20, 29, 30, 34, 39, 51)] == [20, 29, 29, 32, 35, 39]
    assert vector_bits(0, 0) == 2 and all(vector_bits(0, d) <= vector_bits(0, d + 1) for d in range(8))
    assert motion_lambda(30) == pytest.approx(8.0)
    torch.manual_seed(0)
    ref = torch.rand(1, 16, 16) * 0.01  # almost flat: a shift saves little SAD
    cur = torch.roll(ref, shifts=(0, 2), dims=(1, 2))
    assert torch.equal(block_motion_prediction(cur, ref, 8, 3, lagrangian=motion_lambda(40)), ref)
    exact = block_motion_prediction(cur, ref, 8, 3)
    assert (exact - cur)[:, :, 2:14].abs().max() < (ref - cur)[:, :, 2:14].abs().max()
