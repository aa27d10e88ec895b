"""Super-resolution data: 4x windows, ranking pairs, and SR and enhancement sets that cannot
be mixed by mistake; CAVSR's two stages on the one engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.data.dataset import PreparedWindows, WindowSpec, crop_sample
from codecave.data.prepare import load_clip, load_manifest
from codecave.data.ranking import CRF_PAIR, TYPE_PAIR, RankingPairs
from codecave.engine.config import parse_config
from codecave.engine.trainer import train
from codecave.errors import DatasetError

SPEC = WindowSpec(frames=3, crop=16, compressed=("crf15", "crf35"), lossless="crf0", lossless_prob=0.5,
                  qp_dropout=0.0)


def test_sr_windows_pair_a_low_resolution_crop_with_its_4x_ground_truth(tiny_sr_dataset: Path) -> None:
    clip = load_clip(tiny_sr_dataset, "pan0", "crf15")
    assert clip.scale == 4 and clip.decoded.shape[1:3] == (32, 48) and clip.gt.shape[1:3] == (128, 192)
    sample = crop_sample(clip, 2, 3, 16, 32, 16)
    assert sample["frames"].shape == (3, 3, 16, 16) and sample["gt"].shape == (3, 3, 64, 64)
    assert torch.equal(sample["gt"][0], torch.from_numpy(np.array(clip.gt[2, 64:128, 128:192])).permute(2, 0, 1) / 255)
    assert sample["mv_past"].shape == (3, 2, 16, 16)
    windows = PreparedWindows(tiny_sr_dataset, SPEC, length=4, scale=4)
    item = windows[0]
    assert item["gt"].shape[-1] == 4 * item["frames"].shape[-1]


def test_sr_and_enhancement_sets_cannot_be_mixed(tiny_sr_dataset: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"4x super-resolution set.*--scale 1"):
        PreparedWindows(tiny_sr_dataset, SPEC, length=1)  # an enhancement model's windows
    with pytest.raises(DatasetError, match=r"enhancement \(scale 1\) set.*--scale 4"):
        PreparedWindows(tiny_dataset, SPEC, length=1, scale=4)
    config = parse_config({"model": {"name": "pnp_vcve", "variant": "small"}, "out": str(tmp_path / "run"),
                           "data": {"root": str(tiny_sr_dataset), "crop": 16, "compressed": ["crf35"]},
                           "train": {"steps": 1, "batch_size": 1}})
    with pytest.raises(DatasetError, match="super-resolution set"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_ranking_pairs_are_ordered_by_crf_or_frame_type(tiny_sr_dataset: Path) -> None:
    pairs = RankingPairs(tiny_sr_dataset, crop=16, length=64, seed=3, augment=False)
    kinds = set()
    for i in range(64):
        s = pairs[i]
        assert s["frames"].shape == (2, 3, 16, 16)
        kinds.add(int(s["kind"]))
        a, b = (int(x) for x in s["frame_type"])
        if s["kind"] == TYPE_PAIR:
            assert a != b and float(s["order"]) == (1.0 if a > b else -1.0)
        else:
            assert a == b  # the same frame at two CRFs, of one type in both encodes
            assert not torch.equal(s["frames"][0], s["frames"][1])
    assert kinds == {CRF_PAIR, TYPE_PAIR}
    # the CRF order: a CRF 35 crop is more compressed than the same CRF 0 crop
    only_crf = RankingPairs(tiny_sr_dataset, crop=16, length=8, seed=0, variants=("crf0", "crf35"), type_share=0,
                            augment=False)
    s = only_crf[0]
    manifest = load_manifest(tiny_sr_dataset)
    assert manifest["settings"]["scale"] == 4
    assert int(s["kind"]) == CRF_PAIR and abs(float(s["order"])) == 1
    with pytest.raises(DatasetError, match="two or more CRFs"):
        RankingPairs(tiny_sr_dataset, crop=16, length=1, variants=("crf15",))


CAVSR_TINY = {
    "model": {"name": "cavsr", "variant": "small"},
    "data": {"frames": 3, "crop": 16, "compressed": ["crf15", "crf35"], "lossless": "crf0", "lossless_prob": 0.5,
             "qp_dropout": 0.0},
    "train": {"steps": 3, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 3, "log_every": 1, "threads": 1},
}


def test_cavsr_ranker_then_super_resolution_with_the_encoder_frozen(tiny_sr_dataset: Path, tmp_path: Path) -> None:
    from codecave.models import create_model

    data = json.loads(json.dumps(CAVSR_TINY))
    data["data"]["root"], data["out"] = str(tiny_sr_dataset), str(tmp_path / "ranker")
    data["objective"] = {"name": "compression_ranking", "settings": {"margin": 0.5}}
    ranker = train(parse_config(data), progress=False)
    assert ranker.finished and np.isfinite(ranker.loss)
    ranked = create_model("cavsr", weights=str(tmp_path / "ranker"))
    torch.manual_seed(0)  # the trainer's seed: the initialisation stage 1 started from
    fresh = create_model("cavsr", weights=None)
    assert not torch.equal(ranked.compression_encoder.body[0].weight, fresh.compression_encoder.body[0].weight)
    assert torch.equal(ranked.shallow.weight, fresh.shallow.weight)  # stage 1 trains the encoder alone

    data["objective"], data["out"] = {"name": "super_resolution"}, str(tmp_path / "sr")
    data["train"]["init"] = str(tmp_path / "ranker")
    sr = train(parse_config(data), progress=False)
    assert sr.finished and np.isfinite(sr.loss)
    model = create_model("cavsr", weights=str(tmp_path / "sr"))
    encoder_before, encoder_after = ranked.compression_encoder.state_dict(), model.compression_encoder.state_dict()
    assert all(torch.equal(v, encoder_after[k]) for k, v in encoder_before.items())  # weights and BN statistics
    assert not torch.equal(model.shallow.weight, ranked.shallow.weight)


def test_an_ablation_without_some_layers_starts_from_the_tensors_that_fit(tiny_sr_dataset: Path,
                                                                          tmp_path: Path) -> None:
    from codecave.errors import ConfigError
    from codecave.models import create_model

    data = json.loads(json.dumps(CAVSR_TINY))
    data["data"]["root"], data["out"] = str(tiny_sr_dataset), str(tmp_path / "ranker")
    data["train"]["steps"] = 1
    data["objective"] = {"name": "compression_ranking"}
    train(parse_config(data), progress=False)
    data["objective"], data["out"] = {"name": "super_resolution"}, str(tmp_path / "plain")
    data["model"]["overrides"] = {"cam": False, "alignment": "none", "momentum": 1.0}
    data["train"]["init"] = str(tmp_path / "ranker")
    with pytest.raises(ConfigError, match="do not fit"):
        train(parse_config(data), progress=False)
    data["train"]["init_strict"] = False
    assert train(parse_config(data), progress=False).finished
    ranked = create_model("cavsr", weights=str(tmp_path / "ranker"))
    plain = create_model("cavsr", weights=str(tmp_path / "plain"))
    assert torch.equal(plain.compression_encoder.body[0].weight, ranked.compression_encoder.body[0].weight)
    assert not hasattr(plain, "forward_align") and plain.config.alignment == "none"


def test_the_contrastive_alternative_trains_on_two_views_of_one_frame(tiny_sr_dataset: Path, tmp_path: Path) -> None:
    from codecave.data.ranking import CompressionViews

    views = CompressionViews(tiny_sr_dataset, crop=16, length=4, seed=0, augment=False)
    s = views[0]
    assert s["frames"].shape == (2, 3, 16, 16) and s["frame_type"][0] == s["frame_type"][1]
    data = json.loads(json.dumps(CAVSR_TINY))
    data["data"]["root"], data["out"] = str(tiny_sr_dataset), str(tmp_path / "cl")
    data["train"]["batch_size"] = 4
    data["objective"] = {"name": "compression_contrast", "settings": {"temperature": 0.07}}
    result = train(parse_config(data), progress=False)
    assert result.finished and 0 < result.loss < 10  # InfoNCE over 8 views: about log(7) at the start


def test_the_degradation_samples_where_bicubic_up_sampling_expects_them() -> None:
    """Low-resolution pixel i is the blurred picture at 4i + 1.5: bicubic up-sampling of a
    decimated ramp gives the ramp back (to rounding), not a ramp 1.5 pixels off."""
    import torch.nn.functional as F

    from codecave.data.prepare import blur_downsample

    yy, xx = np.meshgrid(np.arange(64), np.arange(96), indexing="ij")
    ramp = np.stack([2.0 * xx + 20, 3.0 * yy + 10, xx + yy + 5], -1).astype(np.uint8)[None]
    low = blur_downsample(ramp, 4, 1.5)
    assert low.shape == (1, 16, 24, 3)
    up = F.interpolate(torch.from_numpy(low).permute(0, 3, 1, 2).float(), scale_factor=4, mode="bicubic",
                       align_corners=False)
    error = (up - torch.from_numpy(ramp).permute(0, 3, 1, 2).float())[..., 12:-12, 12:-12].abs()
    assert error.max() <= 1.5  # 1.5 px off would be 4.5 levels on the 3-levels-per-pixel ramp
