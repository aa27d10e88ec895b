"""CRDS: compression-realized deep structural network.

Paper: "Compression-Realized Deep Structural Network for Video Quality Enhancement"
(ACM MM 2024; ``../shared/papers/crds_mm2024.txt``); equations restated and gaps resolved
in ``../shared/papers/SPECS.md``, section 1 (letters below refer to its 1.6).

The network copies the structure of a hybrid codec instead of reading its bitstream:

* a latent degradation-residual auto-encoder (LDR-AE, the codec's transform): an
  encoder ``E`` maps a frame to a latent at a quarter of its resolution (one latent
  position per 4x4 block, the smallest H.264/HEVC motion partition; 1.6 a), and a light
  decoder ``D(z_lq, z_hq)`` turns a pair of latents into the pixel residual between the
  frames they came from. It is pre-trained (:class:`LDRPretraining` objective) on pairs
  of a compressed frame and a blend of it with the original (``alpha`` 0 / .25 / .5 / .75);
* four denoising blocks (the codec's prediction and inverse quantisation): in each,
  mutual neighbourhood attention (MuNA) predicts every frame's latent from windows of
  frames ``t-1``, ``t`` (intra: its centre masked, 1.6 f) and ``t+1`` placed by the motion,
  a fusion merges the three predictions, and a recurrent residual propagation network
  (RPN) refines the residual "latent minus prediction"; the block's output, prediction
  plus refined residual, is one quantisation-noise slice cleaner (paper eqs. 13-24);
* the output ``x_hat + D(z4, z0)`` and, for training, the intermediate estimates
  ``x_hat + D(z4, z_s)`` whose targets blend the compressed and original frames
  (:func:`progressive_targets`, progressive denoising with intermediate supervision).

Motion. The paper refines a flow network's motion with attention and uses no codec
information. No pre-trained flow network can be had here, so the motion is OpenCV's DIS
optical flow on the decoded frames (:func:`dis_flow`; non-learned, computed on the
frames as they arrive); ``motion="codec"`` takes the codec's own vectors instead (for a
comparison run, never mixed), ``motion="zero"`` the window alone.

Colour: the Y plane (``(B, T, 1, H, W)`` luma in [0, 1]); chroma is kept as decoded. Ours:
the paper does not state its channel and SPECS 1.6 k proposed RGB; we take Y as the
MFQE-lineage papers train and score it (and codecave's VIG), at a third of RGB's cost.
``H`` and ``W`` must be multiples of 4.

Clip edges (ours): where frame ``t + m`` is outside the clip, MuNA and the warping ablation
take the neighbour on the other side (``t - m``, with its motion) instead, so no frame
predicts itself from an unmasked window; a one-frame clip falls back to its own frame with
the centre masked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codecave.layers.attention import neighbourhood_attention, window_offsets
from codecave.layers.dct import ShiftedDCTShrinkage, shrink_at_sequence_qp
from codecave.layers.warp import flow_warp

#: Latent positions per pixel side: the latent sits on the 4x4 block grid.
LATENT_STRIDE = 4
#: Quantisation-noise slices the denoising blocks remove (the paper's ``N``).
LEVELS = 4
#: ``epsilon`` of the LDR-AE loss weights ``1 / (alpha + epsilon)`` (paper eq. 12).
LDR_EPSILON = 0.25


@dataclass(frozen=True)
class CRDSConfig:
    """Sizes of CRDS (the paper's are in a supplement we do not have: SPECS 1.2.6, 1.6).

    Attributes:
        channels: latent channels ``C``.
        stem: channels at full and half resolution in the encoder.
        encoder_blocks: residual blocks at a quarter resolution after the last down-sampling.
        kernel: MuNA window side (odd).
        heads: attention heads (``channels`` must divide by it).
        fusion_blocks: residual blocks of the prediction fusion.
        rpn_blocks: residual blocks of each residual propagation network.
        muna: MuNA; False is the ablation's plain warping (``warp(z_{t+-1}, motion)`` and the
            same fusion; paper Table 3 row A, SPECS 1.7 claim 1).
        motion: ``dis`` (OpenCV DIS flow on the decoded frames), ``codec`` (the codec's
            vectors, passed in) or ``zero``.
        context: frames of context each side of a streamed chunk (:class:`CRDSStream`).
        chunk: frames enhanced per streamed model call.
        dct_shrink: 0: none; else every frame first goes through a shifted-DCT shrinkage
            (:class:`codecave.layers.dct.ShiftedDCTShrinkage`, FFmpeg ``spp``'s method with
            thresholds ``s_k x Qstep(QP)^g``) at its stream's sequence QP, and the network
            restores the result. Ours, not the paper's: it makes CRDS read one number from
            the codec, the sequence QP the enhancer already reads to hold streams back. The
            shipped weights take the stage as the default's stage 9 learned it (grafted,
            ``scripts/graft_weights.py``); the value is the stage's starting scale.
    """

    channels: int = 32
    stem: int = 16
    encoder_blocks: int = 2
    kernel: int = 3
    heads: int = 1
    fusion_blocks: int = 2
    rpn_blocks: int = 3
    muna: bool = True
    motion: str = "dis"
    context: int = 2
    chunk: int = 8
    dct_shrink: float = 0.0

    def __post_init__(self) -> None:
        if self.motion not in ("dis", "codec", "zero"):
            raise ValueError(f"motion {self.motion!r}: choose dis, codec or zero")
        if self.kernel % 2 == 0 or self.channels % self.heads:
            raise ValueError(f"kernel {self.kernel} must be odd and channels {self.channels} divide by heads {self.heads}")


#: ``small``: SPECS 1.7 (C = 32, 3x3 windows, 3 RPN blocks); ``paper``: C = 64, 5x5, 6 RPN blocks (8.1 M in the paper).
VARIANTS = {"small": CRDSConfig(),
            "paper": CRDSConfig(channels=64, stem=32, encoder_blocks=2, kernel=5, heads=2, fusion_blocks=2,
                                rpn_blocks=6)}


class ResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3, plus the input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _blocks(c: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(c) for _ in range(n)))


class LDREncoder(nn.Module):
    """``E``: ``(N, 1, H, W)`` -> latent ``(N, C, H/4, W/4)`` (SPECS 1.6 a, narrowed at full
    resolution for speed: one 3x3 convolution there, one residual block at half resolution)."""

    def __init__(self, c: CRDSConfig) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, c.stem, 3, padding=1)
        self.down1 = nn.Conv2d(c.stem, c.stem, 3, stride=2, padding=1)
        self.half_res = _blocks(c.stem, 1)
        self.down2 = nn.Conv2d(c.stem, c.channels, 3, stride=2, padding=1)
        self.quarter = _blocks(c.channels, c.encoder_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.down1(F.relu(self.head(x))))
        return self.quarter(F.relu(self.down2(self.half_res(x))))


class LDRDecoder(nn.Module):
    """``D``: two latents ``(N, C, h, w)`` -> the pixel residual ``(N, 1, 4h, 4w)`` between the
    frames they came from (``x_hq - x_lq``; paper eq. 12, SPECS 1.2.2)."""

    def __init__(self, c: CRDSConfig) -> None:
        super().__init__()
        self.merge = nn.Conv2d(2 * c.channels, c.channels, 3, padding=1)
        self.body = _blocks(c.channels, 1)
        self.out = nn.Conv2d(c.channels, LATENT_STRIDE ** 2, 3, padding=1)

    def forward(self, z_lq: torch.Tensor, z_hq: torch.Tensor) -> torch.Tensor:
        x = self.body(F.relu(self.merge(torch.cat([z_lq, z_hq], dim=1))))
        return F.pixel_shuffle(self.out(x), LATENT_STRIDE)


class MutualNeighbourhoodAttention(nn.Module):
    """MuNA (paper eqs. 18-23): frame ``t``'s latent predicted from windows of frames ``t-1``,
    ``t`` and ``t+1``, each window centred where the motion points (zero for ``t``, whose
    centre is masked).

    Logits ``A_ij = Q_i . K_rho_j(i) / sqrt(d) + B_m(j)`` with ``B_m`` a learnable bias per
    reference, head and window offset; the prediction is ``sum_j softmax_j(A_ij) V_rho_j(i)``.
    """

    offsets = (-1, 0, 1)

    def __init__(self, c: CRDSConfig) -> None:
        super().__init__()
        self.heads, self.kernel = c.heads, c.kernel
        self.query = nn.Conv2d(c.channels, c.channels, 1)
        self.key = nn.Conv2d(c.channels, c.channels, 1)
        self.value = nn.Conv2d(c.channels, c.channels, 1)
        self.position_bias = nn.Parameter(torch.zeros(len(self.offsets), c.heads, c.kernel ** 2))

    def forward(self, h: torch.Tensor, motion: dict[int, torch.Tensor], return_motion: bool = False
                ) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
        """Predictions of every frame from each reference.

        Args:
            h: ``(B, T, C, h, w)`` block-input latents.
            motion: ``{-1: (B, T, 2, h, w), 1: ...}``: where each position of frame ``t`` sits in
                frame ``t-1`` / ``t+1``, in latent positions (dx, dy).
            return_motion: also return the refined motion ``OF + sum_j softmax_j(A_ij) delta_j``
                (paper eq. 20, SPECS 1.2.4) per inter reference.

        Returns:
            ``([prediction from t-1, from t, from t+1] each (B, T, C, h, w), motion)``; the
            motion dict is empty unless asked for.
        """
        b, t, c = h.shape[:3]
        flat = h.flatten(0, 1)
        q = self.query(flat).unflatten(1, (self.heads, -1))
        k = self.key(flat).unflatten(0, (b, t))
        v = self.value(flat).unflatten(0, (b, t))
        predictions, refined = [], {}
        for slot, m in enumerate(self.offsets):
            idx, flow = reference(m, t, motion)
            kk, vv = k[:, idx].flatten(0, 1), v[:, idx].flatten(0, 1)
            if m != 0:
                kk, vv = flow_warp(torch.cat([kk, vv], dim=1), flow.flatten(0, 1)).split(c, dim=1)
            itself = torch.tensor([j == i for i, j in enumerate(idx)], device=h.device).repeat(b)
            out, weights = neighbourhood_attention(
                q, kk.unflatten(1, (self.heads, -1)), vv.unflatten(1, (self.heads, -1)), self.kernel,
                bias=self.position_bias[slot], mask_centre=itself)
            predictions.append(out.flatten(1, 2).unflatten(0, (b, t)))
            if return_motion and m != 0:
                delta = window_offsets(self.kernel, h.device).to(weights.dtype)  # (k*k, 2)
                shift = torch.einsum("nakhw,kc->nchw", weights, delta) / self.heads
                refined[m] = flow + shift.unflatten(0, (b, t))
        return predictions, refined


def reference(m: int, t: int, motion: dict[int, torch.Tensor]) -> tuple[list[int], torch.Tensor | None]:
    """The frame each of ``t`` frames predicts from at offset ``m``, and the motion to it.

    ``t + m`` where it is inside the clip; else the other side, ``t - m``, with that side's
    motion; a one-frame clip gives the frame itself (zero motion). ``m = 0``: every frame
    itself, no motion (None).

    Returns:
        ``(indices, motion (B, T, 2, h, w) or None)``.
    """
    if m == 0:
        return list(range(t)), None
    idx, other = [], []
    for i in range(t):
        j = i + m if 0 <= i + m < t else i - m if 0 <= i - m < t else i
        idx.append(j)
        other.append(j != i + m)
    flip = torch.tensor(other, device=motion[m].device).view(1, t, 1, 1, 1)
    flow = torch.where(flip, motion[-m], motion[m])
    flow = torch.where(torch.tensor(idx, device=flow.device).view(1, t, 1, 1, 1)
                       == torch.arange(t, device=flow.device).view(1, t, 1, 1, 1), 0.0, flow)
    return idx, flow


class ResidualPropagation(nn.Module):
    """RPN (SPECS 1.6 h): ``h_t = ResBlocks(conv(cat(r_t, warp(h_prev))))``, ``r~_t = r_t + conv(h_t)``,
    swept over the clip forward or backward in time (the hidden state warped by the motion)."""

    def __init__(self, c: CRDSConfig, backward: bool) -> None:
        super().__init__()
        self.backward = backward
        self.merge = nn.Conv2d(2 * c.channels, c.channels, 3, padding=1)
        self.body = _blocks(c.channels, c.rpn_blocks)
        self.out = nn.Conv2d(c.channels, c.channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # r~ = r at the start: every block starts as the identity (ours)
        nn.init.zeros_(self.out.bias)

    def forward(self, r: torch.Tensor, motion: dict[int, torch.Tensor]) -> torch.Tensor:
        """``r`` ``(B, T, C, h, w)`` -> ``r~`` of the same shape."""
        t = r.shape[1]
        order = range(t - 1, -1, -1) if self.backward else range(t)
        towards = 1 if self.backward else -1  # the frame the hidden state comes from
        state, out = None, [None] * t
        for i in order:
            prev = torch.zeros_like(r[:, i]) if state is None else flow_warp(state, motion[towards][:, i])
            state = self.body(F.relu(self.merge(torch.cat([r[:, i], prev], dim=1))))
            out[i] = r[:, i] + self.out(state)
        return torch.stack(out, dim=1)


class DenoisingBlock(nn.Module):
    """One block ``Phi_s``: MuNA (or plain warping), fusion into the prediction ``x_bar``,
    the residual ``r = z - x_bar`` refined by the RPN; output ``x_bar + r~`` (paper eqs. 15, 24)."""

    def __init__(self, c: CRDSConfig, backward: bool) -> None:
        super().__init__()
        self.muna = MutualNeighbourhoodAttention(c) if c.muna else None
        inputs = 3 if c.muna else 2
        self.fusion = nn.Sequential(nn.Conv2d(inputs * c.channels, c.channels, 3, padding=1), nn.ReLU(),
                                    _blocks(c.channels, c.fusion_blocks))
        self.rpn = ResidualPropagation(c, backward)

    def predict(self, z: torch.Tensor, motion: dict[int, torch.Tensor], return_motion: bool = False
                ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The fused prediction ``x_bar`` ``(B, T, C, h, w)`` of every frame's latent."""
        b, t = z.shape[:2]
        refined: dict[int, torch.Tensor] = {}
        if self.muna is not None:
            predictions, refined = self.muna(z, motion, return_motion)
        else:
            predictions = []
            for m in (-1, 1):
                idx, flow = reference(m, t, motion)
                predictions.append(flow_warp(z[:, idx].flatten(0, 1), flow.flatten(0, 1)).unflatten(0, (b, t)))
        fused = self.fusion(torch.cat(predictions, dim=2).flatten(0, 1))
        return fused.unflatten(0, (b, t)), refined

    def forward(self, z: torch.Tensor, motion: dict[int, torch.Tensor]) -> torch.Tensor:
        x_bar, _ = self.predict(z, motion)
        return x_bar + self.rpn(z - x_bar, motion)


class CRDS(nn.Module):
    """Compression-realized deep structural network on the Y plane (see the module).

    Call it on a whole clip; stream frames through :class:`CRDSStream`
    (:meth:`streamer`).
    """

    domain = "y"
    #: bfloat16 autocast on CPU unless told otherwise: faster (``benchmarks/crds_cost.py``), and the
    #: validation gain at QP 37 moved by -0.0004 dB against fp32 (README, CRDS).
    inference_precision = "bf16"

    def __init__(self, config: CRDSConfig = CRDSConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = LDREncoder(config)
        self.decoder = LDRDecoder(config)
        # blocks 4 and 2 sweep backward in time, 3 and 1 forward (SPECS 1.6 h)
        self.blocks = nn.ModuleList(DenoisingBlock(config, backward=s % 2 == 0) for s in range(LEVELS, 0, -1))
        self.shrink = ShiftedDCTShrinkage(config.dct_shrink) if config.dct_shrink else None

    def describe(self) -> dict[str, object]:
        """Architecture settings, for checkpoints and reports."""
        return asdict(self.config)

    def streamer(self, qp: torch.Tensor | None = None) -> CRDSStream:
        """A :class:`CRDSStream` over this model (``qp`` ``(1,)``: the sequence QP, read only with
        ``dct_shrink``; CRDS as published takes no codec information).

        Raises:
            ValueError: ``dct_shrink`` without ``qp``.
        """
        return CRDSStream(self, qp=qp)

    def prefilter(self, frames: torch.Tensor, qp: torch.Tensor | None) -> torch.Tensor:
        """The frames ``(B, T, 1, H, W)`` or ``(N, 1, H, W)`` through the shrinkage stage at the
        sequence QP ``qp`` ``(B,)`` or ``(N,)`` (NaN: unchanged; the layer runs in float32 whatever
        the autocast); the frames as they are without ``dct_shrink``.

        Raises:
            ValueError: ``dct_shrink`` without ``qp``.
        """
        return shrink_at_sequence_qp(self.shrink, frames, qp, "CRDS")

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 1, H, W)`` -> latents ``(B, T, C, H/4, W/4)``.

        Raises:
            ValueError: ``H`` or ``W`` not a multiple of 4.
        """
        h, w = frames.shape[-2:]
        if h % LATENT_STRIDE or w % LATENT_STRIDE:
            raise ValueError(f"CRDS takes frames with H, W multiples of 4; got {tuple(frames.shape)}")
        return self.encoder(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])

    def decode(self, x_hat: torch.Tensor, z_lq: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The estimate ``x_hat + D(z_lq, z)`` ``(B, T, 1, H, W)`` (SPECS 1.6 b)."""
        residual = self.decoder(z_lq.flatten(0, 1), z.flatten(0, 1)).unflatten(0, z.shape[:2])
        return x_hat + residual.to(x_hat.dtype)

    def motion(self, clip: torch.Tensor, codec_motion: dict[int, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
        """Motion of every frame to its neighbours at latent resolution, ``{-1: (B, T, 2, h, w), 1: ...}``
        in latent positions.

        Args:
            clip: ``(B, T, 1, H, W)`` decoded luma in [0, 1].
            codec_motion: for ``motion="codec"``: the codec's ``{-1: mv_past, 1: mv_future}`` on the
                4x4 grid (grid units = latent positions), ``(B, T, 2, H/4, W/4)``.

        Raises:
            ValueError: ``motion="codec"`` without the codec's vectors.
        """
        b, t, _, h, w = clip.shape
        shape = (b, t, 2, h // LATENT_STRIDE, w // LATENT_STRIDE)
        mode = self.config.motion
        if mode == "zero":
            zero = clip.new_zeros(shape)
            return {-1: zero, 1: zero}
        if mode == "codec":
            if codec_motion is None:
                raise ValueError("this CRDS runs on the codec's motion vectors (motion='codec'): pass them")
            return {m: codec_motion[m].to(clip.dtype) for m in (-1, 1)}
        luma = clip[:, :, 0].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
        flows = {m: np.zeros((b, t, 2, h, w), np.float32) for m in (-1, 1)}
        for i in range(b):
            for m in (-1, 1):
                flows[m][i] = dis_flow(luma[i], m)
        return {m: latent_motion(torch.from_numpy(f).to(clip.device)).to(clip.dtype) for m, f in flows.items()}

    def forward(self, clip: torch.Tensor, codec_motion: dict[int, torch.Tensor] | None = None,
                return_stages: bool = False, qp: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Enhance a clip.

        Args:
            clip: ``(B, T, 1, H, W)`` decoded luma in [0, 1], ``H`` and ``W`` multiples of 4.
            codec_motion: the codec's vectors (``motion="codec"`` only; see :meth:`motion`).
            return_stages: also return the intermediate estimates.
            qp: ``(B,)`` sequence QP of each clip's stream (``dct_shrink`` only: the clip goes
                through :meth:`prefilter` first).

        Returns:
            The enhanced clip ``(B, T, 1, H, W)``; with ``return_stages``, also the estimates
            after blocks 4, 3 and 2 (levels 3, 2, 1: targets ``alpha = 0.75, 0.5, 0.25``).

        Raises:
            ValueError: ``dct_shrink`` without ``qp``; see also :meth:`encode`, :meth:`motion`.
        """
        return self.restore(self.prefilter(clip, qp), codec_motion, return_stages)

    def restore(self, clip: torch.Tensor, codec_motion: dict[int, torch.Tensor] | None = None,
                return_stages: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The network alone on a clip already through :meth:`prefilter` (see :meth:`forward`)."""
        motion = self.motion(clip, codec_motion)
        z4 = self.encode(clip)
        z, stages = z4, []
        for s, block in enumerate(self.blocks):
            z = block(z, motion)
            if return_stages and s < LEVELS - 1:
                stages.append(self.decode(clip, z4, z))
        out = self.decode(clip, z4, z)
        return (out, stages) if return_stages else out


def progressive_targets(x_hat: torch.Tensor, x: torch.Tensor, levels: int = LEVELS) -> list[torch.Tensor]:
    """The progressive hybrid targets ``alpha_s x_hat + (1 - alpha_s) x`` for ``s = levels-1 .. 1``
    (``alpha_s = s / levels``: 0.75, 0.5, 0.25 for the paper's ``N = 4``; paper eqs. 10, 16)."""
    return [torch.lerp(x, x_hat, s / levels) for s in range(levels - 1, 0, -1)]


def ldr_weight(alpha: float | torch.Tensor) -> float | torch.Tensor:
    """The LDR-AE loss weight ``1 / (alpha + 0.25)`` of a pair whose HQ frame is the blend at ``alpha``
    (paper eq. 12: 4, 2, 1.33 and 1 for alpha 0, .25, .5, .75)."""
    return 1.0 / (alpha + LDR_EPSILON)


def latent_motion(flow: torch.Tensor) -> torch.Tensor:
    """Pixel flow ``(..., 2, H, W)`` -> latent flow ``(..., 2, H/4, W/4)``: the 4x4 block mean, divided by 4."""
    lead = flow.shape[:-3]
    pooled = F.avg_pool2d(flow.reshape(-1, *flow.shape[-3:]), LATENT_STRIDE) / LATENT_STRIDE
    return pooled.reshape(*lead, *pooled.shape[-3:])


def dis_flow(luma: np.ndarray, step: int, preset: str = "fast") -> np.ndarray:
    """OpenCV DIS optical flow of every frame to frame ``t + step``.

    Args:
        luma: ``(T, H, W)`` uint8 Y planes.
        step: -1 (to the previous frame) or 1 (to the next).
        preset: DIS preset: ``ultrafast``, ``fast`` or ``medium``.

    Returns:
        ``(T, 2, H, W)`` float32 (dx, dy) in pixels: pixel (x, y) of frame t sits at
        (x + dx, y + dy) in frame t + step (the codec's ``mv_past``/``mv_future`` convention);
        zero where ``t + step`` is outside the clip.
    """
    import cv2

    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    t, h, w = luma.shape
    out = np.zeros((t, 2, h, w), np.float32)
    for i in range(t):
        j = i + step
        if 0 <= j < t:
            out[i] = dis.calc(np.ascontiguousarray(luma[i]), np.ascontiguousarray(luma[j]), None).transpose(2, 0, 1)
    return out


class CRDSStream:
    """Run CRDS over frames that arrive one at a time, with memory flat in the length.

    Frames are enhanced ``chunk`` at a time, each call seeing ``context`` frames more on
    each side (the recurrences and windows reach across chunk edges; the context stands in
    for the rest of the clip). Feed luma frames ``(B, 1, H, W)`` to :meth:`push`; it
    returns the enhanced frames of a chunk when one is ready (a ``(B, 1, H, W)`` tensor at a
    time, through :meth:`push` returning the first and queueing the rest), else None;
    :meth:`flush` returns the rest.
    """

    def __init__(self, model: CRDS, chunk: int | None = None, context: int | None = None,
                 qp: torch.Tensor | None = None) -> None:
        if model.shrink is not None and qp is None:
            raise ValueError("this CRDS shrinks at the sequence QP (dct_shrink): pass qp")
        self.model = model
        self.qp = qp  # the sequence QP (1,), for the shrinkage stage
        self.chunk = chunk or model.config.chunk
        self.context = model.config.context if context is None else context
        self.frames: list[torch.Tensor] = []  # frames from `first` on
        self.first = 0  # clip index of frames[0]
        self.done = 0  # frames enhanced so far
        self.ready: list[torch.Tensor] = []

    def _run(self, end: int) -> None:
        """Enhance frames ``done .. end`` (clip indices) with the context held."""
        lo = max(self.first, self.done - self.context)
        hi = min(self.first + len(self.frames), end + self.context)
        clip = torch.stack(self.frames[lo - self.first: hi - self.first], dim=1)
        out = self.model.restore(clip)
        self.ready += list(out[:, self.done - lo: end - lo].unbind(1))
        self.done = end
        drop = max(0, self.done - self.context - self.first)
        del self.frames[:drop]
        self.first += drop

    def push(self, frame: torch.Tensor) -> torch.Tensor | None:
        """Add the next frame; return the next enhanced frame, if one is ready."""
        if self.model.shrink is not None:  # once per frame, not again in every chunk's context
            self.frames.append(self.model.prefilter(frame, self.qp.reshape(1).expand(frame.shape[0])))
        else:
            self.frames.append(frame)
        if self.first + len(self.frames) >= self.done + self.chunk + self.context:
            self._run(self.done + self.chunk)
        return self.ready.pop(0) if self.ready else None

    def flush(self) -> list[torch.Tensor]:
        """The enhanced frames still held (the clip has ended)."""
        end = self.first + len(self.frames)
        if self.done < end:
            self._run(end)
        out, self.ready = self.ready, []
        return out


def count(variant: str) -> int:
    """Parameters of a variant."""
    return sum(p.numel() for p in CRDS(VARIANTS[variant]).parameters())


__all__ = [
    "CRDS",
    "VARIANTS",
    "CRDSConfig",
    "CRDSStream",
    "count",
    "dis_flow",
    "latent_motion",
    "ldr_weight",
    "progressive_targets",
]
