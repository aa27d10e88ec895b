"""Entropy models of learned compression: likelihoods only, no arithmetic coder.

Written here because CompressAI cannot be installed beside our PyTorch (it imports
torchvision). Two models, as in Ballé et al., "Variational image compression with a
scale hyperprior" (ICLR 2018):

* :class:`FactorizedPrior`: a learned, non-parametric density per channel for the
  hyper-latent ``z`` (their appendix 6.1, filters (3, 3, 3)).
* :func:`gaussian_likelihood`: the conditional Gaussian of the latent ``y`` given the
  hyper-decoder's mean and scale, integrated over the unit quantisation bin.

Rates are ``-log2`` of the likelihoods, in bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Smallest likelihood a bin may have (caps one symbol at about 30 bits).
LIKELIHOOD_BOUND = 1e-9
#: Smallest Gaussian scale (CompressAI's ``SCALES_MIN``).
SCALE_BOUND = 0.11


def quantize(y: torch.Tensor, mode: str, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Quantise a latent as training or coding does.

    Args:
        y: latent, any shape.
        mode: ``"noise"`` (additive uniform noise in [-0.5, 0.5), the differentiable
            stand-in of training), ``"ste"`` (``round(y - mean) + mean`` forward, identity
            gradient) or ``"round"`` (the same without gradient).
        mean: the conditional mean (zero when None).

    Raises:
        ValueError: an unknown mode.
    """
    if mode == "noise":
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    m = torch.zeros_like(y) if mean is None else mean
    if mode == "ste":
        return y + (torch.round(y - m) + m - y).detach()
    if mode == "round":
        return torch.round(y - m) + m
    raise ValueError(f"quantize mode {mode!r}: use noise, ste or round")


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """``-log2`` of likelihoods, element-wise (bits)."""
    return -torch.log2(likelihood)


def gaussian_likelihood(y_hat: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Probability mass of the unit bin around ``y_hat`` under ``N(mean, scale)``.

    Args:
        y_hat: quantised latent ``(B, C, h, w)``.
        mean, scale: the hyper-decoder's outputs, same shape; scales are bounded below by
            :data:`SCALE_BOUND`.

    Returns:
        Likelihoods, same shape, bounded below by :data:`LIKELIHOOD_BOUND`.
    """
    s = scale.clamp_min(SCALE_BOUND)
    v = (y_hat - mean).abs()  # the lower tail is the accurate one
    upper = 0.5 * torch.erfc(-(0.5 - v) / (s * math.sqrt(2)))
    lower = 0.5 * torch.erfc(-(-0.5 - v) / (s * math.sqrt(2)))
    return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


class FactorizedPrior(nn.Module):
    """Ballé et al.'s fully factorised density of a hyper-latent, one per channel.

    The cumulative ``c(x)`` is a small monotone network (softplus-positive matrices,
    tanh gates); the likelihood of the bin around ``z`` is ``c(z + 1/2) - c(z - 1/2)``.

    Args:
        channels: channels of ``z``.
        filters: hidden widths of the density network (the paper's (3, 3, 3)).
        init_scale: spread of the initial density.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(widths) - 1):
            init = math.log(math.expm1(1 / scale / widths[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[k + 1], widths[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[k + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(C, 1, N)`` -> logits of the cumulative, same shape."""
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x

    def likelihood(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Likelihood of each element of ``z_hat`` ``(B, C, h, w)``, same shape, bounded below."""
        b, c, h, w = z_hat.shape
        x = z_hat.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(x - 0.5)
        upper = self._logits_cumulative(x + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the accurate tail
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3).clamp_min(LIKELIHOOD_BOUND)


__all__ = ["LIKELIHOOD_BOUND", "SCALE_BOUND", "FactorizedPrior", "bits", "gaussian_likelihood", "quantize"]
