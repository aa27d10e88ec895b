"""CRDS: shapes and gradients, progressive targets, MuNA, DIS motion, streaming, and the
LDR auto-encoder learning the degradation residual on a toy clip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.layers.warp import flow_warp
from codecave.models.crds import (
    CRDS,
    VARIANTS,
    CRDSConfig,
    CRDSStream,
    MutualNeighbourhoodAttention,
    count,
    dis_flow,
    latent_motion,
    ldr_weight,
    progressive_targets,
)
from tests.conftest import pan_frames

TINY = dataclasses.replace(VARIANTS["small"], channels=8, stem=4, encoder_blocks=1, fusion_blocks=1, rpn_blocks=1,
                           motion="zero")


@pytest.mark.parametrize("config", [TINY, dataclasses.replace(TINY, muna=False)], ids=["muna", "warping"])
def test_shapes_stages_and_gradients_reach_every_parameter(config: CRDSConfig) -> None:
    torch.manual_seed(0)
    model = CRDS(config)
    clip = torch.rand(2, 4, 1, 16, 24, requires_grad=True)
    z = model.encode(clip)
    for block in model.blocks:  # each starts as the identity (up to rounding: x_bar + (z - x_bar))
        torch.testing.assert_close(block(z, model.motion(clip)), z)
    for block in model.blocks:
        torch.nn.init.normal_(block.rpn.out.weight, std=0.05)
    out, stages = model(clip, return_stages=True)
    assert out.shape == clip.shape and len(stages) == 3 and all(s.shape == clip.shape for s in stages)
    (out.square().mean() + sum(s.square().mean() for s in stages)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 2, 1, 18, 24))


def test_variants_and_settings() -> None:
    assert count("small") < 1.5e6 < count("paper")
    with pytest.raises(ValueError, match="motion"):
        CRDSConfig(motion="spynet")
    model = CRDS(dataclasses.replace(TINY, motion="codec"))
    with pytest.raises(ValueError, match="codec's motion"):
        model(torch.rand(1, 2, 1, 16, 16))


def test_intermediate_targets_are_the_stated_blends_and_ldr_weights() -> None:
    x_hat, x = torch.full((1, 1, 1, 4, 4), 1.0), torch.zeros(1, 1, 1, 4, 4)
    targets = progressive_targets(x_hat, x)
    assert [float(t.mean()) for t in targets] == [0.75, 0.5, 0.25]  # after blocks 4, 3, 2
    assert [round(float(ldr_weight(a)), 4) for a in (0.0, 0.25, 0.5, 0.75)] == [4.0, 2.0, 1.3333, 1.0]


def test_muna_with_zero_motion_and_a_one_hot_window_returns_that_neighbour() -> None:
    config = dataclasses.replace(TINY, channels=4)
    muna = MutualNeighbourhoodAttention(config)
    with torch.no_grad():
        for conv in (muna.query, muna.key, muna.value):
            conv.weight.zero_()
            conv.bias.zero_()
        muna.value.weight.copy_(torch.eye(4).view(4, 4, 1, 1))  # V = H
        muna.position_bias.zero_()
        muna.position_bias[0, 0, 5] = 1e4  # from t-1: offset (+1, 0)
        muna.position_bias[1, 0, 4] = 1e4  # intra: the centre, which must be masked
    h = torch.randn(1, 3, 4, 6, 6)
    zero = torch.zeros(1, 3, 2, 6, 6)
    (past, intra, _), refined = muna(h, {-1: zero, 1: zero}, return_motion=True)
    torch.testing.assert_close(past[:, 1:, :, :, :-1], h[:, :-1, :, :, 1:])
    assert not torch.allclose(intra, h)  # the centre is not copied
    torch.testing.assert_close(refined[-1][:, :, :, :, :-1], torch.tensor([1.0, 0.0]).view(1, 1, 2, 1, 1).expand(
        1, 3, 2, 6, 5))  # the attention's motion: one position right


def test_dis_flow_follows_a_pan_and_warps_the_neighbour_onto_the_frame() -> None:
    frames = np.stack([f[..., 1] for f in pan_frames(3, 64, 96, step=(2, 1))])  # pixel (x,y) of t at (x+2,y+1) in t-1
    flow = dis_flow(frames, -1)
    inner = flow[1, :, 8:-8, 8:-8]
    assert abs(float(np.median(inner[0])) - 2) < 0.25 and abs(float(np.median(inner[1])) - 1) < 0.25
    assert not flow[0].any()  # no frame before the first
    cur, prev = (torch.from_numpy(frames[i]).float()[None, None] for i in (1, 0))
    warped = flow_warp(prev, torch.from_numpy(flow[1])[None])
    assert (warped - cur)[..., 8:-8, 8:-8].abs().mean() < 0.5 * (prev - cur)[..., 8:-8, 8:-8].abs().mean()
    assert latent_motion(torch.from_numpy(flow)).shape == (3, 2, 16, 24)
    torch.testing.assert_close(latent_motion(torch.full((1, 2, 8, 8), 4.0)), torch.ones(1, 2, 2, 2))


def streamed(model: CRDS, clip: torch.Tensor, chunk: int, context: int) -> tuple[list[torch.Tensor], int, int]:
    """Frames out of a CRDSStream, the most frames it held, and how many came out of push()."""
    stream, out, held, pushed = CRDSStream(model, chunk=chunk, context=context), [], 0, 0
    for i in range(clip.shape[1]):
        y = stream.push(clip[:, i])
        held = max(held, len(stream.frames))
        if y is not None:
            out.append(y)
            pushed += 1
    return out + stream.flush(), held, pushed


def test_streaming_runs_chunks_with_their_context_and_holds_few_frames() -> None:
    torch.manual_seed(0)
    model = CRDS(TINY).eval()
    for block in model.blocks:  # a trained-like model: the recurrences and windows reach across frames
        torch.nn.init.normal_(block.rpn.out.weight, std=0.05)
    clip = torch.rand(1, 11, 1, 16, 16)
    with torch.no_grad():
        whole = model(clip)
        out, _, _ = streamed(model, clip, chunk=11, context=0)
        torch.testing.assert_close(torch.stack(out, 1), whole)  # one chunk: the whole clip
        out, held, pushed = streamed(model, clip, chunk=3, context=2)
        assert len(out) == 11 and held <= 3 + 2 * 2 and pushed >= 6
        # each chunk equals the model on the chunk and its context: frames 3-5 saw 1-7
        torch.testing.assert_close(torch.stack(out[3:6], 1), model(clip[:, 1:8])[:, 2:5])
        torch.testing.assert_close(torch.stack(out[:3], 1), model(clip[:, :5])[:, :3])
        blind, _, _ = streamed(model, clip, chunk=3, context=0)
    assert not torch.allclose(torch.stack(blind, 1), torch.stack(out, 1))  # the context matters


def test_a_reference_outside_the_clip_is_the_neighbour_on_the_other_side() -> None:
    from codecave.models.crds import reference

    motion = {-1: torch.full((1, 3, 2, 2, 2), -1.0), 1: torch.full((1, 3, 2, 2, 2), 1.0)}
    idx, flow = reference(-1, 3, motion)
    assert idx == [1, 0, 1] and flow[0, :, 0, 0, 0].tolist() == [1.0, -1.0, -1.0]
    idx, flow = reference(1, 3, motion)
    assert idx == [1, 2, 1] and flow[0, :, 0, 0, 0].tolist() == [1.0, 1.0, -1.0]
    idx, flow = reference(1, 1, {m: v[:, :1] for m, v in motion.items()})
    assert idx == [0] and not flow.any()  # a one-frame clip: itself, no motion (and its centre masked)
    muna = MutualNeighbourhoodAttention(TINY)
    with torch.no_grad():
        muna.position_bias.zero_()
        muna.position_bias[:, 0, 4] = 1e4  # every reference: all weight on the centre...
    h = torch.randn(1, 1, 8, 4, 4)
    zero = torch.zeros(1, 1, 2, 4, 4)
    predictions, _ = muna(h, {-1: zero, 1: zero})
    value = muna.value(h[0])[None]
    assert all(not torch.allclose(p, value) for p in predictions)  # ...refused: none copies the frame


def test_the_ldr_auto_encoder_learns_the_degradation_residual_on_a_toy_clip(tiny_yuv_dataset: Path,
                                                                          tmp_path: Path) -> None:
    from codecave.data.prepare import load_clip
    from codecave.engine.config import parse_config
    from codecave.engine.trainer import train
    from codecave.grid import luma

    config = {"name": "ldr", "out": str(tmp_path / "ldr"),
              "model": {"name": "crds", "variant": "small", "overrides": {"motion": "zero"}},
              "data": {"root": str(tiny_yuv_dataset), "frames": 1, "crop": 32, "compressed": ["crf35"], "lossless": ""},
              "train": {"steps": 500, "batch_size": 8, "lr": 3e-3, "min_lr": 1e-4, "loss": "mse", "threads": 1,
                        "checkpoint_every": 500, "log_every": 50},
              "objective": {"name": "ldr_pretraining"}}
    result = train(parse_config(json.loads(json.dumps(config))), progress=False)
    assert result.finished
    from codecave.models import create_model

    model = create_model("crds", weights=str(tmp_path / "ldr"))
    clip = load_clip(tiny_yuv_dataset, "pan0", "crf35")
    x_hat = luma(torch.from_numpy(np.array(clip.decoded[:4])).float() / 255)[:, None]
    x = luma(torch.from_numpy(np.array(clip.gt[:4])).float() / 255)[:, None]
    with torch.no_grad():
        for alpha in (0.0, 0.5):
            x_blend = torch.lerp(x, x_hat, alpha)
            estimate = x_hat + model.decoder(model.encoder(x_hat), model.encoder(x_blend))
            # the decoder's residual takes the compressed frame a third of the way to the blend or more
            # (in squared error; an untrained decoder adds noise: about 3x the error). PyAV's x264 is not
            # bit-reproducible, so the toy clip differs from run to run: 500 steps left 0.44 of the error
            # in two runs here and 0.54 in one CI run, where the old bound (0.5) failed.
            ratio = float((estimate - x_blend).square().mean() / (x_hat - x_blend).square().mean())
            assert ratio < 2 / 3, f"alpha {alpha}: {ratio:.3f} of the squared error left"


def test_shipped_small_weights_are_listed_honestly_and_trained() -> None:
    import dataclasses
    import hashlib
    from importlib import resources

    from codecave.models import create_model
    from codecave.models.registry import weights_manifest

    entry = weights_manifest()["crds_small"]
    blob = (resources.files("codecave") / "weights" / entry["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    # no validation clip among the training clips; four stages, the auto-encoder first
    assert not set(entry["validation"]["clips"]) & set(entry["training"]["data"]["clips"])
    assert [s["run"] for s in entry["training"]["stages"]] == ["crds_ldr", "crds_small", "crds_small_stage2",
                                                             "crds_small_stage3"]
    assert {"ldp22", "ldp37", "crf35"} <= set(entry["validation"]["frame_qp"])
    model = create_model("crds")
    # the small network with the default's shrinkage stage grafted in front (no training of its own)
    assert model.config == dataclasses.replace(VARIANTS["small"], dct_shrink=1.0)
    assert model.pass_through_qp == entry["pass_through_qp"]
    assert [g["tensors"] for g in entry["training"]["grafts"]] == [["shrink.exponent", "shrink.log_scale"]]
    clip = torch.rand(1, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.encode(clip)
        moved = model.blocks[0](z, model.motion(clip))
    assert (moved - z).abs().mean() > 1e-4  # trained: the blocks are no longer the identity start
