"""Neural wrapping: a pre-processor before a standard encoder and a post-processor after
its decoder, trained end to end through a learned codec proxy.

Paper: "Perceptual Video Compression with Neural Wrapping", CVPR 2025 (Sony);
``../shared/papers/neural_wrapping_cvpr2025.txt``, notes in ``SPECS.md`` section 3.
At inference the proxy is gone: ``P -> real encoder -> standard bitstream -> real
decoder -> O``. ``codecave wrap encode`` runs ``P`` and the encoder; ``codecave enhance
--model neural_wrapper`` runs ``O`` on the decoded file.

Layout (ours; the paper's networks are in its supplement, which we do not have): both
networks are residual CNNs on the packed 4x4 grid of the YUV 4:2:0 planes,
``(B, T, 24, H/4, W/4)`` (design section 3), frame by frame (``P`` must be: training is
open-loop). The paper's networks run in YUV too. The codec proxy
(:class:`~codecave.models.codec_proxy.ScaleSpaceFlowProxy`) is a submodule during
training only; shipped weights hold ``pre`` and ``post``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from codecave.grid import PACKED_CHANNELS
from codecave.models.codec_proxy import ProxyConfig, ScaleSpaceFlowProxy


@dataclass(frozen=True)
class WrapperConfig:
    """Sizes of a wrapper pair.

    Attributes:
        width: channels of both networks' hidden layers.
        pre_blocks: residual blocks of the pre-processor ``P``.
        post_blocks: residual blocks of the post-processor ``O``.
        with_proxy: build the training-only codec proxy as ``proxy`` (training recipes
            set it; shipped weights leave it out).
        proxy_width, proxy_latent: its sizes (:class:`~codecave.models.codec_proxy.ProxyConfig`).
    """

    width: int = 32
    pre_blocks: int = 4
    post_blocks: int = 8
    with_proxy: bool = False
    proxy_width: int = 48
    proxy_latent: int = 64

    def proxy_config(self) -> ProxyConfig:
        """The proxy's sizes."""
        return ProxyConfig(width=self.proxy_width, latent=self.proxy_latent)


#: ``small``: SPECS 3.7 (C = 32, P 4 blocks, O 8; proxy 48/64). ``paper``: our wider
#: reading (the supplement's sizes are unknown to us), with the SSF paper's proxy sizes.
VARIANTS = {
    "small": WrapperConfig(),
    "paper": WrapperConfig(width=64, pre_blocks=8, post_blocks=16, proxy_width=128, proxy_latent=192),
}


class ResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 plus the input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class WrapperCNN(nn.Module):
    """A residual CNN on packed 4:2:0 frames: ``x + tail(blocks(head(x)))``.

    The tail starts at zero, so an untrained network is the identity (ours: the
    wrapped codec starts as the plain codec).

    Args:
        width: hidden channels; blocks: residual blocks.
    """

    def __init__(self, width: int, blocks: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(PACKED_CHANNELS, width, 3, 1, 1)
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.tail = nn.Conv2d(width, PACKED_CHANNELS, 3, 1, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, T, 24, h, w)`` or ``(N, 24, h, w)`` in [0, 1]; same shape back (not clamped)."""
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        return (flat + self.tail(self.blocks(torch.relu(self.head(flat))))).reshape(*lead, *x.shape[-3:])


class NeuralWrapper(nn.Module):
    """Pre-processor ``pre`` and post-processor ``post`` for one target codec.

    Args:
        config: sizes.
        variant: the variant's name (for reports).

    Attributes:
        domain: ``"yuv420"``: packed 4:2:0 frames ``(B, T, 24, H/4, W/4)`` in [0, 1].
        temporal_radius: 0: both networks work frame by frame.
    """

    domain = "yuv420"
    temporal_radius = 0

    def __init__(self, config: WrapperConfig | None = None, variant: str = "small") -> None:
        super().__init__()
        self.config = config = config or WrapperConfig()
        self.variant = variant
        self.pre = WrapperCNN(config.width, config.pre_blocks)
        self.post = WrapperCNN(config.width, config.post_blocks)
        self.proxy = ScaleSpaceFlowProxy(config.proxy_config()) if config.with_proxy else None

    def describe(self) -> dict[str, object]:
        """Architecture settings, for checkpoints and reports."""
        return asdict(self.config)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``P``: source frames ``(B, T, 24, h, w)`` -> frames for the encoder, same shape
        (clamp and round to the codec's 8 bits before encoding)."""
        return self.pre(frames)

    def forward(self, frames: torch.Tensor, priors: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``O``: decoded frames ``(B, T, 24, h, w)`` -> restored frames, same shape.

        ``priors`` are accepted for the enhancement engine's call and not used (the paper
        takes nothing from the bitstream at inference).
        """
        return self.post(frames)

    def wrapper_state(self) -> dict[str, torch.Tensor]:
        """The shipped tensors: ``pre.*`` and ``post.*`` (never the proxy)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("proxy.")}


def count(variant: str = "small") -> int:
    """Parameters of the shipped pair (``pre`` and ``post``) of ``variant``."""
    return sum(p.numel() for p in NeuralWrapper(VARIANTS[variant]).parameters())


__all__ = ["VARIANTS", "NeuralWrapper", "ResidualBlock", "WrapperCNN", "WrapperConfig", "count"]
