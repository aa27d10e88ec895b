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

Computation. The weights have the paper's shapes (``Conv3d``), but every layer runs as
2-D convolutions (PyTorch's CPU ``conv3d`` has no oneDNN path in float32 and is 4-7x
slower): a 3x3x3 convolution over the slots is three 3x3 "tap" convolutions of each
slot, summed across neighbouring slots. A frame's taps of the first block depend on the
frame alone, so they are computed once per frame and reused by the four windows that
hold it (:meth:`VIG.encode_frames`); only the hidden state's are new at each step. The
results equal the 3-D convolutions up to float rounding.

Deviation (ours, SPECS section 2): with ``qp_input`` the pre-extraction also takes a
constant plane of the sequence QP / 51 (the encoder's QP for constant-QP streams, the
CRF for x264 CRF ones), so one model serves several QPs where the paper trains one per QP.

Ours, not the paper's (``dct_shrink``): every enhanced frame may then go through the
shifted-DCT shrinkage stage PnP-VCVE's default learned (:class:`codecave.layers.dct.ShiftedDCTShrinkage`,
FFmpeg ``spp``'s method with thresholds ``s_k x Qstep(QP)^g``) at its stream's sequence QP,
once per frame, as a post-filter: the network and its hidden state are the paper's. After
the network rather than before it: on training clips the order gained +0.007 dB at QP 37
LDP and +0.006 at x264 CRF 35 over the stage in front (README, VIG).

Colour: the Y plane only, as the paper trains and scores it (``(B, T, 1, H, W)`` luma in
[0, 1]); chroma is kept as decoded. ``H`` and ``W`` must be multiples of 4 (pad first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codecave.layers.dct import ShiftedDCTShrinkage, shrink_at_sequence_qp

#: Frames the network looks ahead of the one it enhances (the paper's ``k = 3``).
FUTURE = 3
#: Slots the redundancy filtering module fuses: the current frame, three future ones, the state.
SLOTS = FUTURE + 2
#: QP scale of the sequence-QP plane (H.264 / HEVC QPs run to 51).
QP_SCALE = 51.0


@dataclass(frozen=True)
class VIGConfig:
    """Widths of the compressed redundancy filtering network.

    Attributes:
        c0: channels at full resolution (pre-extraction, hidden state, fusion input).
        c1: channels at half resolution.
        c2: channels at quarter resolution.
        negative_slope: of the leaky ReLUs.
        qp_input: feed the sequence QP to the pre-extraction (our deviation; see the module).
        resample: pixel-unshuffle down-sampling and pixel-shuffle up-sampling (the paper's
            "UD"); False is the ablation's full-resolution base: the same layers with
            1x1x1 reductions and plain 3x3 up-convolutions, everything at ``H x W``
            (paper Table 4, row i; SPECS 2.6 k).
        zero_fusion: start the fusion layer at zero, so an untrained model is the identity
            (SPECS 2.6); False keeps PyTorch's default initialisation.
        dct_shrink: 0: none; else every enhanced frame then goes through the shifted-DCT
            shrinkage stage at its stream's sequence QP (ours; see the module). The shipped weights
            took the stage as the default's stage 9 learned it (grafted, ``scripts/graft_weights.py``),
            then fitted it alone on the network's outputs of training clips
            (``scripts/fit_shrinkage.py``); the value is the stage's starting scale.
        shrink_qp_offset: QP added to the sequence QP for the shrinkage thresholds only (not
            the network's QP plane). The stage learned its law on x264 pictures at their own
            QP; VIG reads only the sequence QP (no HEVC decoder exports the pictures'), and a
            stream's pictures sit around it. Calibrated on training clips
            (``benchmarks/vig_shrink_offset.py``), not trained; 0 as grafted. Without
            ``dct_shrink`` a non-zero offset raises ValueError when the model is built.
        stage_only_qp: streams whose sequence QP is at or below this skip the network: each
            decoded frame goes through the shrinkage stage alone (ours). Where the network
            was measured to harm high-quality streams and the stage alone not to, this keeps
            the stage's gain that a pass-through would give away. None (the default): the
            network always runs. Without ``dct_shrink`` a value raises ValueError when the
            model is built.
    """

    c0: int = 8
    c1: int = 16
    c2: int = 16
    negative_slope: float = 0.1
    qp_input: bool = True
    resample: bool = True
    zero_fusion: bool = True
    dct_shrink: float = 0.0
    shrink_qp_offset: float = 0.0
    stage_only_qp: float | None = None


#: ``small`` has the widths ``benchmarks/vig_cost.py`` picked for the 15 frames/s target at
#: 640x360 on two CPU cores; ``paper`` reads the paper's "1.74 MB" as about 2 M parameters.
#: (SPECS' proposal, 32/64/64, costs 102 GFLOPs and 1.7 s a frame at 640x360 on one core.)
VARIANTS = {"small": VIGConfig(), "paper": VIGConfig(c0=64, c1=128, c2=128)}


class TemporalSpatialDown(nn.Module):
    """TSD: pixel-unshuffle by 2 per slot, a 1x1x1 reduction, then the TF layer (3x3x3 over
    the slots), computed per slot as :meth:`taps` and summed by :meth:`combine`.

    The unshuffle and the 1x1x1 reduction run together as one 2x2 convolution of stride 2
    (the same weights, without the unshuffled copy).
    """

    def __init__(self, c_in: int, c_out: int, slope: float, resample: bool = True) -> None:
        super().__init__()
        self.resample = resample
        self.reduce = nn.Conv3d(4 * c_in if resample else c_in, c_out, 1)
        self.fuse = nn.Conv3d(c_out, c_out, 3, padding=1)
        self.slope = slope

    def taps(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, c_in, H, W) -> (N, 3, c_out, H/2, W/2)``: a slot's contributions to the
        slot before it (tap 0), itself (1) and the slot after it (2), before the bias.
        (Without ``resample``: ``H x W``.)"""
        c = self.fuse.out_channels
        # pixel_unshuffle puts x[ch, 2y + i, 2x + j] at channel 4 ch + 2 i + j
        k = 2 if self.resample else 1
        reduce = self.reduce.weight.reshape(c, -1, k, k)
        r = F.leaky_relu(F.conv2d(x, reduce, self.reduce.bias, stride=k), self.slope)
        weight = self.fuse.weight.permute(2, 0, 1, 3, 4).reshape(3 * c, c, 3, 3)
        return F.conv2d(r, weight, padding=1).unflatten(1, (3, c))

    def combine(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Taps ``(B, 3, C, h, w)`` of consecutive slots -> the TF output ``(B, C, h, w)`` of
        each: slot ``j`` sums tap 0 of slot ``j-1``, tap 1 of ``j`` and tap 2 of ``j+1``
        (zero padding at the ends)."""
        bias = self.fuse.bias[:, None, None]
        out = []
        for j, own in enumerate(taps):
            total = own[:, 1] + bias
            if j > 0:
                total = total + taps[j - 1][:, 0]
            if j + 1 < len(taps):
                total = total + taps[j + 1][:, 2]
            out.append(F.leaky_relu(total, self.slope))
        return out


class TemporalDown(nn.Module):
    """TD: collapse the slots with a ``(SLOTS, 1, 1)`` convolution, then a 3x3 one."""

    def __init__(self, c: int, slope: float) -> None:
        super().__init__()
        self.collapse = nn.Conv3d(c, c, (SLOTS, 1, 1))
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.slope = slope

    def forward(self, slots: list[torch.Tensor]) -> torch.Tensor:
        """``SLOTS`` tensors ``(B, C, h, w) -> (B, C, h, w)``."""
        c = self.collapse.out_channels
        weight = self.collapse.weight.permute(0, 2, 1, 3, 4).reshape(c, SLOTS * c, 1, 1)
        x = F.leaky_relu(F.conv2d(torch.cat(slots, dim=1), weight, self.collapse.bias), self.slope)
        return F.leaky_relu(self.conv(x), self.slope)


class SpatialUp(nn.Module):
    """SU: a 3x3 convolution to ``4 c_out`` channels, pixel-shuffle by 2 (without
    ``resample``: a 3x3 convolution to ``c_out``)."""

    def __init__(self, c_in: int, c_out: int, slope: float, resample: bool = True) -> None:
        super().__init__()
        self.resample = resample
        self.conv = nn.Conv2d(c_in, 4 * c_out if resample else c_out, 3, padding=1)
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.leaky_relu(F.pixel_shuffle(y, 2) if self.resample else y, self.slope)


class VIG(nn.Module):
    """The compressed redundancy filtering network of VIG (Y plane, recurrent).

    Call the module on a whole clip, :meth:`step` for one window, or stream frames
    through :class:`VIGStream`.
    """

    domain = "y"
    #: How :class:`codecave.enhance.Enhancer` runs it unless told otherwise: bfloat16
    #: autocast, 1.7x faster on CPU (``benchmarks/vig_cost.py``) for an 8-bit output that
    #: ``benchmarks/vig_precision.py`` measured against float32 on validation.
    inference_precision = "bf16"

    def __init__(self, config: VIGConfig = VIGConfig()) -> None:
        super().__init__()
        c = config
        self.config = config
        self.pre = nn.Conv2d(2 if c.qp_input else 1, c.c0, 3, padding=1)
        self.tsd1 = TemporalSpatialDown(c.c0, c.c1, c.negative_slope, c.resample)
        self.tsd2 = TemporalSpatialDown(c.c1, c.c2, c.negative_slope, c.resample)
        self.td = TemporalDown(c.c2, c.negative_slope)
        self.su1 = SpatialUp(c.c2, c.c1, c.negative_slope, c.resample)
        self.su2 = SpatialUp(c.c1, c.c0, c.negative_slope, c.resample)
        self.fusion = nn.Conv2d(c.c0, 1, 3, padding=1)
        if c.zero_fusion:
            nn.init.zeros_(self.fusion.weight)  # start at the identity: the output is the input
            nn.init.zeros_(self.fusion.bias)
        self.shrink = ShiftedDCTShrinkage(c.dct_shrink) if c.dct_shrink else None
        if c.shrink_qp_offset and self.shrink is None:
            raise ValueError("shrink_qp_offset moves the shrinkage stage's QP: it needs dct_shrink")
        #: ``shrink_qp_offset``, an attribute so that a calibration can sweep it on one model.
        self.shrink_qp_offset = c.shrink_qp_offset
        if c.stage_only_qp is not None and self.shrink is None:
            raise ValueError("stage_only_qp runs the shrinkage stage alone: it needs dct_shrink")

    def stage_only(self, qp: torch.Tensor | None) -> torch.Tensor | None:
        """Which streams skip the network (``stage_only_qp``): ``(B,)`` bool from the sequence
        QP ``qp`` ``(B,)`` (NaN: no), or None when none can (no threshold or no ``qp``)."""
        if self.config.stage_only_qp is None or qp is None:
            return None
        return qp.float() <= self.config.stage_only_qp

    def describe(self) -> dict[str, object]:
        """Architecture settings, for checkpoints and reports."""
        return asdict(self.config)

    def streamer(self, qp: torch.Tensor | None = None) -> VIGStream:
        """A :class:`VIGStream` over this model (``qp`` ``(1,)``: the sequence QP).

        Raises:
            ValueError: ``dct_shrink`` without ``qp``.
        """
        return VIGStream(self, qp)

    def postfilter(self, frames: torch.Tensor, qp: torch.Tensor | None) -> torch.Tensor:
        """Enhanced luma frames ``(B, T, 1, H, W)`` or ``(N, 1, H, W)`` (code values / 255),
        clamped to [0, 1], through the shrinkage stage at the sequence QP ``qp`` ``(B,)`` or
        ``(N,)`` plus ``shrink_qp_offset`` (NaN QP: clamped, otherwise unchanged; float32 whatever
        the autocast); the frames as they are, not clamped, without ``dct_shrink``.

        Raises:
            ValueError: ``dct_shrink`` without ``qp``.
        """
        if self.shrink is None:
            return frames
        return shrink_at_sequence_qp(self.shrink, frames.clamp(0, 1), qp, "VIG", self.shrink_qp_offset)

    def initial_state(self, frame: torch.Tensor) -> torch.Tensor:
        """The hidden state before the first frame: zeros, ``(B, C0, H, W)``."""
        b, _, h, w = frame.shape
        return frame.new_zeros(b, self.config.c0, h, w)

    def encode_frames(self, frames: torch.Tensor, qp: torch.Tensor | None = None) -> torch.Tensor:
        """What a frame contributes to every window that holds it, computed once.

        Args:
            frames: ``(N, 1, H, W)`` luma in [0, 1], ``H`` and ``W`` multiples of 4.
            qp: ``(N,)`` sequence QP of each frame's stream (needed when ``qp_input``).

        Returns:
            ``(N, 3, C1, H/2, W/2)``: the first block's taps of each frame.

        Raises:
            ValueError: sizes off the grid, or ``qp`` missing when the model takes it.
        """
        n, _, h, w = frames.shape
        if self.config.resample and (h % 4 or w % 4):
            raise ValueError(f"VIG takes frames with H, W multiples of 4; got {tuple(frames.shape)}")
        x = frames
        if self.config.qp_input:
            if qp is None:
                raise ValueError("this VIG takes the sequence QP (qp_input): pass qp")
            plane = (qp.to(frames.dtype) / QP_SCALE).reshape(n, 1, 1, 1).expand(n, 1, h, w)
            x = torch.cat([frames, plane], dim=1)
        return self.tsd1.taps(self.pre(x))

    def advance(self, current: torch.Tensor, taps: list[torch.Tensor], state: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step from cached frame taps.

        Args:
            current: ``(B, 1, H, W)`` the frame being enhanced.
            taps: four ``(B, 3, C1, H/2, W/2)``: :meth:`encode_frames` of it and the next three.
            state: ``(B, C0, H, W)`` from the previous step, or None for the first frame.

        Returns:
            ``(enhanced (B, 1, H, W), state)``.
        """
        if state is None:
            state = self.initial_state(current)
        tsd1 = self.tsd1.combine([*taps, self.tsd1.taps(state)])  # SLOTS x (B, C1, H/2, W/2)
        b = current.shape[0]
        tsd2 = self.tsd2.combine(list(self.tsd2.taps(torch.cat(tsd1)).split(b)))
        td = self.td(tsd2)
        su1 = self.su1(td + tsd2[0])
        hidden = self.su2(su1 + tsd1[0])
        return self.fusion(hidden) + current, hidden

    def step(self, window: torch.Tensor, state: torch.Tensor | None = None, qp: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Enhance one frame.

        Args:
            window: ``(B, 4, 1, H, W)`` luma in [0, 1]: the frame, then the next three
                (repeat the last frame of the clip where there are fewer).
            state: the hidden state :meth:`step` returned for the previous frame
                (``(B, C0, H, W)``), or None for the first frame.
            qp: ``(B,)`` sequence QP (when the model takes it).

        With ``dct_shrink`` the enhanced frame goes through :meth:`postfilter` (the state
        does not); streams at or below ``stage_only_qp`` skip the network (their frame goes
        through the stage alone; when all do, the state comes back as it was given).

        Returns:
            ``(enhanced (B, 1, H, W), state)``.

        Raises:
            ValueError: ``H`` or ``W`` not a multiple of 4, not four frames, or no ``qp``
                (needed by ``qp_input`` and by ``dct_shrink``).
        """
        b, t = window.shape[:2]
        if t != FUTURE + 1:
            raise ValueError(f"VIG takes (B, {FUTURE + 1}, 1, H, W) windows; got {tuple(window.shape)}")
        off = self.stage_only(qp)
        if off is not None and bool(off.all()):
            return self.postfilter(window[:, 0], qp), state
        qps = None if qp is None else qp.repeat_interleave(t)
        taps = self.encode_frames(window.flatten(0, 1), qps).unflatten(0, (b, t))
        y, state = self.advance(window[:, 0], list(taps.unbind(1)), state)
        if off is not None:
            y = torch.where(off.reshape(b, 1, 1, 1), window[:, 0].to(y.dtype), y)
        return self.postfilter(y, qp), state

    def forward(self, clip: torch.Tensor, qp: torch.Tensor | None = None) -> torch.Tensor:
        """Enhance a whole clip, ``(B, T, 1, H, W) -> (B, T, 1, H, W)``, frame by frame
        (each frame's taps computed once; then :meth:`postfilter` with ``dct_shrink``); ``qp``
        ``(B,)`` as in :meth:`step`. Streams at or below ``stage_only_qp`` skip the network
        (not computed at all when every stream does).

        Raises:
            ValueError: as :meth:`step`.
        """
        b, t = clip.shape[:2]
        off = self.stage_only(qp)
        if off is not None and bool(off.all()):
            return self.postfilter(clip, qp)
        qps = None if qp is None else qp.repeat_interleave(t)
        taps = self.encode_frames(clip.flatten(0, 1), qps).unflatten(0, (b, t))
        out, state = [], None
        for i in range(t):
            idx = window_indices(i, t)
            y, state = self.advance(clip[:, i], [taps[:, k] for k in idx], state)
            out.append(y)
        y = torch.stack(out, dim=1)
        if off is not None:
            y = torch.where(off.reshape(b, 1, 1, 1, 1), clip.to(y.dtype), y)
        return self.postfilter(y, qp)


def window_indices(i: int, length: int) -> list[int]:
    """Frame ``i`` and its three successors in a clip of ``length`` (the last frame repeats)."""
    return [min(i + k, length - 1) for k in range(FUTURE + 1)]


class VIGStream:
    """Run VIG over frames that arrive one at a time, with memory flat in the length:
    four frames, their taps and the hidden state are held, and each frame's taps are
    computed once.

    Feed luma frames ``(B, 1, H, W)`` to :meth:`push`; it returns the enhanced frame
    ``FUTURE`` frames behind (or None while filling); :meth:`flush` returns the rest.
    The outputs equal ``model(clip)`` on the whole clip. With ``dct_shrink`` each enhanced
    frame goes through the shrinkage stage once, as it leaves; a stream at or below
    ``stage_only_qp`` computes no taps and no state, only the stage.

    Raises:
        ValueError: ``dct_shrink`` without ``qp``.
    """

    def __init__(self, model: VIG, qp: torch.Tensor | None = None) -> None:
        if model.shrink is not None and qp is None:
            raise ValueError("this VIG shrinks at the sequence QP (dct_shrink): pass qp")
        self.model, self.qp = model, qp
        off = model.stage_only(None if qp is None else qp.reshape(-1))
        #: the stream is at or below ``stage_only_qp``: the network never runs
        self.stage_only = off is not None and bool(off.all())
        self.frames: list[torch.Tensor] = []
        self.taps: list[torch.Tensor] = []
        self.state: torch.Tensor | None = None

    def _emit(self) -> torch.Tensor:
        if self.stage_only:
            y = self.frames.pop(0)
        else:
            taps = [self.taps[k] for k in window_indices(0, len(self.frames))]
            y, self.state = self.model.advance(self.frames.pop(0), taps, self.state)
            self.taps.pop(0)
        if self.model.shrink is not None:  # (stage_only implies it)
            y = self.model.postfilter(y, self.qp.reshape(-1).expand(y.shape[0]))
        return y

    def push(self, frame: torch.Tensor) -> torch.Tensor | None:
        """Add the next frame; return the enhanced frame ``FUTURE`` behind, if ready."""
        self.frames.append(frame)
        if not self.stage_only:
            self.taps.append(self.model.encode_frames(frame, self.qp))
        return self._emit() if len(self.frames) == FUTURE + 1 else None

    def flush(self) -> list[torch.Tensor]:
        """The enhanced frames still held (the clip has ended)."""
        out = []
        while self.frames:
            out.append(self._emit())
        return out


def count(variant: str) -> int:
    """Parameters of a variant."""
    return sum(p.numel() for p in VIG(VARIANTS[variant]).parameters())


__all__ = ["FUTURE", "VARIANTS", "VIG", "VIGConfig", "VIGStream", "count", "window_indices"]
