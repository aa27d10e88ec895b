"""PnP-VCVE: shapes, gradients, ablations, registry, chunked and tiled inference."""

from __future__ import annotations

import pytest
import torch

from codecave.errors import ConfigError
from codecave.models import create_model, list_models
from codecave.models.pnp_vcve import PnPVCVE, PnPVCVEConfig, PnPVCVEFast


def random_priors(b: int, t: int, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    part = torch.randint(0, 4, (b, t, h // 4, w // 4), generator=g).repeat_interleave(4, -2).repeat_interleave(4, -1)
    return {
        "crf": torch.full((b,), 30.0),
        "qp": torch.full((b, t), 32.0),
        "frame_type": torch.randint(0, 3, (b, t), generator=g),
        "mv_past": torch.randn(b, t, 2, h, w, generator=g),
        "mv_future": torch.randn(b, t, 2, h, w, generator=g),
        "mv_valid": torch.rand(b, t, 2, h, w, generator=g) > 0.3,
        "partition": torch.nn.functional.one_hot(part, 4).permute(0, 1, 4, 2, 3).float(),
    }


@pytest.mark.parametrize("variant", ["small", "paper"])
def test_shapes_and_gradients(variant: str) -> None:
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant=variant).train()
    frames = torch.rand(2, 3, 3, 32, 48)
    priors = random_priors(2, 3, 32, 48)
    x_hat, x_caa = model(frames, priors, return_stages=True)
    assert x_hat.shape == frames.shape and x_caa.shape == frames.shape
    # Zero-initialised output layers: an untrained model returns its input.
    torch.testing.assert_close(x_hat, frames)
    (x_hat - frames.flip(-1)).abs().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["bae_out.weight"].abs().sum() > 0
    assert all(g is not None for g in grads.values())


def test_every_parameter_learns_after_two_steps() -> None:
    torch.manual_seed(0)
    model = PnPVCVE(PnPVCVEConfig(channels=8, caa_blocks=1, bae_blocks=2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    frames, priors = torch.rand(2, 3, 3, 16, 16), random_priors(2, 3, 16, 16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        loss = (model(frames, priors) - frames.flip(-1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


@pytest.mark.parametrize("override", [{"mv_align": False}, {"region_refine": False}, {"caa": False}])
def test_ablations_build_and_run(override: dict[str, bool]) -> None:
    model = create_model("pnp_vcve", weights=None, variant="small", **override)
    out = model(torch.rand(1, 3, 3, 20, 28), random_priors(1, 3, 20, 28))
    assert out.shape == (1, 3, 3, 20, 28)
    if override == {"caa": False}:
        assert all(m.n_experts == 1 for m in model._adapted())


def test_odd_sizes_are_padded_and_cropped_back() -> None:
    model = create_model("pnp_vcve", weights=None, variant="small")
    priors = random_priors(1, 2, 20, 24)
    priors = {k: v[..., :17, :23] if v.dim() > 2 else v for k, v in priors.items()}
    out = model(torch.rand(1, 2, 3, 17, 23), priors)
    assert out.shape == (1, 2, 3, 17, 23)


def test_slice_type_mode_changes_the_frame_conditioning() -> None:
    torch.manual_seed(3)
    model = create_model("pnp_vcve", weights=None, variant="small")
    torch.nn.init.normal_(model.bae_out.weight, std=0.1)
    frames, priors = torch.rand(1, 3, 3, 16, 16), random_priors(1, 3, 16, 16)
    with torch.no_grad():
        a = model(frames, priors)
        b = model(frames, priors | {"qp": torch.full((1, 3), float("nan"))})
    assert not torch.allclose(a, b)


def test_registry_errors_name_the_bad_value() -> None:
    assert "pnp_vcve" in list_models()
    with pytest.raises(ConfigError, match="nope"):
        create_model("nope", weights=None)
    with pytest.raises(ConfigError, match="huge"):
        create_model("pnp_vcve", weights=None, variant="huge")
    with pytest.raises(ConfigError, match="wings"):
        create_model("pnp_vcve", weights=None, wings=2)


def test_saved_weights_round_trip(tmp_path) -> None:
    from codecave.engine.checkpoint import save_weights

    model = create_model("pnp_vcve", weights=None, variant="small", mv_align=False)
    torch.nn.init.normal_(model.bae_out.weight)
    save_weights(model, tmp_path / "m.safetensors", {"config": model.describe()})
    back = create_model("pnp_vcve", weights=tmp_path / "m.safetensors")
    assert back.config.mv_align is False
    torch.testing.assert_close(back.bae_out.weight, model.bae_out.weight)


@pytest.mark.parametrize("variant", ["small", "fast"])
def test_a_weights_file_that_names_no_variant_loads_as_the_variant_it_fits(tmp_path, variant: str) -> None:
    from safetensors.torch import save_file

    model = create_model("pnp_vcve", weights=None, variant=variant)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    back = create_model("pnp_vcve", weights=tmp_path / "m.safetensors")
    assert back.variant == variant and back.fallback_variant is None and back.pass_through_qp is None
    save_file({"nothing.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="--variant"):
        create_model("pnp_vcve", weights=tmp_path / "other.safetensors")


def test_shipped_default_weights_load() -> None:
    model = create_model()
    assert not model.training
    # The default is the YUV model; RGB and other non-4:2:0 input falls back to small.
    assert isinstance(model, PnPVCVEFast) and model.variant == "fast" and model.fallback_variant == "small"
    assert model.pass_through_qp is not None
    small = create_model(variant="small")
    assert isinstance(small, PnPVCVE) and small.fallback_variant is None
    assert create_model(variant="fast").fallback_variant is None  # chosen explicitly: no fallback


def grid_clip(b: int, t: int, gh: int, gw: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Packed frames and grid priors (design section 3: one value per 4x4 block)."""
    g = torch.Generator().manual_seed(seed)
    part = torch.randint(0, 4, (b, t, gh, gw), generator=g)
    priors = {
        "crf": torch.full((b,), 30.0),
        "qp": torch.full((b, t), 32.0),
        "frame_type": torch.randint(0, 3, (b, t), generator=g),
        "mv_past": torch.randn(b, t, 2, gh, gw, generator=g) * 0.7,
        "mv_future": torch.randn(b, t, 2, gh, gw, generator=g) * 0.7,
        "mv_valid": torch.rand(b, t, 2, gh, gw, generator=g) > 0.3,
        "partition": torch.nn.functional.one_hot(part, 4).permute(0, 1, 4, 2, 3).float(),
    }
    return torch.rand(b, t, 24, gh, gw, generator=g), priors


def test_fast_variant_works_on_the_packed_grid() -> None:
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant="fast").train()
    assert model.domain == "yuv420" and create_model("pnp_vcve", weights=None, variant="small").domain == "rgb"
    frames, priors = grid_clip(2, 3, 8, 12)
    x_hat, x_caa = model(frames, priors, return_stages=True)
    assert x_hat.shape == frames.shape and x_caa.shape == frames.shape
    torch.testing.assert_close(x_hat, frames)  # identity at initialisation
    (x_hat - frames.flip(-1)).abs().mean().backward()
    grads = dict(model.named_parameters())
    for name in ("bae_out.weight", "caa_out.weight"):
        assert grads[name].grad is not None and grads[name].grad.abs().sum() > 0


def test_fast_targets_compute_only_the_frames_asked_for() -> None:
    """Enhancing frames 1..3 of 5 with the rest as context equals slicing the whole output."""
    torch.manual_seed(1)
    model = create_model("pnp_vcve", weights=None, variant="fast")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    frames, priors = grid_clip(1, 5, 8, 8, seed=2)
    with torch.no_grad():
        whole = model(frames, priors)
        part = model(frames, priors, targets=(1, 4))
    assert part.shape == (1, 3, 24, 8, 8)
    torch.testing.assert_close(part, whole[:, 1:4], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(whole, frames, atol=1e-3)


@pytest.mark.parametrize("ablation", [{"caa": False}, {"mv_align": False}, {"region_refine": False}])
def test_fast_ablations_build_and_run(ablation: dict[str, bool]) -> None:
    model = create_model("pnp_vcve", weights=None, variant="fast", **ablation)
    frames, priors = grid_clip(1, 3, 4, 4)
    assert model(frames, priors).shape == frames.shape


def test_fast_study_switches_initialisation_and_normalisation() -> None:
    """The learning-curve study's switches: centred/scaled inputs and a scaled residual keep an
    untrained model the identity; without the zero start it is not; a missing neighbour
    (first frame) is fed as zeros, not as a normalised black picture."""
    frames, priors = grid_clip(1, 3, 8, 8)
    for switches in ({"input_scale": 4.0}, {"residual_scale": 0.05}):
        model = create_model("pnp_vcve", weights=None, variant="fast", **switches)
        with torch.no_grad():
            torch.testing.assert_close(model(frames, priors), frames)
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant="fast", zero_init=False)
    with torch.no_grad():
        assert (model(frames, priors) - frames).abs().mean() > 1e-3
    torch.manual_seed(0)
    scaled = create_model("pnp_vcve", weights=None, variant="fast", zero_init=False, residual_scale=0.5)
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():  # the corrections scale: half of the unscaled model's at the CAA stage
        _, caa = model(frames, priors, return_stages=True)
        _, caa_half = scaled(frames, priors, return_stages=True)
    torch.testing.assert_close(caa_half - frames, 0.5 * (caa - frames), rtol=1e-4, atol=1e-6)
    seen: list[torch.Tensor] = []
    normed = create_model("pnp_vcve", weights=None, variant="fast", input_scale=4.0)
    normed.bae_fuse.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        normed(frames[:, :1], {k: v[:, :1] if v.dim() > 1 else v for k, v in priors.items()})
    past = seen[0][:, 24:48]  # the first frame has no past neighbour
    assert past.abs().max() == 0


def test_fast_dct_shrink_stage_reads_the_frame_qp_and_runs_in_float32() -> None:
    """``dct_shrink``: an untrained model gives the shrunk Y and the chroma as it came; the
    stage falls back to the sequence CRF where the frame QP is unknown, passes a picture
    with neither through, and is exact under bf16 autocast (bf16 cannot hold a code value)."""
    from codecave.grid import Y_CHANNELS, luma

    frames, priors = grid_clip(1, 3, 8, 8)
    frames = 0.5 + (frames - 0.5) * 0.05  # small detail, so thresholds of a few code values matter
    model = create_model("pnp_vcve", weights=None, variant="fast", dct_shrink=1.0)
    with torch.no_grad():
        out = model(frames, priors)
        expected = model.shrink(luma(frames).flatten(0, 1).unsqueeze(1), priors["qp"].flatten())
        torch.testing.assert_close(luma(out).flatten(0, 1).unsqueeze(1), expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(out[:, :, Y_CHANNELS.stop :], frames[:, :, Y_CHANNELS.stop :])
        assert (out - frames).abs().max() > 1e-3
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(frames, priors)
        torch.testing.assert_close(fast.float(), out, atol=1e-6, rtol=0)
        unknown = {**priors, "qp": torch.full_like(priors["qp"], float("nan"))}
        by_crf = model(frames, unknown)
        assert (by_crf - frames).abs().max() > 1e-3 and (by_crf - out).abs().max() > 1e-4  # CRF 30, not QP 32
        torch.testing.assert_close(model._shrunk(frames, {**unknown, "crf": torch.tensor([float("nan")])}),
                                   frames, atol=1e-5, rtol=0)


def test_fast_shrink_ip_qp_offset_raises_only_i_and_p_pictures_known_qp() -> None:
    """``shrink_ip_qp_offset``: I and P pictures are shrunk at their QP plus the offset, B
    pictures at theirs, pictures of unknown QP at the sequence CRF with no offset; 0 is the
    model as trained."""
    from codecave.grid import luma

    frames, priors = grid_clip(1, 4, 8, 8)
    frames = 0.5 + (frames - 0.5) * 0.05
    priors["frame_type"] = torch.tensor([[0, 1, 2, 1]])
    priors["qp"] = torch.tensor([[28.0, 30.0, 33.0, float("nan")]])
    plain = create_model("pnp_vcve", weights=None, variant="fast", dct_shrink=1.0)
    raised = create_model("pnp_vcve", weights=None, variant="fast", dct_shrink=1.0, shrink_ip_qp_offset=6.0)
    raised.load_state_dict(plain.state_dict())
    assert plain.shrink_ip_qp_offset == 0.0 and raised.shrink_ip_qp_offset == 6.0
    y = luma(frames).flatten(0, 1).unsqueeze(1)
    with torch.no_grad():
        got = luma(raised._shrunk(frames, priors)).flatten(0, 1).unsqueeze(1)
        want = plain.shrink(y, torch.tensor([34.0, 36.0, 33.0, 30.0]))  # I +6, P +6, B as is, unknown: CRF 30
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
        base = luma(plain._shrunk(frames, priors)).flatten(0, 1).unsqueeze(1)
        assert (got[:2] - base[:2]).abs().max() > 1e-4  # I and P shrunk harder than as trained
        torch.testing.assert_close(got[2:], base[2:])
    with pytest.raises((ValueError, ConfigError), match="dct_shrink"):
        create_model("pnp_vcve", weights=None, variant="fast", shrink_ip_qp_offset=6.0)


@pytest.mark.parametrize("batch", [1, 2])
def test_fast_inference_in_groups_and_strips_equals_one_pass(batch: int) -> None:
    """Outside training CAA and BAE run over groups of frames and the luma branch over strips
    of rows (bounded memory): the same output as one pass with gradients on."""
    torch.manual_seed(3)
    model = create_model("pnp_vcve", weights=None, variant="fast", dct_shrink=1.0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    frames, priors = grid_clip(batch, 5, 10, 12, seed=4)
    one_pass = model(frames, priors, targets=(1, 4)).detach()
    model.pixel_chunk, model.luma_strip = 16 * 10 * 12, 1  # one frame per group, 16-row strips
    with torch.no_grad():
        torch.testing.assert_close(model(frames, priors, targets=(1, 4)), one_pass, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(one_pass, frames[:, 1:4], atol=1e-3)


def test_fast_layers_that_read_pixels_stay_float32_under_bf16_autocast() -> None:
    """The default runs under bf16 autocast (``inference_precision``); outside training the
    first CAA layer and the luma branch's first layer give float32 (bf16 cannot carry one code
    value) and the layers after them bf16; in training every layer runs under the autocast,
    as the shipped weights were trained."""
    model = create_model("pnp_vcve", weights=None, variant="fast")
    assert model.inference_precision == "bf16"
    seen: dict[str, torch.dtype] = {}
    for name, layer in (("caa_in", model.caa_in), ("pixel0", model.pixel[0]), ("pixel2", model.pixel[2]),
                        ("caa_body", model.caa_body[0])):
        layer.register_forward_hook(lambda m, args, out, name=name: None if name in seen else
                                    seen.update({name: out.dtype}))
    frames, priors = grid_clip(1, 3, 8, 8)
    for train, first in ((False, torch.float32), (True, torch.bfloat16)):
        seen.clear()
        with torch.set_grad_enabled(train), torch.autocast("cpu", dtype=torch.bfloat16):
            model(frames, priors)
        assert (seen["caa_in"], seen["pixel0"]) == (first, first), (train, seen)
        assert seen["pixel2"] == seen["caa_body"] == torch.bfloat16
