"""VIG: valid information guidance, a fast recurrent enhancer (the compressed redundancy
filtering network).

Paper: "VIG: Valid Information Guidance for compressed video quality enhancement"
(arXiv, March 2023; ``../shared/papers/vig_2023.txt``); module proposal and gap
resolutions in ``../shared/papers/SPECS.md``, section 2.2.2.

Frame ``i`` is enhanced from itself, the next three frames and a hidden state carried
from frame ``i - 1`` (paper eqs. 1-12):

* pre-extraction ``P``: one 3x3 convolution per frame (``1 -> C0``);
* redundancy filtering ``R``: two temporal-spatial down-samplings (pixel-unshuffle by 2
  per slot, a 1x1x1 channel reduction and one 3x3x3 convolution: the "TF" layer of each
  block), a temporal down-sampling that collapses the five slots (4 frames + state), and
  two pixel-shuffle up-samplings with the skips of the current frame's slot;
* fusion ``F``: one 3x3 convolution, plus the input frame (global residual).

The output of the second up-sampling is both the enhanced frame's features and the
hidden state passed on. Most computation runs at a quarter of the resolution.

Colour: the Y plane only, as the paper trains and scores it (``(B, T, 1, H, W)`` luma in
[0, 1]); chroma is kept as decoded. ``H`` and ``W`` must be multiples of 4 (pad first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Frames the network looks ahead of the one it enhances (the paper's ``k = 3``).
FUTURE = 3
#: Slots the redundancy filtering module fuses: the current frame, three future ones, the state.
SLOTS = FUTURE + 2


@dataclass(frozen=True)
class VIGConfig:
    """Widths of the compressed redundancy filtering network.

    Attributes:
        c0: channels at full resolution (pre-extraction, hidden state, fusion input).
        c1: channels at half resolution.
        c2: channels at quarter resolution.
        negative_slope: of the leaky ReLUs.
    """

    c0: int = 32
    c1: int = 64
    c2: int = 64
    negative_slope: float = 0.1


#: ``small`` is SPECS' proposal (about 0.5 M parameters); ``paper`` doubles the widths,
#: which is what "1.74 MB" reads as when taken as millions of parameters (see :func:`count`).
VARIANTS = {"small": VIGConfig(), "paper": VIGConfig(c0=64, c1=128, c2=128)}


def _unshuffle_slots(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W) -> (B, 4C, T, H/2, W/2)``: pixel-unshuffle each time slot."""
    b, c, t, h, w = x.shape
    y = F.pixel_unshuffle(x.transpose(1, 2).reshape(b * t, c, h, w), 2)
    return y.reshape(b, t, 4 * c, h // 2, w // 2).transpose(1, 2)


class TemporalSpatialDown(nn.Module):
    """TSD: pixel-unshuffle by 2 per slot, a 1x1x1 reduction, then the TF layer (3x3x3)."""

    def __init__(self, c_in: int, c_out: int, slope: float) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(4 * c_in, c_out, 1)
        self.fuse = nn.Conv3d(c_out, c_out, 3, padding=1)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.reduce(_unshuffle_slots(x)), self.slope)
        return F.leaky_relu(self.fuse(x), self.slope)


class TemporalDown(nn.Module):
    """TD: collapse the slots with a ``(SLOTS, 1, 1)`` convolution, then a 3x3 one."""

    def __init__(self, c: int, slope: float) -> None:
        super().__init__()
        self.collapse = nn.Conv3d(c, c, (SLOTS, 1, 1))
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.collapse(x), self.slope).squeeze(2)
        return F.leaky_relu(self.conv(x), self.slope)


class SpatialUp(nn.Module):
    """SU: a 3x3 convolution to ``4 c_out`` channels, pixel-shuffle by 2."""

    def __init__(self, c_in: int, c_out: int, slope: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 4 * c_out, 3, padding=1)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.pixel_shuffle(self.conv(x), 2), self.slope)


class VIG(nn.Module):
    """The compressed redundancy filtering network of VIG (Y plane, recurrent).

    Call :meth:`step` for one frame, or the module on a whole clip.
    """

    domain = "y"

    def __init__(self, config: VIGConfig = VIGConfig()) -> None:
        super().__init__()
        c = config
        self.config = config
        self.pre = nn.Conv2d(1, c.c0, 3, padding=1)
        self.tsd1 = TemporalSpatialDown(c.c0, c.c1, c.negative_slope)
        self.tsd2 = TemporalSpatialDown(c.c1, c.c2, c.negative_slope)
        self.td = TemporalDown(c.c2, c.negative_slope)
        self.su1 = SpatialUp(c.c2, c.c1, c.negative_slope)
        self.su2 = SpatialUp(c.c1, c.c0, c.negative_slope)
        self.fusion = nn.Conv2d(c.c0, 1, 3, padding=1)
        nn.init.zeros_(self.fusion.weight)  # start at the identity: the output is the input
        nn.init.zeros_(self.fusion.bias)

    def initial_state(self, frame: torch.Tensor) -> torch.Tensor:
        """The hidden state before the first frame: zeros, ``(B, C0, H, W)``."""
        b, _, h, w = frame.shape
        return frame.new_zeros(b, self.config.c0, h, w)

    def step(self, window: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Enhance one frame.

        Args:
            window: ``(B, 4, 1, H, W)`` luma in [0, 1]: the frame, then the next three
                (repeat the last frame of the clip where there are fewer).
            state: the hidden state :meth:`step` returned for the previous frame
                (``(B, C0, H, W)``), or None for the first frame.

        Returns:
            ``(enhanced (B, 1, H, W), state)``.

        Raises:
            ValueError: ``H`` or ``W`` not a multiple of 4, or not four frames.
        """
        b, t, _, h, w = window.shape
        if t != FUTURE + 1 or h % 4 or w % 4:
            raise ValueError(f"VIG takes (B, {FUTURE + 1}, 1, H, W) with H, W multiples of 4; got {tuple(window.shape)}")
        if state is None:
            state = self.initial_state(window[:, 0])
        f0 = self.pre(window.reshape(b * t, 1, h, w)).reshape(b, t, -1, h, w)
        slots = torch.cat([f0, state[:, None]], dim=1).transpose(1, 2)  # (B, C0, SLOTS, H, W)
        tsd1 = self.tsd1(slots)
        tsd2 = self.tsd2(tsd1)
        td = self.td(tsd2)
        su1 = self.su1(td + tsd2[:, :, 0])
        hidden = self.su2(su1 + tsd1[:, :, 0])
        return self.fusion(hidden) + window[:, 0], hidden

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """Enhance a whole clip, ``(B, T, 1, H, W) -> (B, T, 1, H, W)``, frame by frame."""
        out, state = [], None
        for window in sliding_windows(clip):
            y, state = self.step(window, state)
            out.append(y)
        return torch.stack(out, dim=1)


def sliding_windows(clip: torch.Tensor) -> Iterator[torch.Tensor]:
    """Each frame with its three successors, ``(B, 4, 1, H, W)``; the last frame repeats at the end."""
    t = clip.shape[1]
    for i in range(t):
        idx = [min(i + k, t - 1) for k in range(FUTURE + 1)]
        yield clip[:, idx]


class VIGStream:
    """Run VIG over frames that arrive one at a time, with memory flat in the length:
    four frames and the hidden state are held, and each frame is computed once.

    Feed luma frames ``(B, 1, H, W)`` to :meth:`push`; it returns the enhanced frame
    ``FUTURE`` frames behind (or None while filling); :meth:`flush` returns the rest.
    The outputs equal ``model(clip)`` on the whole clip.
    """

    def __init__(self, model: VIG) -> None:
        self.model = model
        self.frames: list[torch.Tensor] = []
        self.state: torch.Tensor | None = None

    def _emit(self) -> torch.Tensor:
        window = self.frames[: FUTURE + 1]
        window += [self.frames[-1]] * (FUTURE + 1 - len(window))
        y, self.state = self.model.step(torch.stack(window, dim=1), self.state)
        self.frames.pop(0)
        return y

    def push(self, frame: torch.Tensor) -> torch.Tensor | None:
        self.frames.append(frame)
        return self._emit() if len(self.frames) == FUTURE + 1 else None

    def flush(self) -> list[torch.Tensor]:
        out = []
        while self.frames:
            out.append(self._emit())
        return out


def count(variant: str) -> int:
    """Parameters of a variant."""
    return sum(p.numel() for p in VIG(VARIANTS[variant]).parameters())


__all__ = ["FUTURE", "VARIANTS", "VIG", "VIGConfig", "VIGStream", "count", "sliding_windows"]
