"""A learned, differentiable stand-in for a standard codec: the neural-wrapping proxy.

Neural wrapping (Sony, CVPR 2025; ``../shared/papers/SPECS.md`` section 3.2.1) trains
its pre-processor through a neural video codec fitted to the real one: scale-space flow
(Agustsson et al., CVPR 2020) with a Ballé et al. (ICLR 2018) mean-scale hyperprior in
each of its three coders (intra, flow, residual), no autoregressive context. Only
likelihoods are computed (:mod:`codecave.layers.entropy`); nothing is arithmetic-coded.
Training-only: it is never shipped.

Layout (ours): the proxy works on the half-resolution 4:2:0 layout ``(B, T, 6, H/2, W/2)``
(:func:`codecave.grid.to_half_layout`), so its three stride-2 analysis convolutions reach
the SSF latent's 1/16 of the luma size, and the scale-space warp moves all planes
together (a chroma sample is displaced as the luma pixels it covers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codecave.layers.entropy import FactorizedPrior, bits, gaussian_likelihood, quantize
from codecave.layers.warp import displaced_grid

#: Channels of the half-resolution layout: four luma phases, U, V.
HALF_CHANNELS = 6
#: The luma size must be a multiple of this (analysis /16, hyper-analysis /4 more).
PROXY_MULTIPLE = 64


@dataclass(frozen=True)
class ProxyConfig:
    """Sizes of the proxy.

    Attributes:
        width: channels of the transforms' hidden layers (SSF: 128).
        latent: channels of each latent ``y`` and hyper-latent ``z`` (SSF: 192).
        levels: blurred slices of the scale-space volume beside the frame itself (SSF: 5).
        sigma0: Gaussian blur of the volume's slices, in half-layout samples (SSF: 1.5).
        kernel: convolution size of the transforms (SSF: 5).
    """

    width: int = 48
    latent: int = 64
    levels: int = 5
    sigma0: float = 1.5
    kernel: int = 5


def _conv(cin: int, cout: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2)


def _deconv(cin: int, cout: int, k: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, 2, k // 2, output_padding=1)


class HyperpriorCoder(nn.Module):
    """One SSF coder: analysis ``g_a`` (three stride-2 convolutions), synthesis ``g_s``
    (their mirror), hyper-analysis ``h_a`` and two hyper-synthesis heads (mean, scale),
    a factorised prior on ``z`` and a conditional Gaussian on ``y``.

    Args:
        cin: input channels; cout: output channels.
        cfg: sizes.
        side: latent channels concatenated to ``y_hat`` before synthesis (SSF's residual
            decoder also reads the flow latent).
    """

    def __init__(self, cin: int, cout: int, cfg: ProxyConfig, side: int = 0) -> None:
        super().__init__()
        n, m, k = cfg.width, cfg.latent, cfg.kernel
        self.g_a = nn.Sequential(_conv(cin, n, k, 2), nn.ReLU(), _conv(n, n, k, 2), nn.ReLU(), _conv(n, m, k, 2))
        self.g_s = nn.Sequential(_deconv(m + side, n, k), nn.ReLU(), _deconv(n, n, k), nn.ReLU(), _deconv(n, cout, k))
        self.h_a = nn.Sequential(_conv(m, n, 3, 1), nn.ReLU(), _conv(n, n, k, 2), nn.ReLU(), _conv(n, m, k, 2))
        self.h_mean = nn.Sequential(_deconv(m, n, k), nn.ReLU(), _deconv(n, n, k), nn.ReLU(), _conv(n, m, 3, 1))
        self.h_scale = nn.Sequential(_deconv(m, n, k), nn.ReLU(), _deconv(n, n, k), nn.ReLU(), _conv(n, m, 3, 1))
        self.prior = FactorizedPrior(m)

    def transforms(self) -> list[nn.Module]:
        """Analysis and synthesis (theta_g: phase 1 of the alignment)."""
        return [self.g_a, self.g_s]

    def entropy_model(self) -> list[nn.Module]:
        """Hyper-networks and the prior (theta_h: phase 2 of the alignment)."""
        return [self.h_a, self.h_mean, self.h_scale, self.prior]

    def encode(self, x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, cin, H, W)`` -> quantised latent ``(B, m, H/8, W/8)`` and its bits ``(B,)``.

        ``mode``: ``"noise"`` quantises ``y`` with uniform noise around zero (conventional
        training and phase 1), ``"ste"`` or ``"round"`` around the predicted mean.
        """
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat = quantize(z, "noise" if mode == "noise" else mode)
        mean, scale = self.h_mean(z_hat), F.softplus(self.h_scale(z_hat))
        y_hat = quantize(y, mode, None if mode == "noise" else mean)
        rate = bits(gaussian_likelihood(y_hat, mean, scale)).sum((1, 2, 3))
        rate = rate + bits(self.prior.likelihood(z_hat)).sum((1, 2, 3))
        return y_hat, rate

    def decode(self, y_hat: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """Synthesis of ``y_hat`` (with ``side`` latents concatenated): ``(B, cout, H, W)``."""
        return self.g_s(y_hat if side is None else torch.cat([y_hat, side], 1))


def gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``2 ceil(3 sigma) + 1`` taps."""
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c, r = x.shape[1], g.numel() // 2
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def scale_space_volume(x: torch.Tensor, levels: int, sigma0: float) -> torch.Tensor:
    """SSF's Gaussian volume of a reference: the frame, a blurred copy, then copies
    average-pooled ``2^l`` times (``l = 1..levels-1``), blurred and upsampled back.

    Args:
        x: ``(B, C, H, W)``, sides multiples of ``2^(levels-1)``.

    Returns:
        ``(B, C, levels + 1, H, W)``.
    """
    g = gaussian_kernel(sigma0, x.dtype, x.device)
    slices = [x, _blur(x, g)]
    small = slices[1]
    for level in range(1, levels):
        small = _blur(F.avg_pool2d(small, 2), g)
        slices.append(F.interpolate(small, scale_factor=2 ** level, mode="bilinear", align_corners=False))
    return torch.stack(slices, 2)


def scale_space_warp(volume: torch.Tensor, flow: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Sample the volume trilinearly at ``(x + flow_x, y + flow_y, scale)``, border padding.

    Args:
        volume: ``(B, C, D, H, W)`` from :func:`scale_space_volume`.
        flow: ``(B, 2, H, W)`` displacement in samples.
        scale: ``(B, 1, H, W)``: 0 = the frame itself, 1 = the blurriest slice (clamped).

    Returns:
        ``(B, C, H, W)``.
    """
    gx, gy = displaced_grid(flow)
    gz = scale[:, 0].clamp(0, 1) * 2 - 1
    grid = torch.stack([gx, gy, gz], -1).unsqueeze(1)  # (B, 1, H, W, 3)
    out = F.grid_sample(volume, grid.to(volume.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0]


class ScaleSpaceFlowProxy(nn.Module):
    """Scale-space-flow video codec over a group of pictures (first intra, then inter).

    Args:
        cfg: sizes (``small``: 48/64; the SSF paper: 128/192).

    Attributes:
        rate_alpha, rate_beta: the affine calibration ``R_M = alpha R_hyp + beta`` of its
            rate to the real codec's (paper eq. 3), fitted on the rates of whole GOPs.
            ``alpha`` is kept positive (stored as its logarithm: a proxy whose bits the
            calibration counted negatively would teach the pre-processor to spend more
            of them; measured with a free ``alpha`` fitted per frame: -0.83); ``beta`` is
            stored over ten so Adam moves it ten times as fast as the networks at one
            learning rate (SPECS 3.6 h: their own 1e-3 against 1e-4).
    """

    def __init__(self, cfg: ProxyConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ProxyConfig()
        self.intra = HyperpriorCoder(HALF_CHANNELS, HALF_CHANNELS, cfg)
        self.motion = HyperpriorCoder(2 * HALF_CHANNELS, 3, cfg)
        self.residual = HyperpriorCoder(HALF_CHANNELS, HALF_CHANNELS, cfg, side=cfg.latent)
        self.log_alpha = nn.Parameter(torch.tensor(0.0))
        self.beta_raw = nn.Parameter(torch.tensor(0.0))

    @property
    def rate_alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    @property
    def rate_beta(self) -> torch.Tensor:
        return 10 * self.beta_raw

    def coders(self) -> list[HyperpriorCoder]:
        return [self.intra, self.motion, self.residual]

    def transform_parameters(self) -> list[nn.Parameter]:
        """theta_g: analysis and synthesis of the three coders."""
        return [p for c in self.coders() for m in c.transforms() for p in m.parameters()]

    def entropy_parameters(self) -> list[nn.Parameter]:
        """theta_h: hyper-networks and priors of the three coders."""
        return [p for c in self.coders() for m in c.entropy_model() for p in m.parameters()]

    def calibration_parameters(self) -> list[nn.Parameter]:
        """``alpha`` and ``beta`` of the rate calibration."""
        return [self.log_alpha, self.beta_raw]

    def calibrate(self, rate_hyp: torch.Tensor) -> torch.Tensor:
        """The calibrated rate of GOPs: ``alpha R_hyp + beta`` of the rates ``(B, T)`` summed
        over each GOP's frames (paper eq. 3: a sequence's rate is the sum over its frames),
        ``(B,)`` in bits per luma pixel."""
        return self.rate_alpha * rate_hyp.sum(1) + self.rate_beta

    def forward(self, gop: torch.Tensor, mode: str = "ste") -> tuple[torch.Tensor, torch.Tensor]:
        """Code a group of pictures.

        Args:
            gop: ``(B, T, 6, H/2, W/2)`` half-layout frames in [0, 1]; the luma sides a
                multiple of :data:`PROXY_MULTIPLE`.
            mode: latent quantisation (:func:`~codecave.layers.entropy.quantize`).

        Returns:
            ``I_M`` ``(B, T, 6, H/2, W/2)`` and ``R_hyp`` ``(B, T)``: the hyperprior rate of
            each frame in bits per luma pixel.

        Raises:
            ValueError: the size is not a multiple of :data:`PROXY_MULTIPLE` luma samples.
        """
        t, h, w = gop.shape[1], gop.shape[-2], gop.shape[-1]
        if (2 * h) % PROXY_MULTIPLE or (2 * w) % PROXY_MULTIPLE:
            raise ValueError(f"proxy input {2 * w}x{2 * h} luma: sides must be multiples of {PROXY_MULTIPLE}")
        pixels = 4 * h * w
        y_hat, rate = self.intra.encode(gop[:, 0], mode)
        rec = self.intra.decode(y_hat)
        recs, rates = [rec], [rate / pixels]
        for k in range(1, t):
            ref, cur = rec.detach(), gop[:, k]
            m_hat, m_rate = self.motion.encode(torch.cat([cur, ref], 1), mode)
            motion = self.motion.decode(m_hat)
            pred = scale_space_warp(scale_space_volume(ref, self.cfg.levels, self.cfg.sigma0),
                                    motion[:, :2], motion[:, 2:3])
            r_hat, r_rate = self.residual.encode(cur - pred, mode)
            rec = pred + self.residual.decode(r_hat, m_hat)
            recs.append(rec)
            rates.append((m_rate + r_rate) / pixels)
        return torch.stack(recs, 1), torch.stack(rates, 1)


__all__ = ["HALF_CHANNELS", "PROXY_MULTIPLE", "HyperpriorCoder", "ProxyConfig", "ScaleSpaceFlowProxy",
           "gaussian_kernel", "scale_space_volume", "scale_space_warp"]
