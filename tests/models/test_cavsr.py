"""CAVSR: shapes of every variant, the ranking loss, the modulation (the official code's bypass
bug cannot return), the alignment, the B-frame momentum, the frozen encoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from codecave.layers.warp import flow_warp
from codecave.models.cavsr import CAVSR, VARIANTS, CompressionEncoder, MetaAlignment, count, ranking_loss


def _priors(b: int, t: int, h: int, w: int, types: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"frame_type": torch.tensor([types] * b), "mv_past": torch.randn(b, t, 2, h, w, generator=g),
            "mv_future": torch.randn(b, t, 2, h, w, generator=g),
            "mv_valid": torch.ones(b, t, 2, h, w, dtype=torch.bool)}


def _perturb(model: CAVSR, std: float = 0.05) -> CAVSR:
    """Give the zero-initialised output and offset layers some weight (a trained-like model)."""
    torch.manual_seed(1)
    for module in (model.upsampler.out, *(getattr(model, a).offset[-1] for a in ("backward_align", "forward_align")
                                          if hasattr(model, a))):
        torch.nn.init.normal_(module.weight, std=std)
    return model


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shapes_4x_and_gradients(variant: str) -> None:
    torch.manual_seed(0)
    model = _perturb(CAVSR(VARIANTS[variant]))
    frames = torch.rand(2, 3, 3, 12, 20)
    out = model(frames, _priors(2, 3, 12, 20, [0, 2, 1]))
    assert out.shape == (2, 3, 3, 48, 80)
    assert model(frames, _priors(2, 3, 12, 20, [0, 2, 1]), targets=(1, 2)).shape == (2, 1, 3, 48, 80)
    out.square().mean().backward()
    trained = [n for n, p in model.named_parameters() if not n.startswith("compression_encoder.ranker")]
    missing = [n for n in trained if dict(model.named_parameters())[n].grad is None]
    assert not missing, missing
    assert count("small") < 1_000_000 and count("paper") > 5_000_000


@pytest.mark.parametrize("variant", ["small", "fast"])
def test_small_and_fast_start_at_bicubic_upsampling(variant: str) -> None:
    model = CAVSR(VARIANTS[variant]).eval()
    frames = torch.rand(1, 2, 3, 8, 8)
    out = model(frames, _priors(1, 2, 8, 8, [0, 1]))
    bicubic = F.interpolate(frames.flatten(0, 1), scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.equal(out.flatten(0, 1), bicubic)


def test_fast_runs_no_convolution_at_full_resolution() -> None:
    """``fast`` reaches its speed by leaving the 4x grid to the last pixel shuffle (and the
    bicubic skip); ``small`` convolves there twice."""
    sizes: dict[str, list[int]] = {}
    for variant in ("small", "fast"):
        model = CAVSR(VARIANTS[variant]).eval()
        seen: list[int] = []
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(out.shape[-1]))
        with torch.no_grad():
            model(torch.rand(1, 2, 3, 8, 12), _priors(1, 2, 8, 12, [0, 1]))
        sizes[variant] = seen
    assert max(sizes["fast"]) == 24 and sizes["small"].count(48) == 2  # 2x at most; small: hr and out
    assert count("fast") < count("small")


def test_targets_give_the_same_frames_as_a_full_run() -> None:
    model = _perturb(CAVSR(VARIANTS["small"])).eval()
    frames, priors = torch.rand(1, 5, 3, 8, 12), _priors(1, 5, 8, 12, [0, 2, 2, 1, 2])
    with torch.no_grad():
        assert torch.allclose(model(frames, priors)[:, 1:4], model(frames, priors, targets=(1, 4)), atol=1e-6)


def test_ranking_loss_sign_and_a_toy_pair_is_ordered_after_a_few_steps() -> None:
    # eq. 1: no loss once the more compressed frame scores higher by the margin
    assert ranking_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0])).item() == 0
    assert ranking_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([-1.0])).item() == pytest.approx(1.5)
    torch.manual_seed(0)
    encoder = CompressionEncoder(8)
    clean = torch.rand(4, 3, 16, 16)
    blocky = F.interpolate(F.avg_pool2d(clean, 4), scale_factor=4, mode="nearest")  # a "more compressed" frame
    types = torch.ones(8, dtype=torch.int64)
    opt = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    for _ in range(40):  # both frames of each pair in one batch, as the objective scores them
        scores = encoder.score(torch.cat([blocky, clean]), types)
        loss = ranking_loss(scores[:4], scores[4:], torch.ones(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.eval()  # batch normalisation now uses the running statistics
    scores = encoder.score(torch.cat([blocky, clean]), types)
    assert (scores[:4] > scores[4:]).all()


def test_modulation_changes_the_features() -> None:
    """The representation reaches the output (the official code returned input + input)."""
    torch.manual_seed(0)
    model = _perturb(CAVSR(VARIANTS["small"])).eval()
    for stack in model.cam_stacks:  # a trained-like modulation
        for block in stack.blocks:
            torch.nn.init.normal_(block.conv2.weight, std=0.1)
    frames = torch.rand(1, 2, 3, 8, 8)
    shallow = model.shallow(frames[0])
    rep_a = model.compression_encoder(frames[0], torch.tensor([0, 1]))
    rep_b = model.compression_encoder(frames[0], torch.tensor([2, 2]))
    stack = model.cam_stacks[0]
    assert not torch.allclose(stack(shallow, rep_a), stack(shallow, rep_b))
    assert not torch.allclose(stack(shallow, rep_a), shallow)
    # and through the whole model: the frame types change the output only through the CAM
    out_a = model(frames, _priors(1, 2, 8, 8, [0, 1]))
    out_b = model(frames, _priors(1, 2, 8, 8, [2, 2]))
    assert not torch.allclose(out_a, out_b)
    plain = _perturb(CAVSR(dataclasses.replace(VARIANTS["small"], cam=False, momentum=1.0))).eval()
    assert torch.equal(plain(frames, _priors(1, 2, 8, 8, [0, 1])), plain(frames, _priors(1, 2, 8, 8, [2, 2])))


def test_alignment_with_zero_offsets_is_vector_warping() -> None:
    torch.manual_seed(0)
    align = MetaAlignment(8, "sigmoid", 0.1)  # the offset head starts at zero
    state, feat = torch.rand(1, 8, 10, 12), torch.rand(1, 8, 10, 12)
    mv, residual = torch.randn(1, 2, 10, 12), torch.randn(1, 3, 10, 12)
    assert torch.allclose(align(state, feat, mv, residual), flow_warp(state, mv))
    gate = align.attention(residual)
    assert gate.min() >= 0.5 and gate.max() < 1  # the paper's sigmoid never switches refinement off
    assert MetaAlignment(8, "tanh", 0.1).attention(torch.zeros(1, 3, 2, 2)).abs().max() == 0


def test_momentum_acts_only_on_b_frames() -> None:
    torch.manual_seed(0)
    base = dataclasses.replace(VARIANTS["small"], alignment="mv")
    with_momentum = _perturb(CAVSR(base)).eval()
    without = _perturb(CAVSR(dataclasses.replace(base, momentum=1.0))).eval()
    without.load_state_dict(with_momentum.state_dict())
    frames = torch.rand(1, 4, 3, 8, 8)
    same = [with_momentum(frames, _priors(1, 4, 8, 8, types)) for types in ([0, 1, 1, 1], [0, 2, 2, 1])]
    other = [without(frames, _priors(1, 4, 8, 8, types)) for types in ([0, 1, 1, 1], [0, 2, 2, 1])]
    # no B-frame: momentum changes nothing (the frame-type embedding differs between the two
    # type lists, so compare each with its own counterpart)
    assert torch.equal(same[0], other[0])
    assert not torch.allclose(same[1], other[1])


def test_a_frozen_encoder_gets_no_gradient_and_keeps_its_statistics() -> None:
    torch.manual_seed(0)
    model = _perturb(CAVSR(VARIANTS["small"]))
    model.freeze_compression_encoder()
    model.train()
    assert not model.compression_encoder.training and model.shallow.training
    stats = {k: v.clone() for k, v in model.compression_encoder.state_dict().items()}
    frames = torch.rand(2, 2, 3, 8, 8)
    model(frames, _priors(2, 2, 8, 8, [0, 2])).mean().backward()
    assert all(p.grad is None for p in model.compression_encoder.parameters())
    assert all(torch.equal(v, model.compression_encoder.state_dict()[k]) for k, v in stats.items())


def test_enhancer_runs_cavsr_in_bf16_unless_told_otherwise() -> None:
    from codecave.enhance import EnhanceOptions, Enhancer
    from codecave.models import create_model

    model = create_model("cavsr", weights=None)
    assert Enhancer(model, EnhanceOptions(device="cpu")).precision == "bf16"
    assert Enhancer(model, EnhanceOptions(device="cpu", precision="fp32")).precision == "fp32"


@pytest.mark.parametrize("variant", ["small", "fast"])
def test_shipped_weights_are_listed_honestly_and_trained(variant: str) -> None:
    import hashlib
    from importlib import resources

    from codecave.models import create_model
    from codecave.models.registry import default_variant, weights_manifest

    entry = weights_manifest()[f"cavsr_{variant}"]
    blob = (resources.files("codecave") / "weights" / entry["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    # no validation clip among the training clips; gains over bicubic listed per rate point
    assert not set(entry["validation"]["clips"]) & set(entry["training"]["data"]["clips"])
    assert set(entry["validation"]["frame_qp"]) >= {"crf15", "crf25"}
    model = create_model("cavsr", variant=variant)
    assert model.config == VARIANTS[variant]
    lr = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(lr, _priors(1, 3, 16, 16, [0, 1, 1]))
    bicubic = F.interpolate(lr[0], scale_factor=4, mode="bicubic", align_corners=False)
    assert out.shape == (1, 3, 3, 64, 64)
    assert (out[0] - bicubic).abs().mean() > 1e-3  # trained: no longer the bicubic start
    assert default_variant("cavsr") == "fast"  # the faster one, which also scored higher (README)
