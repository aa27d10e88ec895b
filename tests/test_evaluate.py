"""Evaluation numbers match a hand computation; reports are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.data.prepare import load_clip
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.errors import DatasetError
from codecave.evaluate import METRIC_YUV, evaluate, write_report
from codecave.grid import unpack_planes
from codecave.metrics.quality import psnr_y, ssim_y
from codecave.models import create_model


def hand_psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """BT.601 Y (MATLAB rgb2ycbcr) PSNR of two uint8 RGB frames, written out by hand."""
    def y(img: np.ndarray) -> np.ndarray:
        rgb = img.astype(np.float64) / 255
        return 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    mse = np.mean((y(a) - y(b)) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_psnr_and_ssim_basics() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert torch.isinf(psnr_y(x, x)).all()
    torch.testing.assert_close(ssim_y(x, x), torch.ones(2, dtype=torch.float64))
    slightly = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    very = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim_y(very, x) < ssim_y(slightly, x)).all() and (ssim_y(slightly, x) < 1).all()


def test_identity_model_scores_equal_hand_computed_psnr(tiny_dataset: Path, tmp_path: Path) -> None:
    # An untrained PnP-VCVE has zero-initialised output layers: it returns its input.
    enhancer = Enhancer(create_model("pnp_vcve", weights=None, variant="small"), EnhanceOptions(device="cpu"))
    report = evaluate(enhancer, tiny_dataset, variants=["crf35"], model_info={"name": "identity"})
    assert [s.clip for s in report.scores] == ["pan0", "pan1"]
    for score in report.scores:
        clip = load_clip(tiny_dataset, score.clip, "crf35")
        expected = [hand_psnr_y(d, g) for d, g in zip(clip.decoded, clip.gt)]
        np.testing.assert_allclose(score.psnr_in, expected, rtol=1e-6)
        np.testing.assert_allclose(score.psnr_out, expected, rtol=1e-6)
        assert score.summary()["delta_psnr"] == pytest.approx(0.0)
        assert len(score.frame_types) == 8 and score.frame_types[0] == "I"
    mean = report.by_variant()["crf35"]
    assert mean["psnr_in"] == pytest.approx(np.mean([np.mean(s.psnr_in) for s in report.scores]))
    paths = write_report(report, tmp_path / "eval")
    data = json.loads(paths["json"].read_text())
    assert data["mean"]["crf35"]["delta_psnr"] == pytest.approx(0.0)
    assert "| **mean** | crf35" in paths["markdown"].read_text()
    assert paths["plot"].stat().st_size > 1000


def test_missing_rate_point_is_named(tiny_dataset: Path) -> None:
    enhancer = Enhancer(create_model("pnp_vcve", weights=None, variant="small"), EnhanceOptions(device="cpu"))
    with pytest.raises(DatasetError, match="crf45"):
        evaluate(enhancer, tiny_dataset, variants=["crf45"])


def hand_psnr_plane(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_yuv_dataset_is_scored_on_the_y_plane(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    """A YUV model on a YUV dataset: PSNR-Y is that of the Y plane of the file, PSNR-YUV is
    (6 Y + U + V) / 8, and the report says which Y it used."""
    enhancer = Enhancer(create_model("pnp_vcve", weights=None, variant="fast"), EnhanceOptions(device="cpu"))
    report = evaluate(enhancer, tiny_yuv_dataset, variants=["crf35"], model_info={"name": "identity"})
    assert report.metric == METRIC_YUV
    for score in report.scores:
        clip = load_clip(tiny_yuv_dataset, score.clip, "crf35")
        dec = [unpack_planes(d) for d in clip.decoded]
        gt = [unpack_planes(g) for g in clip.gt]
        expected_y = [hand_psnr_plane(d.y, g.y) for d, g in zip(dec, gt)]
        expected_yuv = [(6 * y + hand_psnr_plane(d.u, g.u) + hand_psnr_plane(d.v, g.v)) / 8
                        for y, d, g in zip(expected_y, dec, gt)]
        np.testing.assert_allclose(score.psnr_in, expected_y, rtol=1e-9)
        np.testing.assert_allclose(score.psnr_out, expected_y, rtol=1e-9)  # identity: no change at all
        np.testing.assert_allclose(score.psnr_yuv_in, expected_yuv, rtol=1e-9)
    paths = write_report(report, tmp_path / "eval")
    text = paths["markdown"].read_text()
    assert "Y plane of the YUV 4:2:0 file" in text and "ΔPSNR-YUV" in text
    assert paths["example_crf35"].stat().st_size > 10_000  # the comparison picture of the median clip
    assert all(s.frame_qp and np.isfinite(s.frame_qp).all() for s in report.scores)


def test_rgb_model_on_a_yuv_dataset_and_yuv_model_on_an_rgb_dataset(tiny_yuv_dataset: Path,
                                                                      tiny_dataset: Path) -> None:
    rgb_identity = Enhancer(create_model("pnp_vcve", weights=None, variant="small"), EnhanceOptions(device="cpu"))
    report = evaluate(rgb_identity, tiny_yuv_dataset, variants=["crf35"])
    # through RGB and back, as `codecave enhance` writes an RGB model's output: not free
    deltas = [s.summary()["delta_psnr"] for s in report.scores]
    assert all(np.isfinite(d) and d < 0.05 for d in deltas) and any(d != 0 for d in deltas)
    yuv = Enhancer(create_model("pnp_vcve", weights=None, variant="fast"), EnhanceOptions(device="cpu"))
    with pytest.raises(DatasetError, match="--domain yuv420"):
        evaluate(yuv, tiny_dataset, variants=["crf35"])


def test_the_default_scores_an_rgb_dataset_with_its_fallback_and_says_so(tiny_dataset: Path) -> None:
    default = Enhancer(None, EnhanceOptions(device="cpu"))      # variant left to the default
    assert default.model.variant == "fast" and default.fallback() is default.fallback()
    assert default.fallback().options is default.options
    report = evaluate(default, tiny_dataset, variants=["crf35"], max_frames=2,
                      model_info={"name": "pnp_vcve", "variant": "fast"})
    assert report.model["variant"] == "small" and report.model["fallback_from"] == "fast"
    assert Enhancer("pnp_vcve").model.fallback_variant == "small"  # named, variant still the default
