"""Neural wrapping's networks and its codec proxy (SPECS 3.2.1 and 3.6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codecave.grid import from_half_layout, to_half_layout
from codecave.layers.entropy import FactorizedPrior, gaussian_likelihood, quantize
from codecave.models import create_model
from codecave.models.codec_proxy import ProxyConfig, ScaleSpaceFlowProxy, scale_space_volume, scale_space_warp
from codecave.models.neural_wrapper import NeuralWrapper, WrapperConfig


def test_half_layout_is_exact() -> None:
    x = torch.rand(2, 3, 24, 4, 6)
    h = to_half_layout(x)
    assert h.shape == (2, 3, 6, 8, 12)
    assert torch.equal(from_half_layout(h), x)


def test_untrained_wrapper_is_the_identity_and_ships_without_proxy() -> None:
    model = create_model("neural_wrapper", weights=None, with_proxy=True)
    x = torch.rand(1, 2, 24, 8, 8)
    assert torch.equal(model.preprocess(x), x) and torch.equal(model(x), x)
    assert model.proxy is not None
    shipped = model.wrapper_state()
    assert shipped and not any(k.startswith("proxy.") for k in shipped)
    plain = NeuralWrapper(WrapperConfig())
    assert plain.proxy is None and set(plain.state_dict()) == set(shipped)


def test_scale_space_warp_with_zero_flow_and_scale_returns_the_reference() -> None:
    ref = torch.rand(2, 6, 32, 48)
    volume = scale_space_volume(ref, levels=5, sigma0=1.5)
    assert volume.shape == (2, 6, 6, 32, 48)
    out = scale_space_warp(volume, torch.zeros(2, 2, 32, 48), torch.zeros(2, 1, 32, 48))
    assert torch.allclose(out, ref, atol=1e-4)  # float rounding of the sampling grid
    blurred = scale_space_warp(volume, torch.zeros(2, 2, 32, 48), torch.ones(2, 1, 32, 48))
    assert blurred.std() < ref.std()  # the last slice is the blurriest


def test_likelihoods_are_distributions() -> None:
    """Over all integers, the bin masses of both entropy models sum to one."""
    values = torch.arange(-3000, 3001, dtype=torch.float32).view(1, 1, -1, 1)
    mass = gaussian_likelihood(values + 0.3, torch.full_like(values, 0.3), torch.full_like(values, 2.5))
    assert abs(float(mass.sum()) - 1) < 1e-4
    prior = FactorizedPrior(1)
    assert abs(float(prior.likelihood(values).detach().sum()) - 1) < 1e-3
    y = torch.tensor([0.2, 1.7])
    assert torch.equal(quantize(y, "round", torch.tensor([0.5, 0.5])), torch.tensor([0.5, 1.5]))


def test_proxy_rate_is_differentiable_and_falls_when_the_input_is_smoothed() -> None:
    """The rate estimate has a finite, non-zero gradient with respect to the frames, and a
    smoothed GOP costs fewer bits. The proxy is untrained, so the input's contrast is raised
    (x30) until its random analysis transforms' latents leave the zero bin."""
    for seed in range(3):
        torch.manual_seed(seed)
        proxy = ScaleSpaceFlowProxy(ProxyConfig(width=16, latent=16))
        x = (30 * torch.rand(2, 2, 6, 32, 32, generator=torch.Generator().manual_seed(seed))).requires_grad_()
        _, rate = proxy(x, "ste")
        (grad,) = torch.autograd.grad(rate.sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        assert (rate > 0).all() and torch.isfinite(rate).all()
        smooth = F.avg_pool2d(x.detach().flatten(0, 2), 5, 1, 2, count_include_pad=False).reshape(x.shape)
        with torch.no_grad():
            _, rate_smooth = proxy(smooth, "ste")
        assert float(rate_smooth.sum()) < 0.97 * float(rate.sum())
