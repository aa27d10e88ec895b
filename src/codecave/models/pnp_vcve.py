"""PnP-VCVE: plug-and-play versatile compressed video enhancement.

Zeng et al., "Plug-and-Play Versatile Compressed Video Enhancement", CVPR 2025.

Two stages:

* **CAA** (compression-aware adaptation): a light network whose convolutions are
  mixtures of ``N`` experts. The sequence CRF picks the mixture once per video; the
  frame QP (or slice type) re-weights it per frame. Its output is a first enhanced
  frame ``x_caa``.
* **BAE** (bitstream-aware enhancement): features of the CAA-enhanced previous and
  next frames are warped to the current frame with the decoder's motion vectors,
  fused with the current frame, and refined by residual blocks whose output is the
  adapted convolution plus one filter per partition-size region.

The ``small`` variant works on 2x pixel-unshuffled RGB frames with 32 channels so
that it trains on two CPU cores; ``paper`` keeps full resolution and 64 channels.
Both take RGB. The ``fast`` variant (:class:`PnPVCVEFast`) works in the codec's own
pixels: YUV 4:2:0 packed on the 4x4 luma-block grid (:mod:`codecave.grid`), with its
priors on the same grid, so one position is one block of the codec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codecave.codec.priors import FrameType
from codecave.layers.blocks import crop_to, pad_to_multiple
from codecave.layers.dct import ShiftedDCTShrinkage
from codecave.layers.dynamic import ExpertConv2d, FrameParameterGenerator, SequenceWeightGenerator, frame_code
from codecave.layers.warp import flow_warp

#: Partition classes refined by their own filter: 16x16, 16x8/8x16, 8x8 and smaller.
REFINED_REGIONS = 3


@dataclass(frozen=True)
class PnPVCVEConfig:
    """Architecture of a PnP-VCVE model.

    Attributes:
        channels: feature channels of both stages.
        caa_blocks: residual blocks of adapted convolutions in the CAA stage.
        bae_blocks: region-aware residual blocks in the BAE stage.
        n_experts: experts per adapted layer (``N``).
        unshuffle: pixel-unshuffle factor the network works at (1 = full resolution).
        caa: False runs one expert with no frame-wise transfer (ablation "w/o CAA").
        mv_align: False concatenates neighbours without warping (ablation "w/o MV").
        region_refine: False drops the partition filters (ablation "w/o region").
    """

    channels: int = 32
    caa_blocks: int = 2
    bae_blocks: int = 8
    n_experts: int = 6
    unshuffle: int = 2
    caa: bool = True
    mv_align: bool = True
    region_refine: bool = True


@dataclass(frozen=True)
class PnPVCVEFastConfig:
    """Architecture of the packed-grid PnP-VCVE (:class:`PnPVCVEFast`).

    Attributes:
        channels: feature channels per grid position.
        caa_blocks: residual blocks of adapted convolutions in the CAA stage.
        bae_blocks: region-aware residual blocks in the BAE stage.
        n_experts: experts per adapted layer (``N``).
        caa: False runs one expert with no frame-wise transfer (ablation "w/o CAA").
        mv_align: False fuses the neighbours without warping (ablation "w/o MV").
        region_refine: False drops the per-partition filters (ablation "w/o region").
        pixel_branch: channels of a small luma network run at full resolution after the grid
            body (0: none): four 3x3 convolutions whose weights every sample shares, fed
            the enhanced Y plane, adding a correction to Y.
        zero_init: the output layers start at zero, so an untrained model is the identity
            (False: they keep the He-scale start of the other layers; learning-curve study).
        input_scale: 0 feeds the layers the frames in [0, 1] as they are; else
            ``(x - 0.5) * input_scale`` (inputs centred and scaled; learning-curve study).
        residual_scale: factor on every correction the network adds (CAA, BAE, luma branch):
            the layers then predict the residual divided by it (targets normalised;
            learning-curve study).
        dct_shrink: 0: none; else the Y plane first goes through a shifted-DCT shrinkage
            whose thresholds follow the frame QP (:class:`~codecave.layers.dct.ShiftedDCTShrinkage`,
            FFmpeg ``spp``'s method with learned thresholds ``s_k x Qstep(QP)^g`` code values),
            ``s_k`` started at this value and ``g`` at 0.5; the network then works on its output (ours: where the model
            trailed ``spp`` was measured to be strong edges and 8x8 block borders; README).
        shrink_ip_qp_offset: QP added to the frame QP of I and P pictures for the shrinkage
            thresholds only (not where the QP is unknown and the sequence CRF stands in; B
            pictures keep theirs). x264 codes its reference pictures at lower QP than the B
            pictures between them (``ipratio``, ``pbratio``, macroblock-tree), and the thresholds
            learned over all picture types leave I and P pictures under-filtered: measured on the
            default's training clips, the stage alone and the whole model gain from a few QP more
            there (``benchmarks/shrink_offset.py``). Set after training, not learned; 0 leaves the
            model as trained.
    """

    channels: int = 32
    caa_blocks: int = 1
    bae_blocks: int = 3
    n_experts: int = 6
    caa: bool = True
    mv_align: bool = True
    region_refine: bool = True
    pixel_branch: int = 16
    zero_init: bool = True
    input_scale: float = 0.0
    residual_scale: float = 1.0
    dct_shrink: float = 0.0
    shrink_ip_qp_offset: float = 0.0


VARIANTS: dict[str, PnPVCVEConfig | PnPVCVEFastConfig] = {
    "small": PnPVCVEConfig(),
    "paper": PnPVCVEConfig(channels=64, caa_blocks=4, bae_blocks=8, n_experts=6, unshuffle=1),
    "fast": PnPVCVEFastConfig(),
}


def _downsample_priors(priors: dict[str, torch.Tensor], s: int) -> dict[str, torch.Tensor]:
    """Flatten ``(B, T, ...)`` dense priors to ``(B*T, ...)`` at 1/s resolution."""
    out = {}
    for key in ("mv_past", "mv_future", "mv_valid", "partition"):
        x = priors[key].flatten(0, 1).float()
        if s > 1:
            x = F.avg_pool2d(x, s)
        out[key] = x / s if key.startswith("mv_") and key != "mv_valid" else x
    return out


def _shift(x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour along time: ``out[:, t] = x[:, t + step]`` (zeros beyond the clip).

    Returns:
        The shifted ``(B, T, ...)`` tensor and ``(B, T)`` float presence flags.
    """
    b, t = x.shape[:2]
    out = torch.zeros_like(x)
    present = torch.zeros(b, t, dtype=x.dtype, device=x.device)
    if step < 0:
        out[:, -step:] = x[:, :step]
        present[:, -step:] = 1
    else:
        out[:, :-step] = x[:, step:]
        present[:, :-step] = 1
    return out, present


def _init_convs(module: nn.Module, zero: list[nn.Conv2d]) -> None:
    """He-scale (halved) init of every convolution; the output layers in ``zero`` start at zero,
    so that an untrained model is the identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            # He scale, halved: the residual branches start small but not silent.
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.weight.data.mul_(0.5)
            nn.init.zeros_(m.bias)
    for m in zero:
        nn.init.zeros_(m.weight)
        nn.init.zeros_(m.bias)


class PnPVCVE(nn.Module):
    """Compression-aware adaptation + bitstream-aware enhancement, on RGB frames.

    Args:
        config: architecture; see :data:`VARIANTS`.
    """

    #: Frames the model takes: ``(B, T, 3, H, W)`` RGB in [0, 1].
    domain = "rgb"
    #: Frames of context it needs on each side of a frame.
    temporal_radius = 1

    #: Priors the model reads (design section 3).
    needs_priors = ("crf", "qp", "frame_type", "mv_past", "mv_future", "mv_valid", "partition")
    #: Frame sizes are padded internally to a multiple of this.
    stride = 1

    def __init__(self, config: PnPVCVEConfig = PnPVCVEConfig()) -> None:
        super().__init__()
        self.config = config
        c, s = config.channels, config.unshuffle
        n = config.n_experts if config.caa else 1
        cin = 3 * s * s
        self.caa_in = ExpertConv2d(cin, c, 3, n)
        self.caa_body = nn.ModuleList(ExpertConv2d(c, c, 3, n) for _ in range(2 * config.caa_blocks))
        self.caa_out = nn.Conv2d(c, cin, 3, padding=1)
        self.bae_feat = nn.Conv2d(cin, c, 3, padding=1)
        self.bae_fuse = nn.Conv2d(3 * c + cin + 2, c, 3, padding=1)
        self.bae_conv = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(config.bae_blocks))
        self.bae_adapted = nn.ModuleList(ExpertConv2d(c, c, 3, n) for _ in range(config.bae_blocks))
        if config.region_refine:
            self.bae_refine = nn.ModuleList(
                nn.Conv2d(c, c * REFINED_REGIONS, 3, padding=1) for _ in range(config.bae_blocks))
        self.bae_out = nn.Conv2d(c, cin, 3, padding=1)
        _init_convs(self, [self.caa_out, self.bae_out])
        if config.caa:
            self.sequence_generator = SequenceWeightGenerator(n)
            self.frame_generator = FrameParameterGenerator(sum(m.out_channels for m in self._adapted()))

    def _adapted(self) -> list[ExpertConv2d]:
        return [self.caa_in, *self.caa_body, *self.bae_adapted]

    def adapt(self, crf: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The sequence-wise layers: mix every adapted layer's experts once per video.

        Args:
            crf: ``(B,)`` sequence CRF.

        Returns:
            One ``(weight, bias)`` per adapted layer, reusable for all frames of the
            videos (pass it to :meth:`forward` as ``sequence``).
        """
        if self.config.caa:
            alpha = self.sequence_generator(crf.float())
        else:
            alpha = torch.ones(crf.shape[0], 1, device=crf.device)
        return [m.mix(alpha) for m in self._adapted()]

    def _frame_scales(self, priors: dict[str, torch.Tensor]) -> list[torch.Tensor | None]:
        layers = self._adapted()
        if not self.config.caa:
            return [None] * len(layers)
        code = frame_code(priors["qp"].float(), priors["frame_type"])
        scales = self.frame_generator(code)
        return list(scales.split([m.out_channels for m in layers], dim=-1))

    def forward(self, frames: torch.Tensor, priors: dict[str, torch.Tensor],
                sequence: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                return_stages: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Enhance a clip.

        Args:
            frames: ``(B, T, 3, H, W)`` decoded frames in [0, 1].
            priors: dense priors (:attr:`needs_priors`), ``(B, T, ...)`` as in design section 3.
            sequence: precomputed :meth:`adapt` output (else computed from ``priors["crf"]``).
            return_stages: also return the CAA stage's output.

        Returns:
            ``(B, T, 3, H, W)`` enhanced frames (and the CAA output when asked).
        """
        b, t = frames.shape[:2]
        s = self.config.unshuffle
        frames_p, size = pad_to_multiple(frames, s)
        dense = {k: pad_to_multiple(priors[k], s)[0] for k in ("mv_past", "mv_future", "mv_valid", "partition")}
        small = _downsample_priors(dense, s)
        x = F.pixel_unshuffle(frames_p.flatten(0, 1), s) if s > 1 else frames_p.flatten(0, 1)
        mixed = sequence if sequence is not None else self.adapt(priors["crf"])
        scales = self._frame_scales(priors)
        layers = iter(zip(self._adapted(), mixed, scales))

        def adapted(feat: torch.Tensor) -> torch.Tensor:
            layer, mix, scale = next(layers)
            y = layer(feat.view(b, t, *feat.shape[1:]), mix, scale)
            return y.flatten(0, 1)

        f = F.relu(adapted(x))
        for _ in range(self.config.caa_blocks):
            f = f + adapted(F.relu(adapted(f)))
        x_caa = x + self.caa_out(f)

        feat = self.bae_feat(x_caa)
        g = F.relu(self.bae_fuse(torch.cat(self._neighbours(feat, small, b, t) + [feat, x_caa], dim=1)))
        masks = small["partition"][:, :REFINED_REGIONS]
        for i in range(self.config.bae_blocks):
            h = F.relu(self.bae_conv[i](g))
            y = adapted(h)
            if self.config.region_refine:
                refined = self.bae_refine[i](h).view(h.shape[0], REFINED_REGIONS, -1, *h.shape[-2:])
                y = y + (refined * masks.unsqueeze(2)).sum(dim=1)
            g = g + y
        x_hat = x_caa + self.bae_out(g)

        def back(z: torch.Tensor) -> torch.Tensor:
            z = F.pixel_shuffle(z, s) if s > 1 else z
            return crop_to(z.view(b, t, *z.shape[1:]), size)

        return (back(x_hat), back(x_caa)) if return_stages else back(x_hat)

    def _neighbours(self, feat: torch.Tensor, small: dict[str, torch.Tensor], b: int, t: int) -> list[torch.Tensor]:
        """Previous and next features warped to each frame, plus their validity masks."""
        clip = feat.view(b, t, *feat.shape[1:])
        out, valid = [], []
        for step, key, index in ((-1, "mv_past", 0), (1, "mv_future", 1)):
            nb, present = _shift(clip, step)
            nb = nb.flatten(0, 1)
            if self.config.mv_align:
                nb = flow_warp(nb, small[key])
            out.append(nb)
            valid.append(small["mv_valid"][:, index : index + 1] * present.flatten().view(-1, 1, 1, 1))
        return [out[0], out[1], *valid]

    def describe(self) -> dict[str, object]:
        """Architecture settings, as saved beside weights."""
        return asdict(self.config)


class PnPVCVEFast(nn.Module):
    """PnP-VCVE on the packed YUV 4:2:0 grid: the ``fast`` variant.

    The paper's two stages (Zeng et al., CVPR 2025, section 3) with their body on the
    4x4 luma-block grid of :mod:`codecave.grid`:

    * Optionally first (``dct_shrink``): the Y plane through a shifted-DCT shrinkage whose
      thresholds follow the frame QP (FFmpeg ``spp``'s method with learned thresholds).
    * **CAA**: adapted convolutions (``N`` experts mixed by the sequence CRF,
      re-weighted per frame by QP or slice type) give a first enhanced frame
      ``x_caa`` for every frame of the clip.
    * **BAE**: the CAA outputs of the previous and next frames are aligned to each
      frame by the decoder's motion vectors, sample-exactly
      (:func:`codecave.grid.warp_packed`), fused with the frame and its CAA
      features, and refined by residual blocks whose output is an adapted
      convolution plus one 1x1 filter per partition-size region.
    * A small full-resolution luma network (``pixel_branch`` channels, weights shared
      by every sample) refines Y last. Measured here: a body on the grid alone did not
      learn within 3000 steps (+0.002 dB on held-out crops), because each of the 16
      sample positions of a block needs its own weights; this branch did (+0.05 dB in
      800 steps). See the README.

    Args:
        config: architecture; see :data:`VARIANTS` (``fast``).
    """

    #: Frames the model takes: packed 4:2:0 ``(B, T, 24, H/4, W/4)`` in [0, 1].
    domain = "yuv420"
    #: Frames of context it needs on each side of a frame.
    temporal_radius = 1
    #: Priors the model reads, on the 4x4 grid (design section 3).
    needs_priors = ("crf", "qp", "frame_type", "mv_past", "mv_future", "mv_valid", "partition")
    #: How :class:`codecave.enhance.Enhancer` runs it unless told otherwise: bfloat16 autocast,
    #: with the two layers that read pixels (the first CAA convolution and the first layer of
    #: the luma branch) and the shrinkage stage kept in float32: bf16's 8-bit mantissa cannot
    #: carry one code value of the input. Measured against float32 on the validation split
    #: (README, "The shipped default": speed).
    inference_precision = "bf16"
    #: Frames per model call when streaming (each call also computes the shrinkage and CAA
    #: of a context frame on each side: 8 instead of 4 was 25 % faster at 640x360) ...
    stream_chunk = 8
    #: ... and luma pixels of a call's frames at most (4 frames of 1280x720, 2 of 1920x1080:
    #: 8 frames took the peak memory of ``enhance`` at 1280x720 from 929 to 1133 MiB).
    stream_pixels = 2 * 1920 * 1088
    #: Luma pixels of frames that go through CAA, BAE and the luma branch together outside
    #: training (one 1280x720 frame, four 640x360 ones): bounds the memory of the three.
    pixel_chunk = 1 << 20
    #: Pixels per strip of the luma branch outside training (its activations stay in cache:
    #: ``benchmarks/strip_cost.py`` measured 14 against 32 ms a 640x360 picture for whole pictures,
    #: 46 against 133 at 1280x720; 2^16 to 2^18 within noise of each other).
    luma_strip = 1 << 17

    def __init__(self, config: PnPVCVEFastConfig = PnPVCVEFastConfig()) -> None:
        super().__init__()
        from codecave.grid import PACKED_CHANNELS

        self.config = config
        c, n, cin = config.channels, (config.n_experts if config.caa else 1), PACKED_CHANNELS
        self.caa_in = ExpertConv2d(cin, c, 3, n)
        self.caa_body = nn.ModuleList(ExpertConv2d(c, c, 3, n) for _ in range(2 * config.caa_blocks))
        self.caa_out = nn.Conv2d(c, cin, 3, padding=1)
        self.bae_fuse = nn.Conv2d(3 * cin + 2 + c, c, 3, padding=1)
        self.bae_conv = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(config.bae_blocks))
        self.bae_adapted = nn.ModuleList(ExpertConv2d(c, c, 3, n) for _ in range(config.bae_blocks))
        if config.region_refine:
            # One 1x1 filter per region: applied to [m_1 h, m_2 h, m_3 h] (one-hot masks m_k),
            # a single convolution gives sum_k m_k (W_k h).
            self.bae_refine = nn.ModuleList(nn.Conv2d(c * REFINED_REGIONS, c, 1) for _ in range(config.bae_blocks))
        self.bae_out = nn.Conv2d(c, cin, 3, padding=1)
        _init_convs(self, [self.caa_out, self.bae_out] if config.zero_init else [])
        if config.pixel_branch:
            k = config.pixel_branch
            # PyTorch's default (smaller) initialisation: with the He scale above this branch did not learn
            self.pixel = nn.Sequential(nn.Conv2d(1, k, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(k, k, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(k, k, 3, padding=1), nn.ReLU(), nn.Conv2d(k, 1, 3, padding=1))
            if config.zero_init:
                nn.init.zeros_(self.pixel[-1].weight)
                nn.init.zeros_(self.pixel[-1].bias)
        if config.caa:
            self.sequence_generator = SequenceWeightGenerator(n)
            self.frame_generator = FrameParameterGenerator(sum(m.out_channels for m in self._adapted()))
        self.shrink = ShiftedDCTShrinkage(config.dct_shrink) if config.dct_shrink else None
        if config.shrink_ip_qp_offset and self.shrink is None:
            raise ValueError("shrink_ip_qp_offset needs the shrinkage stage (dct_shrink)")
        #: QP added to I and P pictures' frame QP for the shrinkage thresholds
        #: (``shrink_ip_qp_offset``; an attribute so a calibration can sweep it).
        self.shrink_ip_qp_offset = float(config.shrink_ip_qp_offset)

    def _adapted(self) -> list[ExpertConv2d]:
        return [self.caa_in, *self.caa_body, *self.bae_adapted]

    def _shrunk(self, frames: torch.Tensor, priors: dict[str, torch.Tensor]) -> torch.Tensor:
        """``frames`` ``(B, T, 24, h, w)`` with Y through :attr:`shrink`, at the quantiser step
        of each frame's QP, plus :attr:`shrink_ip_qp_offset` on I and P pictures (the sequence
        CRF where the QP is unknown; no shrinkage where both are; the layer runs in float32
        whatever the autocast)."""
        from codecave.grid import CELL, Y_CHANNELS, luma

        b, t = frames.shape[:2]
        qp = priors["qp"].float().reshape(b, t)
        if self.shrink_ip_qp_offset:
            reference = priors["frame_type"].reshape(b, t) != int(FrameType.B)
            qp = qp + self.shrink_ip_qp_offset * reference
        crf = priors["crf"].float().reshape(b, 1).expand(b, t)
        qp = torch.where(torch.isfinite(qp), qp, crf)
        y = luma(frames).flatten(0, 1).unsqueeze(1)
        y = F.pixel_unshuffle(self.shrink(y, qp.flatten()), CELL).unflatten(0, (b, t))
        return torch.cat([y, frames[:, :, Y_CHANNELS.stop :]], dim=2)

    def _pixel(self, x_hat: torch.Tensor) -> torch.Tensor:
        """The full-resolution luma branch's correction, packed ``(N, 24, h, w)`` (chroma zero)."""
        from codecave.grid import CELL, luma

        y = self._normalise(luma(x_hat).unsqueeze(1))
        n = y.shape[0]
        r = F.pixel_unshuffle(self._luma_branch(y), CELL) * self.config.residual_scale
        return torch.cat([r, r.new_zeros(n, 8, *r.shape[-2:])], dim=1)

    def _luma_branch(self, y: torch.Tensor) -> torch.Tensor:
        """:attr:`pixel` on ``(N, 1, H, W)``.

        Outside training its first layer runs in float32 whatever the autocast, and it runs in
        strips of rows (:attr:`luma_strip` pixels, plus one row above and below per 3x3 layer, so
        every output sample sees what it sees on the whole picture) with its activations
        rectified in place: 16 channels per pixel."""
        if torch.is_grad_enabled():  # training: as trained, every layer under the autocast
            return self.pixel(y)
        height, width = y.shape[-2:]
        rows = max(16, self.luma_strip // (y.shape[0] * width))
        halo = sum(isinstance(layer, nn.Conv2d) for layer in self.pixel)
        out = []
        for r0 in range(0, height, rows):
            a, b = max(0, r0 - halo), min(height, r0 + rows + halo)
            with torch.autocast(y.device.type, enabled=False):
                h = self.pixel[0](y[..., a:b, :].float())
            for layer in self.pixel[1:]:
                h = h.relu_() if isinstance(layer, nn.ReLU) else layer(h)
            out.append(h[..., r0 - a : min(height, r0 + rows) - a, :])
        return torch.cat(out, dim=-2)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """What the layers are fed (``config.input_scale``)."""
        s = self.config.input_scale
        return (x - 0.5) * s if s else x

    adapt = PnPVCVE.adapt
    _frame_scales = PnPVCVE._frame_scales
    describe = PnPVCVE.describe

    def prefilter(self, frames: torch.Tensor, priors: dict[str, torch.Tensor]) -> torch.Tensor:
        """The shrinkage stage alone: ``frames`` ``(B, T, 24, h, w)`` with Y shrunk at each
        frame's QP (``priors["qp"] (B, T)``, the sequence CRF ``priors["crf"] (B,)`` where it
        is NaN; ``priors["frame_type"] (B, T)`` for :attr:`shrink_ip_qp_offset`); ``frames``
        unchanged without the stage. A stream that keeps the result can
        hand it to :meth:`forward` with ``prefiltered=True`` and shrink each frame once,
        where every call would otherwise shrink its context frames again."""
        return frames if self.shrink is None else self._shrunk(frames, priors)

    def forward(self, frames: torch.Tensor, priors: dict[str, torch.Tensor],
                sequence: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                return_stages: bool = False, targets: tuple[int, int] | None = None,
                prefiltered: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Enhance a clip of packed frames.

        Args:
            frames: ``(B, T, 24, h, w)`` packed 4:2:0 frames in [0, 1] (:func:`codecave.grid.pack`).
            priors: grid priors (:func:`codecave.codec.rasterize.grid_priors`), ``(B, T, C, h, w)``,
                plus ``crf (B,)``.
            sequence: precomputed :meth:`adapt` output (else computed from ``priors["crf"]``).
            return_stages: also return the CAA output of the same frames.
            targets: ``(lo, hi)``: enhance frames ``lo..hi-1`` only, the others being
                context (their CAA output is still computed: BAE needs it). Default: all.
            prefiltered: ``frames`` already went through :meth:`prefilter`.

        Returns:
            ``(B, n, 24, h, w)`` enhanced frames, ``n = hi - lo`` (and their CAA output when asked).
        """
        from codecave.grid import warp_packed

        b, t = frames.shape[:2]
        lo, hi = targets if targets is not None else (0, t)
        inference = not torch.is_grad_enabled()
        mixed = sequence if sequence is not None else self.adapt(priors["crf"])
        scales = self._frame_scales(priors)
        stack = list(zip(self._adapted(), mixed, scales))  # (layer, mix, frame scales) in order
        caa_layers, bae_layers = stack[: 1 + 2 * self.config.caa_blocks], stack[1 + 2 * self.config.caa_blocks :]

        def adapted(entry: tuple, feat: torch.Tensor, frames_of: slice, float32: bool = False) -> torch.Tensor:
            layer, mix, scale = entry
            n = feat.shape[0] // b
            scale = None if scale is None else scale[:, frames_of]
            if float32:  # the first CAA layer reads pixels: float32 whatever the autocast (inference)
                with torch.autocast(feat.device.type, enabled=False):
                    return layer(feat.float().view(b, n, *feat.shape[1:]), tuple(m.float() for m in mix),
                                 None if scale is None else scale.float()).flatten(0, 1)
            y = layer(feat.view(b, n, *feat.shape[1:]), mix, scale)
            return y.flatten(0, 1)

        if not prefiltered:
            frames = self.prefilter(frames, priors)
        rs = self.config.residual_scale
        # Outside training CAA and BAE go over groups of frames of at most pixel_chunk pixels.
        per = t if not inference else max(1, self.pixel_chunk // (16 * frames.shape[-2] * frames.shape[-1]))

        def caa(a: int, z: int) -> tuple[torch.Tensor, torch.Tensor]:
            """CAA of frames ``a..z-1``: ``x_caa (B, z - a, 24, h, w)`` and features ``(B * (z - a), C, h, w)``."""
            frames_of = slice(a, z)
            # NHWC: oneDNN's convolutions run about twice as fast on CPU in this layout.
            x = frames[:, frames_of].flatten(0, 1).contiguous(memory_format=torch.channels_last)
            f = F.relu(adapted(caa_layers[0], self._normalise(x), frames_of, float32=inference))
            for i in range(self.config.caa_blocks):
                f = f + adapted(caa_layers[2 * i + 2], F.relu(adapted(caa_layers[2 * i + 1], f, frames_of)), frames_of)
            return (x + rs * self.caa_out(f)).unflatten(0, (b, z - a)), f

        groups = [caa(a, min(a + per, t)) for a in range(0, t, per)]
        x_caa = torch.cat([g[0] for g in groups], dim=1)
        f = torch.cat([g[1].unflatten(0, (b, -1)) for g in groups], dim=1).flatten(0, 1)
        del groups

        def bae(lo: int, hi: int) -> torch.Tensor:
            """BAE and the luma branch for target frames ``lo..hi-1``: ``(B * (hi - lo), 24, h, w)``."""
            kept = slice(lo, hi)
            centre = x_caa[:, kept].flatten(0, 1)
            neighbours, masks = [], []
            for step, key, slot in ((-1, "mv_past", 0), (1, "mv_future", 1)):
                index = torch.arange(lo, hi, device=frames.device) + step
                present = ((index >= 0) & (index < t)).to(frames.dtype)
                nb = x_caa[:, index.clamp(0, t - 1)].flatten(0, 1)
                mask = priors["mv_valid"][:, kept, slot : slot + 1].flatten(0, 1).to(frames.dtype)
                if self.config.mv_align:
                    nb = warp_packed(nb, priors[key][:, kept].flatten(0, 1).to(frames.dtype), mask)
                weight = present.repeat(b).view(-1, 1, 1, 1)
                neighbours.append(self._normalise(nb) * weight)
                masks.append(mask * weight)
            feat = f.view(b, t, *f.shape[1:])[:, kept].flatten(0, 1)
            fused = torch.cat([self._normalise(centre), *neighbours, *masks, feat], dim=1)
            g = F.relu(self.bae_fuse(fused.contiguous(memory_format=torch.channels_last)))
            del fused, neighbours, masks
            regions = priors["partition"][:, kept, :REFINED_REGIONS].flatten(0, 1).to(frames.dtype)
            for i, entry in enumerate(bae_layers):
                h = F.relu(self.bae_conv[i](g))
                y = adapted(entry, h, kept)
                if self.config.region_refine:
                    y = y + self.bae_refine[i](torch.cat([h * regions[:, k : k + 1] for k in range(REFINED_REGIONS)], 1))
                g = g + y
            x_hat = centre + rs * self.bae_out(g)
            if self.config.pixel_branch:
                x_hat = x_hat + self._pixel(x_hat)
            return x_hat.unflatten(0, (b, hi - lo))

        x_hat = torch.cat([bae(a, min(a + per, hi)) for a in range(lo, hi, per)], dim=1)
        return (x_hat, x_caa[:, lo:hi]) if return_stages else x_hat


def model_class(config: PnPVCVEConfig | PnPVCVEFastConfig) -> type[nn.Module]:
    """The model class a config builds."""
    return PnPVCVEFast if isinstance(config, PnPVCVEFastConfig) else PnPVCVE
