"""PnP-VCVE: shapes, gradients, ablations, registry, chunked and tiled inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codecave.errors import ConfigError
from codecave.models import create_model, list_models
from codecave.models.pnp_vcve import PnPVCVE, PnPVCVEConfig


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
    model = create_model("pnp_vcve", weights=None, **override)
    out = model(torch.rand(1, 3, 3, 20, 28), random_priors(1, 3, 20, 28))
    assert out.shape == (1, 3, 3, 20, 28)
    if override == {"caa": False}:
        assert all(m.n_experts == 1 for m in model._adapted())


def test_odd_sizes_are_padded_and_cropped_back() -> None:
    model = create_model("pnp_vcve", weights=None)
    priors = random_priors(1, 2, 20, 24)
    priors = {k: v[..., :17, :23] if v.dim() > 2 else v for k, v in priors.items()}
    out = model(torch.rand(1, 2, 3, 17, 23), priors)
    assert out.shape == (1, 2, 3, 17, 23)


def test_slice_type_mode_changes_the_frame_conditioning() -> None:
    torch.manual_seed(3)
    model = create_model("pnp_vcve", weights=None)
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

    model = create_model("pnp_vcve", weights=None, mv_align=False)
    torch.nn.init.normal_(model.bae_out.weight)
    save_weights(model, tmp_path / "m.safetensors", {"config": model.describe()})
    back = create_model("pnp_vcve", weights=tmp_path / "m.safetensors")
    assert back.config.mv_align is False
    torch.testing.assert_close(back.bae_out.weight, model.bae_out.weight)


def test_shipped_default_weights_load() -> None:
    model = create_model()
    assert not model.training
    assert isinstance(model, PnPVCVE)
