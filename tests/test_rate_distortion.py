"""Rate-distortion evaluation, BD-rate, VMAF and `codecave wrap encode` (issue: neural wrapping)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from codecave.cli.main import main
from codecave.codec.convert import rgb_to_planes
from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video
from codecave.engine.checkpoint import save_weights
from codecave.metrics.bdrate import bd_rate
from codecave.metrics.vmaf import vmaf_y
from codecave.models.neural_wrapper import NeuralWrapper, WrapperConfig
from codecave.rate_distortion import rate_distortion
from tests.conftest import pan_frames

RATES = [100.0, 180.0, 330.0, 600.0]
PSNR = [30.0, 33.0, 36.0, 39.0]


def test_bd_rate_of_a_curve_against_itself_is_zero_and_a_shift_is_found() -> None:
    assert bd_rate(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, [0.9 * r for r in RATES], PSNR) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(RATES, PSNR, [1.25 * r for r in RATES], PSNR) == pytest.approx(25.0, abs=1e-6)
    assert math.isnan(bd_rate(RATES, PSNR, RATES, [p + 20 for p in PSNR]))  # no overlap
    with pytest.raises(ValueError, match="4 rate points"):
        bd_rate(RATES[:3], PSNR[:3], RATES[:3], PSNR[:3])


@pytest.fixture(scope="module")
def pan_planes() -> list:
    return [rgb_to_planes(f) for f in pan_frames(6, 176, 192)]


def test_vmaf_is_100_for_identical_frames_and_falls_with_crf(pan_planes: list, tmp_path: Path) -> None:
    ref = np.stack([p.y for p in pan_planes])
    same = vmaf_y(ref, ref)
    assert np.allclose(same[1:], 100.0)  # clipped at 100
    assert 97.0 < same[0] < 100.0  # the first frame has no motion feature (0), which the model scores lower
    scores = []
    for crf in (18, 30, 42):
        path = tmp_path / f"crf{crf}.264"
        encode_frames(pan_planes, path, EncodeSettings(crf=crf, threads=1))
        with open_video(path, priors=False) as reader:
            scores.append(float(vmaf_y(np.stack([f.planes.y for f in reader]), ref).mean()))
    assert scores[0] > scores[1] > scores[2]


def _wrapper(seed: int = 0) -> NeuralWrapper:
    torch.manual_seed(seed)
    model = NeuralWrapper(WrapperConfig(width=8, pre_blocks=1, post_blocks=1))
    for p in [*model.pre.tail.parameters(), *model.post.tail.parameters()]:
        torch.nn.init.normal_(p, std=3e-3)
    return model.eval()


def test_rate_distortion_of_the_identity_wrapper_equals_the_plain_codec(pan_planes: list) -> None:
    identity = NeuralWrapper(WrapperConfig(width=8, pre_blocks=1, post_blocks=1)).eval()
    report = rate_distortion({"pan": pan_planes}, EncodeSettings(threads=1), [23, 28, 33, 38], model=identity,
                             device="cpu")
    assert report.arms == ["wrapped", "pre_only", "post_only"]
    curves = report.curves["pan"]
    assert [p.bpp for p in curves["wrapped"]] == [p.bpp for p in curves["plain"]]
    assert all(b.bpp < a.bpp for a, b in zip(curves["plain"], curves["plain"][1:]))  # rate falls as CRF rises
    bd = report.bd_rates()
    assert all(bd[arm][m]["mean"] == pytest.approx(0.0, abs=1e-9) for arm in report.arms for m in bd[arm])
    assert "| wrapped |" in report.to_markdown()


def test_wrap_encode_writes_a_standard_file_and_evaluate_rd_scores_it(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    for i, f in enumerate(pan_frames(5, 64, 96)):
        Image.fromarray(f).save(src / f"{i:03d}.png")
    model = _wrapper()
    weights = tmp_path / "wrapper.safetensors"
    save_weights(model, weights, {"model": "neural_wrapper", "variant": "small", "config": model.describe()})
    out = tmp_path / "wrapped.mp4"
    assert main(["wrap", "encode", str(src), str(out), "--crf", "30", "--weights", str(weights), "--no-progress"]) == 0
    with av.open(str(out)) as container:  # any player's decoder reads it
        frames = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (96, 96)
    assert main(["wrap", "encode", str(src), str(out), "--weights", str(weights), "--no-progress"]) == 2  # exists
    restored = tmp_path / "restored.mkv"  # the post-processor through the enhancement engine
    assert main(["enhance", str(out), str(restored), "--model", "neural_wrapper", "--weights", str(weights)]) == 0
    with open_video(restored, priors=False) as reader:
        assert sum(1 for _ in reader) == 5
    rd = tmp_path / "rd"
    assert main(["evaluate", str(tiny_yuv_dataset), "--rd", "--model", "neural_wrapper", "--weights", str(weights),
                 "--frames", "4", "--out", str(rd)]) == 0
    report = json.loads((rd / "rd.json").read_text())
    assert set(report["bd_rate"]) == {"wrapped", "pre_only", "post_only"}
    assert report["points"] == [23.0, 28.0, 33.0, 38.0] and (rd / "rd.png").stat().st_size > 0
    assert all(math.isfinite(v["mean"]) for v in report["bd_rate"]["wrapped"].values() if v["mean"] == v["mean"])


def test_evaluate_rd_refuses_options_it_does_not_take(tiny_yuv_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tiny_yuv_dataset), "--rd", "--model", "none", "--crf", "23,28,33,38"]) == 2
    assert "--crf: not taken with --rd" in capsys.readouterr().err
