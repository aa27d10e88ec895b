"""VIG's compressed redundancy filtering network: shapes, gradients, streaming = whole clip,
and the 2-D computation equal to the paper's 3-D convolutions."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from codecave.models.vig import FUTURE, VARIANTS, VIG, VIGStream, count

BASE = dataclasses.replace(VARIANTS["small"], c1=20, c2=20, resample=False)  # the UD ablation's base


@pytest.mark.parametrize("variant", [*sorted(VARIANTS), "base"])
def test_shapes_and_gradients_reach_every_parameter(variant: str) -> None:
    torch.manual_seed(0)
    model = VIG(BASE if variant == "base" else VARIANTS[variant])
    clip = torch.rand(2, 5, 1, 16, 24, requires_grad=True)
    qp = torch.tensor([27.0, 37.0])
    out = model(clip, qp)
    assert out.shape == clip.shape
    assert torch.equal(out, clip)  # the fusion layer starts at zero: the identity
    torch.nn.init.normal_(model.fusion.weight, std=0.01)
    model(clip, qp).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing
    assert clip.grad is not None and clip.grad.abs().sum() > 0


def test_the_qp_plane_changes_the_output_and_is_required() -> None:
    torch.manual_seed(0)
    model = VIG(VARIANTS["small"])
    torch.nn.init.normal_(model.fusion.weight, std=0.05)
    clip = torch.rand(1, 4, 1, 16, 16)
    assert not torch.allclose(model(clip, torch.tensor([22.0])), model(clip, torch.tensor([37.0])))
    with pytest.raises(ValueError, match="qp"):
        model(clip)
    plain = VIG(dataclasses.replace(VARIANTS["small"], qp_input=False))
    assert plain(clip).shape == clip.shape


def test_paper_is_several_times_small_and_the_base_matches_small() -> None:
    assert count("paper") > 20 * count("small")
    assert 1_500_000 < count("paper") < 2_500_000
    base = sum(p.numel() for p in VIG(BASE).parameters())
    assert abs(base - count("small")) < 0.01 * count("small")


def _reference_step(model: VIG, window: torch.Tensor, state: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
    """The paper's layers as written: pixel-unshuffle, Conv3d over (B, C, T, H, W)."""
    b, t, _, h, w = window.shape
    plane = (qp / 51).reshape(b, 1, 1, 1, 1).expand(b, t, 1, h, w)
    f0 = model.pre(torch.cat([window, plane], 2).reshape(b * t, 2, h, w)).reshape(b, t, -1, h, w)
    slope = model.config.negative_slope
    x = torch.cat([f0, state[:, None]], 1).transpose(1, 2)

    def tsd(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = F.pixel_unshuffle(x.transpose(1, 2).reshape(b * t, c, h, w), 2)
        y = y.reshape(b, t, 4 * c, h // 2, w // 2).transpose(1, 2)
        return F.leaky_relu(block.fuse(F.leaky_relu(block.reduce(y), slope)), slope)

    t1 = tsd(model.tsd1, x)
    t2 = tsd(model.tsd2, t1)
    td = F.leaky_relu(model.td.conv(F.leaky_relu(model.td.collapse(t2), slope).squeeze(2)), slope)
    hidden = model.su2(model.su1(td + t2[:, :, 0]) + t1[:, :, 0])
    return model.fusion(hidden) + window[:, 0]


def test_two_dimensional_computation_equals_the_paper_layers() -> None:
    torch.manual_seed(2)
    model = VIG(VARIANTS["small"]).eval()
    torch.nn.init.normal_(model.fusion.weight, std=0.1)
    window, qp = torch.rand(2, 4, 1, 16, 24), torch.tensor([22.0, 37.0])
    state = torch.rand(2, model.config.c0, 16, 24)
    with torch.no_grad():
        y, _ = model.step(window, state, qp)
        torch.testing.assert_close(y, _reference_step(model, window, state, qp), rtol=0, atol=1e-5)


def test_streaming_equals_the_whole_clip_and_holds_four_frames() -> None:
    torch.manual_seed(1)
    model = VIG(VARIANTS["small"]).eval()
    torch.nn.init.normal_(model.fusion.weight, std=0.05)
    clip, qp = torch.rand(1, 9, 1, 16, 20), torch.tensor([32.0])
    with torch.no_grad():
        whole = model(clip, qp)
        stream = VIGStream(model, qp)
        out = []
        for t in range(clip.shape[1]):
            y = stream.push(clip[:, t])
            assert len(stream.frames) <= FUTURE + 1 and len(stream.taps) <= FUTURE + 1
            if y is not None:
                out.append(y)
        out += stream.flush()
    assert len(out) == clip.shape[1]
    torch.testing.assert_close(torch.stack(out, dim=1), whole, rtol=0, atol=1e-6)


def test_the_shrinkage_stage_post_filters_each_enhanced_frame_once() -> None:
    """``dct_shrink``: the network's output (clamped) goes through the stage at the sequence QP
    (noise is shrunk; NaN leaves it as it is), the hidden state does not, the stream shrinks each
    enhanced frame once and equals the whole clip, and the model refuses to run without the QP."""
    torch.manual_seed(2)
    model = VIG(dataclasses.replace(VARIANTS["small"], dct_shrink=1.0)).eval()
    torch.nn.init.normal_(model.fusion.weight, std=0.05)
    plain = VIG(VARIANTS["small"]).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("shrink.")})
    clip = (0.5 + 0.02 * torch.randn(1, 7, 1, 32, 40)).clamp(0, 1)  # flat grey and noise of 5 code values
    qp = torch.tensor([37.0])
    with torch.no_grad():
        whole, restored = model(clip, qp), plain(clip, qp)
        torch.testing.assert_close(whole, model.postfilter(restored, qp))
        assert (whole - 0.5).abs().mean() < 0.75 * (restored - 0.5).abs().mean()  # noise is shrunk at QP 37
        torch.testing.assert_close(model.postfilter(restored, torch.tensor([float("nan")])), restored.clamp(0, 1))
        y, state = model.step(clip[:, :4], qp=qp)
        y_plain, state_plain = plain.step(clip[:, :4], qp=qp)
        torch.testing.assert_close(y, model.postfilter(y_plain, qp))
        torch.testing.assert_close(state, state_plain)  # the recurrence is the network's alone
        calls: list[int] = []
        original = model.shrink.forward
        model.shrink.forward = lambda *a: calls.append(a[0].shape[0]) or original(*a)  # type: ignore[method-assign]
        stream = model.streamer(qp)
        out = [stream.push(clip[:, t]) for t in range(clip.shape[1])]
        out = [o for o in out if o is not None] + stream.flush()
    assert calls == [1] * clip.shape[1]  # one frame at a time, each once
    torch.testing.assert_close(torch.stack(out, dim=1), whole, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sequence QP"):
        model.streamer()
    with pytest.raises(ValueError, match="sequence QP"):
        VIG(dataclasses.replace(VARIANTS["small"], dct_shrink=1.0, qp_input=False))(clip)


def test_the_shrink_qp_offset_moves_the_stages_qp_only_and_needs_the_stage() -> None:
    torch.manual_seed(3)
    model = VIG(dataclasses.replace(VARIANTS["small"], dct_shrink=1.0, shrink_qp_offset=3.0)).eval()
    torch.nn.init.normal_(model.fusion.weight, std=0.05)
    plain = VIG(VARIANTS["small"]).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("shrink.")})
    clip = (0.5 + 0.02 * torch.randn(1, 5, 1, 16, 24)).clamp(0, 1)
    qp = torch.tensor([34.0])
    with torch.no_grad():
        restored = plain(clip, qp)  # the network's QP plane stays at 34
        at_37 = model.shrink(restored.clamp(0, 1).reshape(-1, 1, 16, 24), torch.full((5,), 37.0))
        torch.testing.assert_close(model(clip, qp), at_37.reshape(clip.shape))  # the stage at 34 + 3
        model.shrink_qp_offset = 0.0
        assert not torch.allclose(model(clip, qp), at_37.reshape(clip.shape))
    with pytest.raises(ValueError, match="dct_shrink"):
        VIG(dataclasses.replace(VARIANTS["small"], shrink_qp_offset=3.0))


def test_streams_at_or_below_stage_only_qp_skip_the_network() -> None:
    """``stage_only_qp``: a stream at or below it is its decoded frames through the stage alone,
    with no network computed (whole clip, step and stream); a stream above it in the same batch
    is what the model without the setting gives; the setting needs the stage."""
    torch.manual_seed(4)
    model = VIG(dataclasses.replace(VARIANTS["small"], dct_shrink=1.0, stage_only_qp=27.0)).eval()
    torch.nn.init.normal_(model.fusion.weight, std=0.05)
    full = VIG(dataclasses.replace(VARIANTS["small"], dct_shrink=1.0)).eval()
    full.load_state_dict(model.state_dict())
    clip = (0.5 + 0.02 * torch.randn(2, 6, 1, 16, 24)).clamp(0, 1)
    qp = torch.tensor([27.0, 32.0])
    with torch.no_grad():
        mixed = model(clip, qp)
        torch.testing.assert_close(mixed[0], model.postfilter(clip[:1], qp[:1])[0])  # QP 27: the stage alone
        torch.testing.assert_close(mixed[1], full(clip[1:], qp[1:])[0])  # QP 32: network and stage
        assert not torch.allclose(mixed[0], full(clip[:1], qp[:1])[0])
        y, state = model.step(clip[:, :4], qp=qp)
        y_full, state_full = full.step(clip[:, :4], qp=qp)
        torch.testing.assert_close(y[0], model.postfilter(clip[:1, 0], qp[:1])[0])
        torch.testing.assert_close(y[1], y_full[1])
        torch.testing.assert_close(state[1], state_full[1])

        def no_network(*args: object) -> None:
            raise AssertionError("the network ran for a stage-only stream")

        model.advance = no_network  # type: ignore[method-assign]
        model.encode_frames = no_network  # type: ignore[method-assign]
        low = qp[:1]
        alone = model(clip[:1], low)
        torch.testing.assert_close(alone, model.postfilter(clip[:1], low))
        y, state = model.step(clip[:1, :4], qp=low)
        assert state is None
        torch.testing.assert_close(y, model.postfilter(clip[:1, 0], low))
        stream = model.streamer(low)
        out = [stream.push(clip[:1, t]) for t in range(clip.shape[1])]
        out = [o for o in out if o is not None] + stream.flush()
    torch.testing.assert_close(torch.stack(out, dim=1), alone, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="dct_shrink"):
        VIG(dataclasses.replace(VARIANTS["small"], stage_only_qp=27.0))


def test_refuses_sizes_off_the_grid() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        VIG().step(torch.rand(1, 4, 1, 18, 24), qp=torch.tensor([30.0]))


def test_shipped_small_weights_are_listed_honestly_and_trained() -> None:
    import hashlib
    from importlib import resources

    from codecave.models import create_model
    from codecave.models.registry import create_model_entry, weights_manifest

    entry = weights_manifest()["vig_small"]
    blob = (resources.files("codecave") / "weights" / entry["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
    # no validation clip among the training clips; TGD first, then two fine-tuning stages
    assert not set(entry["validation"]["clips"]) & set(entry["training"]["data"]["clips"])
    assert [s["run"] for s in entry["training"]["stages"]] == ["vig_small_tgd", "vig_small", "vig_small_stage3"]
    assert {"ldp22", "ldp37", "crf35"} <= set(entry["validation"]["frame_qp"])
    model = create_model("vig")
    # the small network with the default's shrinkage stage grafted after it, then fitted there
    # alone; streams at QP 22 or below take the stage alone (chosen on training clips)
    assert model.config == dataclasses.replace(VARIANTS["small"], dct_shrink=1.0, stage_only_qp=22.0)
    assert {"settings": {"stage_only_qp": 22}} in entry["training"]["calibrations"]
    assert model.pass_through_qp == entry["pass_through_qp"]
    grafts = entry["training"]["grafts"]
    assert [g["tensors"] for g in grafts] == [["shrink.exponent", "shrink.log_scale"]] * len(grafts)
    assert grafts[0]["from"] == "pnp_vcve_fast"
    last = grafts[-1]
    if last["from"] in weights_manifest():
        if weights_manifest()[last["from"]]["sha256"] == last["from_sha256"]:  # the donor as it was grafted
            donor_model = create_model_entry(last["from"])
            torch.testing.assert_close(model.shrink.state_dict(), donor_model.shrink.state_dict())
    else:  # fitted (scripts/fit_shrinkage.py) on training clips only, its minutes recorded
        fit = last["fit"]
        assert fit["model"] == "vig" and fit["wall_minutes"] > 0
        assert not set(fit["clips"] + fit["check_clips"]) & set(entry["validation"]["clips"])
    assert model.fusion.weight.abs().sum() > 0  # trained: no longer the identity start
