"""Shifted-DCT shrinkage with a threshold set by the codec's quantiser.

Re-application of the block transform (Nosratinia, "Enhancement of JPEG-compressed images by
re-application of JPEG", J. VLSI Signal Processing 27, 2001), the method of FFmpeg's ``spp``
filter: the picture is cut into 8x8 blocks at many shifts of the grid, each block's DCT
coefficients below a threshold are set to zero, and the inverse transforms of all shifts
are averaged. Quantisation noise that the codec's own transform left in one block position
shows up as small coefficients at the others and is removed; edges, whose coefficients are
large at every shift, stay.

Ours: the shifts are the 16 even ones of the 8x8 grid (``spp`` at quality 4 uses 16 too,
in another pattern); the threshold of frequency ``k`` is ``s_k x Qstep(QP)^g`` code values,
with the H.264 quantiser step ``Qstep(QP) = 0.625 x 2^(QP / 6)`` (ITU-T H.264 section 8.6,
1 at QP 4) of the frame's QP, and ``s_k`` and ``g`` learned, where ``spp`` takes one
constant Q for the picture. On four training clips the best of 0.2, 0.3 and 0.4 x Qstep
fell from 0.4 at CRF 15 to 0.2 at CRF 25 and 35: the best threshold grows with QP more
slowly than the step, hence ``g``, started at 0.5 (README, "The shipped default"). The hard threshold is a steep sigmoid
so that the thresholds can be learned. The DC coefficient is never touched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Side of the transform block.
BLOCK = 8
#: Distance between two shifts of the block grid (16 shifts of the 64).
SHIFT_STEP = 2
#: Pixels shrunk in one go (bounds the memory of the 16-per-pixel coefficients).
CHUNK_PIXELS = 1 << 20
#: Padded pixels per strip of rows outside training, one picture at a time (the 16 coefficients
#: per pixel of a strip stay in cache: ``benchmarks/strip_cost.py`` measured 14 against 37 ms a
#: 640x360 picture for 2^17-pixel strips over groups of pictures, 71 against 172 at 1280x720).
STRIP_PIXELS = 1 << 16


def qstep(qp: torch.Tensor) -> torch.Tensor:
    """H.264 / HEVC quantiser step in 8-bit code values: ``0.625 * 2 ** (qp / 6)`` (1.0 at QP 4)."""
    return 0.625 * torch.pow(2.0, qp / 6.0)


def dct_basis(n: int = BLOCK) -> torch.Tensor:
    """Orthonormal 2-D DCT-II basis ``(n*n, 1, n, n)``: filter ``u * n + v`` is the
    product of the 1-D cosines of frequencies ``u`` (rows) and ``v`` (columns)."""
    i = torch.arange(n, dtype=torch.float64)
    c = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n))
    c = c * torch.where(i[:, None] == 0, math.sqrt(1 / n), math.sqrt(2 / n))
    return torch.einsum("ux,vy->uvxy", c, c).reshape(n * n, 1, n, n).float()


class ShiftedDCTShrinkage(nn.Module):
    """Quantiser-adaptive shifted-DCT shrinkage of one plane (``spp`` with learned thresholds).

    Args:
        init_scale: starting ``s_k`` for every AC frequency.
        init_exponent: starting ``g``.
        softness: width of the sigmoid gate, as a fraction of the threshold.

    Shapes: :meth:`forward` takes a plane ``(N, 1, H, W)`` in [0, 1] and each picture's QP
    ``(N,)`` (NaN where unknown: that picture comes back unchanged) and returns
    ``(N, 1, H, W)``. ``H`` and ``W`` may be anything: the plane is padded by edge
    replication. Thresholds are in 8-bit code values (``peak`` 255).
    """

    def __init__(self, init_scale: float = 1.0, init_exponent: float = 0.5, softness: float = 0.1,
                 peak: float = 255.0) -> None:
        super().__init__()
        self.register_buffer("basis", dct_basis(), persistent=False)
        self.log_scale = nn.Parameter(torch.full((BLOCK * BLOCK,), math.log(init_scale)))
        self.exponent = nn.Parameter(torch.tensor(float(init_exponent)))
        self.softness = softness
        self.peak = peak

    def thresholds(self, qp: torch.Tensor) -> torch.Tensor:
        """``(N, 64, 1, 1)`` thresholds per frequency in [0, 1] units for pictures of QP
        ``qp`` ``(N,)``; DC's is 0, and all are 0 where the QP is NaN."""
        known = torch.isfinite(qp)
        step = torch.pow(qstep(torch.where(known, qp, torch.zeros_like(qp))), self.exponent)
        step = torch.where(known, step, torch.zeros_like(step)) / self.peak
        scale = torch.exp(self.log_scale) * (torch.arange(BLOCK * BLOCK, device=qp.device) > 0)
        return (scale[None, :] * step[:, None])[..., None, None]

    def forward(self, plane: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        """Shrink ``plane`` ``(N, 1, H, W)`` at each picture's QP ``qp`` ``(N,)``; same shape back.

        The coefficients take 16 values per pixel, so pictures go through in groups of at most
        :data:`CHUNK_PIXELS` pixels (one picture at a time from 1280x720 up); outside training one
        picture at a time, in strips of rows (:data:`STRIP_PIXELS`). Runs in float32
        (float64 stays float64) whatever the autocast: bf16 cannot carry one code value; the
        result comes back in ``plane``'s dtype."""
        work = plane if plane.dtype in (torch.float32, torch.float64) else plane.float()
        per = max(1, CHUNK_PIXELS // (plane.shape[-2] * plane.shape[-1])) if torch.is_grad_enabled() else 1
        with torch.autocast(plane.device.type, enabled=False):
            if plane.shape[0] > per:
                out = torch.cat([self._shrink(p, q) for p, q in zip(work.split(per), qp.split(per))])
            else:
                out = self._shrink(work, qp)
        return out.to(plane.dtype)

    def _shrink(self, plane: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        h, w = plane.shape[-2:]
        pad = BLOCK
        # pad so every pixel is covered by all 16 shifts and the grid stays aligned to the codec's
        bottom, right = pad + (-(h + 2 * pad)) % SHIFT_STEP, pad + (-(w + 2 * pad)) % SHIFT_STEP
        x = F.pad(plane, (pad, right, pad, bottom), mode="replicate")
        t = self.thresholds(qp.to(plane.dtype)).to(plane.dtype)
        if torch.is_grad_enabled():
            return self._shrink_padded(x, t)[..., pad : pad + h, pad : pad + w]
        # Outside training: strips of rows, each with the rows of the blocks that reach into
        # it (blocks start on even rows: 6 rows above, 6 or 7 below), so that the 16
        # coefficients per pixel stay small and the result is the same sum, sample for sample.
        rows = max(2 * BLOCK, STRIP_PIXELS // (x.shape[-1] * x.shape[0]) // SHIFT_STEP * SHIFT_STEP)
        out = plane.new_empty(plane.shape)
        reach = BLOCK - SHIFT_STEP
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a, b = pad + r0 - reach, pad + r1 + reach + r1 % SHIFT_STEP
            part = self._shrink_padded(x[..., a:b, :], t)
            out[..., r0:r1, :] = part[..., pad + r0 - a : pad + r1 - a, pad : pad + w]
        return out

    def _shrink_padded(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Shrink the blocks of a padded plane ``x`` (even height and width) at thresholds ``t``;
        the average over the 16 shifts, same shape (rows near the border see fewer blocks)."""
        coeff = F.conv2d(x, self.basis.to(x.dtype), stride=SHIFT_STEP)
        scale = 1.0 / (self.softness * t + 1e-6)
        if torch.is_grad_enabled():
            gate = torch.sigmoid((coeff.abs() - t) * scale)
            gate = torch.cat([torch.ones_like(gate[:, :1]), gate[:, 1:]], dim=1)
            kept = coeff * gate
        else:  # the same values, in place: the coefficients are 16 values per pixel
            gate = coeff.abs().sub_(t).mul_(scale).sigmoid_()
            gate[:, 0] = 1.0
            kept = gate.mul_(coeff)
        return self._inverse(kept) / (BLOCK // SHIFT_STEP) ** 2

    def _inverse(self, coeff: torch.Tensor) -> torch.Tensor:
        """``conv_transpose2d(coeff, basis, stride=2)`` as a convolution whose four outputs are
        the four phases of the 2x finer grid, then a pixel shuffle: the same sums, faster on
        CPU (with the in-place gate, the whole layer at 1280x720 on one thread went from 649
        to 343 ms).

        Output pixel ``(2p + a, 2q + b)`` sums ``coeff[k, p - m, q - n] x basis[k, 2m + a, 2n + b]``
        over ``k`` and ``m, n`` in 0..3."""
        taps = BLOCK // SHIFT_STEP
        b = self.basis.to(coeff.dtype).reshape(-1, taps, SHIFT_STEP, taps, SHIFT_STEP)  # k, m, a, n, b
        weight = b.flip(1, 3).permute(2, 4, 0, 1, 3).reshape(SHIFT_STEP * SHIFT_STEP, -1, taps, taps)
        phases = F.conv2d(F.pad(coeff, (taps - 1,) * 4), weight)
        return F.pixel_shuffle(phases, SHIFT_STEP)


def shrink_at_sequence_qp(shrink: ShiftedDCTShrinkage | None, frames: torch.Tensor, qp: torch.Tensor | None,
                          model: str, offset: float = 0.0) -> torch.Tensor:
    """Luma frames ``(B, T, 1, H, W)`` or ``(N, 1, H, W)`` in [0, 1] through ``shrink`` at each
    stream's sequence QP ``qp`` (``(B,)`` or ``(N,)``; NaN: unchanged) plus ``offset`` (QP
    units), same shape back; the frames as they are when ``shrink`` is None. The stage of the
    luma models that take it (``dct_shrink``): in front of CRDS's network, after VIG's.

    Raises:
        ValueError: a stage but no ``qp`` (``model`` names the model in the message).
    """
    if shrink is None:
        return frames
    if qp is None:
        raise ValueError(f"this {model} shrinks at the sequence QP (dct_shrink): pass qp")
    lead = frames.shape[:-3]
    per_frame = (qp.float() + offset).reshape(-1, *([1] * (len(lead) - 1))).expand(lead).reshape(-1)
    return shrink(frames.reshape(-1, *frames.shape[-3:]), per_frame).reshape(frames.shape)


__all__ = ["BLOCK", "CHUNK_PIXELS", "SHIFT_STEP", "STRIP_PIXELS", "ShiftedDCTShrinkage", "dct_basis", "qstep",
           "shrink_at_sequence_qp"]
