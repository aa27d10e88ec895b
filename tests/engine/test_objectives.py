"""Objectives: one engine, any method's loss; VIG's truth-guidance distillation (TGD)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codecave.engine.config import TrainSection, parse_config
from codecave.engine.objectives import (
    RecurrentLuma,
    TruthGuidance,
    build_objective,
    truth_guidance_mask,
)
from codecave.engine.trainer import train
from codecave.errors import ConfigError
from codecave.grid import luma, pack


def test_tgd_mask_has_the_ratio_and_patch_size_asked_for() -> None:
    g = torch.Generator().manual_seed(0)
    mask = truth_guidance_mask((2, 3, 32, 64), 8, 0.1, g)
    assert mask.shape == (2, 3, 1, 32, 64)
    patches = mask.reshape(2, 3, 4, 8, 8, 8).permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 4, 8, 64)
    # constant on each 8x8 patch, exactly round(0.1 * 32) = 3 compressed patches in every frame
    assert torch.equal(patches.amin(-1), patches.amax(-1))
    assert torch.equal(patches[..., 0].sum((-1, -2)), torch.full((2, 3), 3.0))
    # frames differ (a fresh draw per frame), and the same seed gives the same mask
    assert not torch.equal(mask[0, 0], mask[0, 1])
    assert torch.equal(mask, truth_guidance_mask((2, 3, 32, 64), 8, 0.1, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="tile"):
        truth_guidance_mask((1, 1, 30, 64), 8, 0.1, g)


def _batch(b: int = 2, t: int = 3, h: int = 32, w: int = 32) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    y_gt, y_in = torch.rand(b, t, h, w), torch.rand(b, t, h, w)
    u, v = torch.rand(b, t, h // 2, w // 2), torch.rand(b, t, h // 2, w // 2)
    return {"gt": pack(y_gt, u, v), "frames": pack(y_in, u, v), "crf": torch.tensor([27.0, 37.0])}


class _Probe(torch.nn.Module):
    """Returns its input plus a learnable offset, and keeps what it was given."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.offset = torch.nn.Parameter(torch.full(shape, 0.05))
        self.seen: torch.Tensor | None = None

    def forward(self, clip: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        self.seen = clip.detach()
        return clip + self.offset


def test_tgd_inputs_are_ground_truth_except_the_masked_patches_and_only_those_are_scored() -> None:
    batch = _batch()
    objective = TruthGuidance(TrainSection(steps=8, seed=5), compressed_ratio=0.25, patch_sizes=(16, 8))
    assert [objective.patch_at(s) for s in range(8)] == [16] * 4 + [8] * 4
    net = _Probe((2, 3, 1, 32, 32))
    objective.loss(net, batch, step=5).backward()
    gt, frames = luma(batch["gt"])[:, :, None], luma(batch["frames"])[:, :, None]
    mask = truth_guidance_mask((2, 3, 32, 32), 8, 0.25, torch.Generator().manual_seed(5 * 1_000_003 + 5))
    assert torch.equal(net.seen, torch.where(mask.bool(), frames, gt))
    assert mask.mean() == pytest.approx(0.25)
    grad = net.offset.grad
    assert grad[~mask.bool()].abs().max() == 0 and grad[mask.bool()].abs().min() > 0


def test_recurrent_luma_scores_every_frame_on_the_y_plane() -> None:
    batch = _batch()
    net = _Probe((2, 3, 1, 32, 32))
    loss = RecurrentLuma(TrainSection(loss="l1")).loss(net, batch, step=0)
    expected = (luma(batch["frames"]) + 0.05 - luma(batch["gt"])).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(net.seen, luma(batch["frames"])[:, :, None])


def test_objective_config_errors_name_the_problem() -> None:
    assert build_objective(parse_config({})).name == "restoration"
    with pytest.raises(ConfigError, match="choose one of"):
        build_objective(parse_config({"objective": {"name": "gan"}}))
    with pytest.raises(ConfigError, match=r"unknown setting.*ratio"):
        build_objective(parse_config({"objective": {"name": "truth_guidance", "settings": {"ratio": 0.1}}}))
    with pytest.raises(ConfigError, match="multiple of every TGD patch"):
        build_objective(parse_config({"data": {"crop": 48}, "objective": {"name": "truth_guidance"}}))


VIG_TINY = {
    "name": "vig_tiny",
    "model": {"name": "vig", "variant": "small"},
    "data": {"frames": 5, "crop": 32, "compressed": ["crf35"], "lossless": "", "qp_dropout": 0.0},
    "train": {"steps": 4, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2, "log_every": 1, "threads": 1},
    "objective": {"name": "truth_guidance", "settings": {"compressed_ratio": 0.25, "patch_sizes": [32, 16]}},
}


def test_vig_trains_with_tgd_then_fine_tunes_on_the_same_engine(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    data = json.loads(json.dumps(VIG_TINY))
    data["data"]["root"], data["out"] = str(tiny_yuv_dataset), str(tmp_path / "pre")
    pre = train(parse_config(data), progress=False)
    assert pre.finished and torch.isfinite(torch.tensor(pre.loss))
    meta = json.loads((tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()[-1])
    assert meta["step"] == 4
    data["objective"], data["out"] = {"name": "recurrent_luma"}, str(tmp_path / "fine")
    data["train"]["init"] = str(tmp_path / "pre")
    fine = train(parse_config(data), progress=False)
    assert fine.finished and torch.isfinite(torch.tensor(fine.loss))
    from codecave.models import create_model

    model = create_model("vig", weights=str(tmp_path / "fine"))
    assert model.variant == "small" and not torch.equal(model.fusion.weight, torch.zeros_like(model.fusion.weight))


def test_tgd_resumes_exactly(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    def config(out: str, **train_settings: object) -> object:
        data = json.loads(json.dumps(VIG_TINY))
        data["data"]["root"], data["out"] = str(tiny_yuv_dataset), str(tmp_path / out)
        data["train"].update(train_settings)
        return parse_config(data)

    train(config("a"), progress=False)
    assert train(config("b", max_minutes=1e-9), progress=False).step == 1
    assert train(config("b"), progress=False).step == 4
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


CRDS_TINY = {
    "name": "crds_tiny",
    "model": {"name": "crds", "variant": "small",
              "overrides": {"channels": 8, "stem": 4, "encoder_blocks": 1, "fusion_blocks": 1, "rpn_blocks": 1}},
    "data": {"frames": 3, "crop": 32, "compressed": ["crf35"], "lossless": ""},
    "train": {"steps": 4, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 4, "log_every": 1, "threads": 1,
              "loss": "charbonnier"},
    "objective": {"name": "progressive_denoising", "settings": {"encoder_frozen": 0.5}},
}


def test_progressive_denoising_scores_the_stages_against_the_blends_and_freezes_the_encoder_first() -> None:
    from codecave.engine.objectives import ProgressiveDenoising
    from codecave.models.crds import CRDS, CRDSConfig

    batch = _batch(t=3)
    model = CRDS(CRDSConfig(channels=8, stem=4, encoder_blocks=1, fusion_blocks=1, rpn_blocks=1, motion="zero"))
    train_section = TrainSection(steps=10, loss="charbonnier")
    full = ProgressiveDenoising(train_section, encoder_frozen=0.3, intermediate_weight=2.0)
    final_only = ProgressiveDenoising(train_section, intermediate_weight=0.0)
    frames, gt = luma(batch["frames"])[:, :, None], luma(batch["gt"])[:, :, None]
    with torch.no_grad():
        out, stages = model(frames, return_stages=True)
    from codecave.losses import training_loss
    from codecave.models.crds import progressive_targets

    expected = training_loss("charbonnier", out, gt)
    torch.testing.assert_close(final_only.loss(model, batch, 0), expected)
    blends = sum(training_loss("mse", s, t) for s, t in zip(stages, progressive_targets(frames, gt)))
    torch.testing.assert_close(full.loss(model, batch, 0), expected + 2.0 * blends)
    assert not any(p.requires_grad for p in model.encoder.parameters())  # step 0 < 0.3 * 10
    full.loss(model, batch, 3)
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_crds_pretrains_its_auto_encoder_then_trains_on_the_same_engine(tiny_yuv_dataset: Path, tmp_path: Path) -> None:
    from codecave.engine.checkpoint import load_checkpoint

    data = json.loads(json.dumps(CRDS_TINY))
    data["data"]["root"], data["out"] = str(tiny_yuv_dataset), str(tmp_path / "ldr")
    data["objective"], data["data"]["frames"] = {"name": "ldr_pretraining"}, 1
    assert train(parse_config(data), progress=False).finished
    pre = load_checkpoint(tmp_path / "ldr")["model"]
    data = json.loads(json.dumps(CRDS_TINY))
    data["data"]["root"], data["out"] = str(tiny_yuv_dataset), str(tmp_path / "main")
    data["train"]["init"] = str(tmp_path / "ldr")
    main = train(parse_config(data), progress=False)
    assert main.finished and torch.isfinite(torch.tensor(main.loss))
    after = load_checkpoint(tmp_path / "main")["model"]
    assert not torch.equal(pre["blocks.0.rpn.out.weight"], after["blocks.0.rpn.out.weight"])
    assert not torch.equal(pre["encoder.head.weight"], after["encoder.head.weight"])  # unfrozen after step 2
