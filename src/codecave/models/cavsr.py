"""CAVSR: compression-aware 4x video super-resolution.

Paper: Wang et al., "Compression-Aware Video Super-Resolution", CVPR 2023
(``../shared/papers/cavsr_cvpr2023.txt``); the official code's layout and our
resolutions of the paper's gaps are in ``../shared/papers/SPECS.md``, section 4.

* **Compression encoder** (:class:`CompressionEncoder`, paper 3.2): a decoded
  low-resolution frame through six 3x3 convolutions (two of them stride 2) plus a
  learned embedding of its frame type (I/P/B) gives a spatial compression
  representation; a small ranker head on its global mean scores how strongly the frame
  was compressed. It is trained alone with the pairwise margin ranking loss (eq. 1;
  :func:`ranking_loss`) on pairs that differ in CRF or in frame type, then frozen.
* **Compression-aware modulation** (CAM, eq. 2): ``gamma * F + beta`` with ``gamma``
  and ``beta`` computed from the representation, before each convolution of the
  feature extraction's residual blocks (CAMRB). The official code's block stack
  returns ``input + input``, discarding the modulated result; here the stack returns
  its blocks' output, as the paper intends.
* **Bidirectional recurrent backbone** (BasicVSR-style, 3.3): a backward then a forward
  sweep of residual-block trunks over the modulated features.
* **Meta-assisted alignment** (3.4): the hidden state is warped by the decoder's motion
  vectors, refined by a small offset network whose offsets are gated by the magnitude of
  the motion-compensated residual ``x_t - warp(x_{t-1}, mv)`` (``sigmoid(sum |R|)``).
* **Meta-assisted propagation** (eq. 3): the state a B-frame hands on is averaged with
  the aligned previous state (``alpha = 0.5``).
* Pixel-shuffle up-sampler (two 2x steps).

Frames: ``(B, T, 3, h, w)`` RGB in [0, 1] at low resolution (the paper works in RGB and
scores Y of BT.601); output ``(B, T, 3, 4h, 4w)``. Priors (design section 3, dense, at
the input's resolution): ``frame_type``, ``mv_past``, ``mv_future``, ``mv_valid``.

Deviations, all named in ``describe()`` through the config: the residual is computed
from the decoded frames along the bitstream's vectors (the official code's choice)
rather than read from the bitstream; ``small`` and ``fast`` add a bicubic skip to the
output (SPECS 4.6 i) and share one CAMRB stack between both directions (4.6 d); ``fast``
pixel-shuffles its RGB output from half resolution (no full-resolution layer); missing
vectors (intra blocks, I-frames, the sequence's ends) are zero and left to the refinement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codecave.layers.warp import flow_warp

#: Frame types of design section 3, the ranking's compression order (more compression, larger).
FRAME_TYPES = 3
#: Alignment modes (SPECS 4.7, claim 3).
ALIGNMENTS = ("refined", "mv", "none")
#: Gates of the refinement offsets (SPECS 4.6 g).
GATES = ("sigmoid", "tanh")


@dataclass(frozen=True)
class CAVSRConfig:
    """Architecture of CAVSR.

    Attributes:
        channels: feature channels of the backbone (paper 64).
        encoder_width: ``nf`` of the compression encoder; its representation has
            ``4 * nf`` channels at a quarter of the input size (paper code 32).
        cam_blocks: compression-aware residual blocks (CAMRB) per stack (paper 5).
        shared_cam: one CAMRB stack for both directions (``small``) or one each (``paper``).
        blocks: residual blocks of each direction's trunk (paper 25).
        cam: compression-aware modulation; False drops the encoder's influence (the
            CAMRBs become plain residual blocks), the ablation of paper Table 2.
        alignment: ``refined`` (decoder vectors plus gated learned offsets, the paper),
            ``mv`` (decoder vectors only) or ``none`` (the state is not moved).
        momentum: the B-frame momentum ``alpha`` of eq. 3; 1 turns it off.
        gate: ``sigmoid`` (the paper's ``sigmoid(sum |R|)``, in [0.5, 1)) or ``tanh``
            (``tanh(sum |R| / 2)``, in [0, 1)).
        bicubic_skip: add bicubic up-sampling of the input to the output (our deviation
            for fast convergence on CPU; absent in the paper and its code).
        scale: up-sampling factor (4; a power of two).
        hr_channels: channels of the up-sampler's layers after its last ``hr_steps`` x2
            steps (the paper: the same as ``channels``); ``small`` halves them in its
            full-resolution layers, which halves its cost per frame
            (``benchmarks/cavsr_cost.py``). With ``shuffle_out`` the last step gives the
            output's 3 channels, so ``hr_channels`` acts only with ``hr_steps`` >= 2.
        hr_steps: how many of the up-sampler's x2 steps, counted from the last, already
            give ``hr_channels`` (1: only the full-resolution layers; 2 at scale 4: the
            half-resolution layers too, the ``fast`` variant).
        shuffle_out: the last x2 step's convolution gives the RGB output itself, pixel-shuffled
            (ESPCN-style), with no convolution at full resolution; the ``fast`` variant's way
            to the issue's 2 frames/s (profiled: the up-sampler's full-resolution layers and its
            half-resolution convolution were about a third of ``small``'s time).
        negative_slope: of the leaky ReLUs.
    """

    channels: int = 32
    encoder_width: int = 16
    cam_blocks: int = 2
    shared_cam: bool = True
    blocks: int = 7
    cam: bool = True
    alignment: str = "refined"
    momentum: float = 0.5
    gate: str = "sigmoid"
    bicubic_skip: bool = True
    scale: int = 4
    hr_channels: int = 16
    hr_steps: int = 1
    shuffle_out: bool = False
    negative_slope: float = 0.1

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment {self.alignment!r}: choose one of {', '.join(ALIGNMENTS)}")
        if self.gate not in GATES:
            raise ValueError(f"gate {self.gate!r}: choose one of {', '.join(GATES)}")
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise ValueError(f"scale {self.scale}: use a power of two (4 is the paper's)")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum {self.momentum}: use (0, 1] (1 = off)")
        if not 1 <= self.hr_steps <= self.scale.bit_length() - 1:
            raise ValueError(f"hr_steps {self.hr_steps}: use 1 to {self.scale.bit_length() - 1} at scale {self.scale}")


#: ``small`` is SPECS 4.7's CPU variant (about 0.6 M parameters), ``fast`` a faster cut of it
#: (0.48 M; ours, for the issue's speed target); ``paper`` the published
#: sizes (5 CAMRBs per direction, 25 residual blocks, 64 channels; 8.9 M in the paper).
VARIANTS = {
    "small": CAVSRConfig(),
    # ``fast``: ``small`` cut to the 2 frames/s (profiled with torch.profiler, 4x of
    # 320x180 in bf16 on two cores): one CAM block instead of two (their 1x1 convolutions on
    # every frame were about a seventh of the time), 4 residual blocks per trunk instead of 7,
    # 16 channels from the first x2 step on and the RGB output pixel-shuffled from half
    # resolution (the full-resolution convolutions and the half-resolution one were about a
    # third of the time).
    "fast": CAVSRConfig(cam_blocks=1, blocks=4, hr_steps=2, shuffle_out=True),
    "paper": CAVSRConfig(channels=64, encoder_width=32, cam_blocks=5, shared_cam=False, blocks=25,
                         bicubic_skip=False, hr_channels=64),
}


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1)


class CompressionEncoder(nn.Module):
    """The compression encoder and its ranker head (paper 3.2; SPECS 4.2.1).

    Args:
        width: ``nf``; the representation has ``4 * nf`` channels.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        c = (3, width, width, 2 * width, 2 * width, 4 * width, 4 * width)
        strides = (1, 1, 2, 1, 2, 1)
        layers: list[nn.Module] = []
        for i, s in enumerate(strides):
            layers += [_conv(c[i], c[i + 1], s), nn.BatchNorm2d(c[i + 1]), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        self.frame_type = nn.Embedding(FRAME_TYPES, c[-1])
        self.ranker = nn.Sequential(nn.LeakyReLU(0.1), nn.Linear(c[-1], 2 * width), nn.LeakyReLU(0.1),
                                    nn.Linear(2 * width, width), nn.LeakyReLU(0.1), nn.Linear(width, 1))
        #: Channels of the representation.
        self.channels = c[-1]

    def features(self, frames: torch.Tensor, frame_type: torch.Tensor) -> torch.Tensor:
        """The representation at a quarter of the size.

        Args:
            frames: ``(N, 3, h, w)`` decoded frames in [0, 1].
            frame_type: ``(N,)`` int64, 0 = I, 1 = P, 2 = B.

        Returns:
            ``(N, 4 nf, ceil(h/4), ceil(w/4))``.
        """
        return self.body(frames) + self.frame_type(frame_type.clamp(0, FRAME_TYPES - 1))[:, :, None, None]

    def forward(self, frames: torch.Tensor, frame_type: torch.Tensor) -> torch.Tensor:
        """The spatial representation, nearest-upsampled to the input size: ``(N, 4 nf, h, w)``."""
        return F.interpolate(self.features(frames, frame_type), size=frames.shape[-2:], mode="nearest")

    def score(self, frames: torch.Tensor, frame_type: torch.Tensor) -> torch.Tensor:
        """The ranker's compression score ``(N,)``: larger means more compressed (eq. 1)."""
        return self.ranker(self.features(frames, frame_type).mean(dim=(-2, -1)))[:, 0]


def ranking_loss(score_i: torch.Tensor, score_j: torch.Tensor, order: torch.Tensor, margin: float = 0.5
                 ) -> torch.Tensor:
    """Pairwise margin ranking loss of paper eq. 1: ``max(0, kappa (s_i - s_j) + margin)``.

    Args:
        score_i, score_j: ``(N,)`` scores of the two frames of each pair.
        order: ``(N,)`` +1 where frame ``i`` is the more compressed one (higher CRF, or I < P < B
            at the same CRF), -1 where ``j`` is (so ``kappa = -order``).
        margin: ``xi`` (0.5 in the paper).

    Returns:
        The mean loss (a scalar).
    """
    return F.margin_ranking_loss(score_i, score_j, order.to(score_i.dtype), margin=margin)


class CAM(nn.Module):
    """Compression-aware modulation, eq. 2: ``gamma * F + beta``, both from the representation
    by ``conv1x1 -> LReLU(0.01) -> conv1x1`` (the official code's SFT layer)."""

    def __init__(self, rep: int, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Sequential(nn.Conv2d(rep, channels, 1), nn.LeakyReLU(0.01), nn.Conv2d(channels, channels, 1))
        self.beta = nn.Sequential(nn.Conv2d(rep, channels, 1), nn.LeakyReLU(0.01), nn.Conv2d(channels, channels, 1))

    def forward(self, feat: torch.Tensor, rep: torch.Tensor) -> torch.Tensor:
        return self.gamma(rep) * feat + self.beta(rep)


class CAMResidualBlock(nn.Module):
    """``F + conv(LReLU(CAM2(conv(LReLU(CAM1(F))))))`` (SPECS 4.2.2); with ``cam=False`` the
    CAMs are left out (a plain residual block)."""

    def __init__(self, rep: int, channels: int, cam: bool, slope: float) -> None:
        super().__init__()
        self.cam1 = CAM(rep, channels) if cam else None
        self.cam2 = CAM(rep, channels) if cam else None
        self.conv1 = _conv(channels, channels)
        self.conv2 = _conv(channels, channels)
        self.slope = slope

    def forward(self, feat: torch.Tensor, rep: torch.Tensor | None) -> torch.Tensor:
        x = feat if self.cam1 is None else self.cam1(feat, rep)
        x = self.conv1(F.leaky_relu(x, self.slope))
        x = x if self.cam2 is None else self.cam2(x, rep)
        return feat + self.conv2(F.leaky_relu(x, self.slope))


class CAMStack(nn.Module):
    """The feature extraction's CAMRBs, applied in turn; returns the last block's output
    (the official code returns ``input + input`` here, a bug; SPECS 4.2.2)."""

    def __init__(self, rep: int, channels: int, count: int, cam: bool, slope: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CAMResidualBlock(rep, channels, cam, slope) for _ in range(count))

    def forward(self, feat: torch.Tensor, rep: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            feat = block(feat, rep)
        return feat


class ResidualBlock(nn.Module):
    """``x + conv(ReLU(conv(x)))`` without normalisation (BasicVSR's trunk block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels)
        self.conv2 = _conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class Trunk(nn.Module):
    """One direction's propagation trunk: ``conv -> LReLU -> residual blocks``."""

    def __init__(self, c_in: int, channels: int, blocks: int, slope: float) -> None:
        super().__init__()
        self.head = _conv(c_in, channels)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.leaky_relu(self.head(x), self.slope))


class MetaAlignment(nn.Module):
    """Meta-assisted alignment (paper 3.4, SPECS 4.2.4): the state is warped by the decoder's
    vectors plus learned offsets gated by the residual's magnitude.

    ``g = conv-lrelu-conv-lrelu-conv(F~_t)``, ``delta = conv-lrelu-conv-lrelu-conv(cat(warp(h, M), g))``,
    ``M^ = M + A * delta`` with ``A = sigmoid(sum_c |R_t|)``; the last offset convolution
    starts at zero, so an untrained refinement is plain vector warping.
    """

    def __init__(self, channels: int, gate: str, slope: float) -> None:
        super().__init__()
        c = channels
        self.guide = nn.Sequential(_conv(c, c), nn.LeakyReLU(slope), _conv(c, c), nn.LeakyReLU(slope), _conv(c, c))
        self.offset = nn.Sequential(_conv(2 * c, c), nn.LeakyReLU(slope), _conv(c, c), nn.LeakyReLU(slope),
                                    _conv(c, 2))
        nn.init.zeros_(self.offset[-1].weight)
        nn.init.zeros_(self.offset[-1].bias)
        self.gate = gate

    def attention(self, residual: torch.Tensor) -> torch.Tensor:
        """``(N, 1, h, w)`` gate from the residual ``(N, 3, h, w)``."""
        energy = residual.abs().sum(dim=1, keepdim=True)
        return torch.sigmoid(energy) if self.gate == "sigmoid" else torch.tanh(energy / 2)

    def forward(self, state: torch.Tensor, feat: torch.Tensor, mv: torch.Tensor, residual: torch.Tensor
                ) -> torch.Tensor:
        """Align ``state (N, C, h, w)`` to the current frame.

        Args:
            state: the neighbour's hidden state.
            feat: the current frame's modulated features ``(N, C, h, w)``.
            mv: ``(N, 2, h, w)`` decoder vectors toward the neighbour, in pixels (0 where none).
            residual: ``(N, 3, h, w)`` motion-compensated residual of the current frame.
        """
        warped = flow_warp(state, mv)
        delta = self.offset(torch.cat([warped, self.guide(feat)], dim=1))
        return flow_warp(state, mv + self.attention(residual) * delta)


class Upsampler(nn.Module):
    """Reconstruction and pixel-shuffle up-sampling (SPECS 4.2.3):
    ``conv(LReLU(conv(cat(h_b, h_f)))) + F_shallow``, then ``[conv C->4C, shuffle 2, LReLU]``
    per factor of two, ``conv C->C, LReLU, conv C->3``; the last ``hr_steps`` shuffles may give
    fewer channels (``out_channels``) to the layers after them, where most of the cost is.
    With ``shuffle_out`` the last step is ``conv C->12, shuffle 2`` (the RGB output), and no
    layer runs at full resolution."""

    def __init__(self, channels: int, scale: int, slope: float, out_channels: int | None = None,
                 hr_steps: int = 1, shuffle_out: bool = False) -> None:
        super().__init__()
        c, steps = channels, scale.bit_length() - 1
        hr = out_channels or c
        self.fuse1 = _conv(2 * c, c)
        self.fuse2 = _conv(c, c)
        width = [c] + [hr if i >= steps - hr_steps else c for i in range(steps)]  # channels before/after each step
        body = steps - 1 if shuffle_out else steps
        self.ups = nn.ModuleList(_conv(width[i], 4 * width[i + 1]) for i in range(body))
        self.shuffle_out = shuffle_out
        if shuffle_out:
            self.out = _conv(width[body], 4 * 3)
        else:
            self.hr = _conv(hr, hr)
            self.out = _conv(hr, 3)
        self.slope = slope

    def forward(self, backward: torch.Tensor, forward: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        s = self.slope
        x = self.fuse2(F.leaky_relu(self.fuse1(torch.cat([backward, forward], dim=1)), s)) + shallow
        for up in self.ups:
            x = F.leaky_relu(F.pixel_shuffle(up(x), 2), s)
        if self.shuffle_out:
            return F.pixel_shuffle(self.out(x), 2)
        return self.out(F.leaky_relu(self.hr(x), s))


def motion_residual(frames: torch.Tensor, neighbours: torch.Tensor, mv: torch.Tensor) -> torch.Tensor:
    """``x_t - warp(x_n, mv)``: what the decoder's vectors fail to predict (``(N, 3, h, w)``)."""
    return frames - flow_warp(neighbours, mv)


class CAVSR(nn.Module):
    """Compression-aware video super-resolution (see the module).

    Args:
        config: architecture; see :data:`VARIANTS`.
    """

    #: Frames the model takes: ``(B, T, 3, h, w)`` RGB in [0, 1].
    domain = "rgb"
    #: Frames of context on each side of the frames it outputs when a file is streamed in
    #: overlapping windows (the recurrence is bidirectional and unbounded).
    #: ``benchmarks/cavsr_windows.py`` with first-stage weights (Temple, CRF 25): 2 frames
    #: leave the 8-bit output 0.024 code values from a whole-clip run on average (9 at
    #: most; PSNR-Y against the ground truth -0.0003 dB), 4 frames 0.004 at 1.2x the time.
    temporal_radius = 2
    #: Output frames per window when streamed (``benchmarks/cavsr_cost.py``: the context
    #: frames cost the trunks' time again, so longer windows are cheaper per frame).
    stream_chunk = 16
    #: Priors the model reads (design section 3).
    needs_priors = ("frame_type", "mv_past", "mv_future", "mv_valid")
    #: How :class:`codecave.enhance.Enhancer` runs it unless told otherwise: bfloat16
    #: autocast, 1.7x faster on CPU (``benchmarks/cavsr_cost.py``); on validation the stage-1
    #: weights' mean gain over bicubic moved by 0.0011 dB at most (README, CAVSR).
    inference_precision = "bf16"

    def __init__(self, config: CAVSRConfig = CAVSRConfig()) -> None:
        super().__init__()
        c = config
        self.config = config
        self.scale = c.scale
        self.compression_encoder = CompressionEncoder(c.encoder_width)
        rep = self.compression_encoder.channels
        self.shallow = _conv(3, c.channels)
        stacks = 1 if c.shared_cam else 2
        self.cam_stacks = nn.ModuleList(CAMStack(rep, c.channels, c.cam_blocks, c.cam, c.negative_slope)
                                        for _ in range(stacks))
        self.backward_trunk = Trunk(3 * c.channels, c.channels, c.blocks, c.negative_slope)
        self.forward_trunk = Trunk(4 * c.channels, c.channels, c.blocks, c.negative_slope)
        if c.alignment == "refined":
            self.backward_align = MetaAlignment(c.channels, c.gate, c.negative_slope)
            self.forward_align = MetaAlignment(c.channels, c.gate, c.negative_slope)
        self.upsampler = Upsampler(c.channels, c.scale, c.negative_slope, c.hr_channels, c.hr_steps,
                                  c.shuffle_out)
        if c.bicubic_skip:  # start from bicubic up-sampling: the residual branch's output is zero
            nn.init.zeros_(self.upsampler.out.weight)
            nn.init.zeros_(self.upsampler.out.bias)
        self._encoder_frozen = False

    def describe(self) -> dict[str, object]:
        """Architecture settings, for checkpoints and reports."""
        return asdict(self.config)

    # -- the frozen compression encoder (training stage 2) ------------------------------------

    def freeze_compression_encoder(self) -> None:
        """Freeze the compression encoder (SR training, stage 2): no gradients, and its batch
        normalisation keeps the statistics of ranking training (it stays in eval mode)."""
        self._encoder_frozen = True
        self.compression_encoder.requires_grad_(False)
        self.compression_encoder.eval()

    def train(self, mode: bool = True) -> CAVSR:
        super().train(mode)
        if self._encoder_frozen:
            self.compression_encoder.eval()
        return self

    def representation(self, frames: torch.Tensor, frame_type: torch.Tensor) -> torch.Tensor | None:
        """The compression representation of every frame, ``(N, 4 nf, h, w)``, or None without CAM."""
        if not self.config.cam:
            return None
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self._encoder_frozen):
            return self.compression_encoder(frames, frame_type)

    # -- super-resolution ---------------------------------------------------------------------

    def _align(self, direction: str, state: torch.Tensor, feat: torch.Tensor, mv: torch.Tensor,
               frame: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        mode = self.config.alignment
        if mode == "none":
            return state
        if mode == "mv":
            return flow_warp(state, mv)
        module = self.backward_align if direction == "backward" else self.forward_align
        return module(state, feat, mv, motion_residual(frame, neighbour, mv))

    def forward(self, frames: torch.Tensor, priors: dict[str, torch.Tensor],
                targets: tuple[int, int] | None = None) -> torch.Tensor:
        """Super-resolve a clip.

        Args:
            frames: ``(B, T, 3, h, w)`` decoded RGB frames in [0, 1].
            priors: dense priors at ``h x w`` (:attr:`needs_priors`), ``(B, T, ...)`` as in
                design section 3.
            targets: ``(lo, hi)``: reconstruct only frames ``lo..hi-1`` (the others are
                context that the recurrence runs over); default all.

        Returns:
            ``(B, hi - lo, 3, scale h, scale w)`` in [0, 1] (not clamped).
        """
        c = self.config
        b, t, _, h, w = frames.shape
        lo, hi = targets if targets is not None else (0, t)
        flat = frames.flatten(0, 1)
        rep = self.representation(flat, priors["frame_type"].flatten())
        shallow = self.shallow(flat)
        feats = [self.cam_stacks[0](shallow, rep)]
        feats.append(feats[0] if c.shared_cam else self.cam_stacks[1](shallow, rep))
        back_feat, fwd_feat = (f.view(b, t, *f.shape[1:]) for f in feats)
        valid = priors["mv_valid"].to(frames.dtype)
        mv_past = priors["mv_past"].to(frames.dtype) * valid[:, :, 0:1]
        mv_future = priors["mv_future"].to(frames.dtype) * valid[:, :, 1:2]
        is_b = priors["frame_type"] == 2
        zeros = frames.new_zeros(b, c.channels, h, w)

        def sweep(direction: str, order: range, feat: torch.Tensor, extra: list[torch.Tensor] | None
                  ) -> list[torch.Tensor]:
            trunk = self.backward_trunk if direction == "backward" else self.forward_trunk
            step = 1 if direction == "backward" else -1  # where the carried state comes from
            mv = mv_future if direction == "backward" else mv_past
            out: list[torch.Tensor] = [zeros] * t
            state = None
            for i in order:
                n = i + step
                if state is None:
                    aligned, neighbour_feat = zeros, zeros
                else:
                    aligned = self._align(direction, state, feat[:, i], mv[:, i], frames[:, i], frames[:, n])
                    neighbour_feat = feat[:, n]
                inputs = [feat[:, i], neighbour_feat, aligned] + ([extra[i]] if extra is not None else [])
                h_i = trunk(torch.cat(inputs, dim=1))
                out[i] = h_i
                if c.momentum < 1 and state is not None:  # eq. 3: a B-frame hands on a blend
                    gate = is_b[:, i].to(h_i.dtype).view(b, 1, 1, 1) * (1 - c.momentum)
                    state = h_i + gate * (aligned - h_i)
                else:
                    state = h_i
            return out

        backward = sweep("backward", range(t - 1, -1, -1), back_feat, None)
        forward = sweep("forward", range(t), fwd_feat, backward)
        keep = range(lo, hi)
        shallow = shallow.view(b, t, *shallow.shape[1:])
        hr = self.upsampler(torch.cat([backward[i] for i in keep]), torch.cat([forward[i] for i in keep]),
                            torch.cat([shallow[:, i] for i in keep]))
        hr = hr.view(hi - lo, b, *hr.shape[1:]).transpose(0, 1)
        if c.bicubic_skip:
            lr = frames[:, lo:hi].flatten(0, 1)
            up = F.interpolate(lr, scale_factor=c.scale, mode="bicubic", align_corners=False)
            hr = hr + up.view(b, hi - lo, *up.shape[1:])
        return hr


def count(variant: str) -> int:
    """Parameters of a variant."""
    return sum(p.numel() for p in CAVSR(VARIANTS[variant]).parameters())


__all__ = [
    "ALIGNMENTS",
    "CAM",
    "CAVSR",
    "VARIANTS",
    "CAVSRConfig",
    "CompressionEncoder",
    "count",
    "motion_residual",
    "ranking_loss",
]
