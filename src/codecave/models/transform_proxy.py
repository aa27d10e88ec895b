"""A non-learned transform-coding model of a block-based codec's rate and reconstruction.

Neural wrapping trains its pre-processor through a proxy of the real codec. The paper's
proxy is learned (:mod:`codecave.models.codec_proxy`); its reference [24] (Hu et al.,
"Standard compliant video coding using low complexity, switchable neural wrappers", ICIP
2024) derives a proxy from a differentiable DCT codec instead, and SPECS 3.7 claim 5 asks for
such a non-learned proxy beside the learned one. This is ours, written after H.264's
structure (ITU-T H.264 sections 8.3-8.5): each plane is predicted (intra pictures: the
4x4 block's DC, which H.264's intra prediction mostly supplies from the neighbours; inter
pictures: integer-pel block motion compensation from the codec's *decoded* previous
picture, found by a full search), the residual goes through the orthonormal 4x4 DCT, and

* the rate is the *rate surrogate* ``S = sum log2(1 + |c| / Qstep)`` over the coefficients,
  in bits-like units per luma pixel; an affine map per picture type fitted to the codec's
  real bits turns it into bits (:class:`RateCalibration`);
* the reconstruction quantises the coefficients with H.264's reference dead zone (rounding
  offset 1/3 intra, 1/6 inter) and adds the prediction back; for training, its gradient
  passes through the coded coefficients only (the values the wrapper reads are the real
  codec's output).

The search and the prediction take no gradient (the reference picture is the codec's
decoded one, a constant); the surrogate is differentiable with respect to the current
picture. ``Qstep(QP) = 0.625 x 2^(QP / 6)`` code values (:func:`codecave.layers.dct.qstep`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from codecave.grid import pack, unpack
from codecave.layers.dct import dct_basis, qstep

#: Side of the transform block (H.264's 4x4 integer transform, here the orthonormal DCT).
TRANSFORM = 4
#: Motion search per plane: block side and search radius in samples (luma, chroma).
SEARCH = {"luma": (8, 6), "chroma": (4, 3)}
#: Dead-zone rounding offsets (intra, inter) of H.264's reference encoder (JM); x264 quantises
#: with trellis and dead zones of its own, which this model does not reproduce.
DEADZONE = (1 / 3, 1 / 6)
#: x264's defaults around a fixed QP: intra pictures at ``QP - 6 log2(ipratio 1.4)``, chroma
#: at ``chroma_qp_offset`` -2 (with psy-rd on), both written in its settings SEI.
X264_INTRA_QP_OFFSET = -6 * math.log2(1.4)
X264_CHROMA_QP_OFFSET = -2
#: H.264 Table 8-15: chroma QP of a luma-derived index 30..51 (identity below 30).
CHROMA_QP_TABLE = (29, 30, 31, 32, 32, 33, 34, 34, 35, 35, 36, 36, 37, 37, 37, 38, 38, 38, 39, 39, 39, 39)


def chroma_qp(qp: float) -> float:
    """H.264's chroma QP for index ``qp`` (Table 8-15, linear between its integer entries)."""
    if qp < 30:
        return qp
    i = min(int(qp), 51)
    lo = CHROMA_QP_TABLE[i - 30]
    hi = CHROMA_QP_TABLE[min(i + 1, 51) - 30]
    return lo + (hi - lo) * min(qp - i, 1.0)


def motion_lambda(qp: float) -> float:
    """x264's motion-search Lagrangian at ``qp``: ``2^((QP - 12) / 6)`` code values of SAD per bit."""
    return 2.0 ** ((qp - 12) / 6)


def vector_bits(dy: int, dx: int) -> int:
    """Bits of a motion vector difference (samples) as signed Exp-Golomb codes in quarter samples."""
    return sum(2 * math.floor(math.log2(2 * abs(4 * d) + 1)) + 1 for d in (dy, dx))


def block_motion_prediction(current: torch.Tensor, reference: torch.Tensor, block: int, radius: int,
                            lagrangian: float = 0.0) -> torch.Tensor:
    """Integer-pel block motion compensation by full search (sum of absolute differences
    plus ``lagrangian`` times the vector's bits, :func:`vector_bits`).

    Args:
        current: ``(N, H, W)``; only its values are read (no gradient flows through the search).
        reference: ``(N, H, W)``, the picture predicted from (edges replicated beyond it).
        block: block side; ``H`` and ``W`` must be multiples of it.
        radius: largest displacement in samples, each axis.
        lagrangian: code values (of 255) of SAD per bit of the vector (:func:`motion_lambda`;
            0: SAD alone).

    Returns:
        The prediction ``(N, H, W)`` without gradient: each block of ``current`` gets the
        block of ``reference`` displaced by the vector of least cost; of equal costs, the
        shortest vector (candidates are tried from the shortest out, and only a strictly
        lower cost replaces the best).

    Raises:
        ValueError: a side not a multiple of ``block``.
    """
    n, h, w = current.shape
    if h % block or w % block:
        raise ValueError(f"{w}x{h} is not a multiple of the {block}-sample block")
    with torch.no_grad():
        cur = current.detach().unsqueeze(1)
        ref = F.pad(reference.detach().unsqueeze(1), (radius,) * 4, mode="replicate")
        best_cost = torch.full((n, 1, h // block, w // block), float("inf"), device=current.device)
        prediction = torch.zeros_like(cur)
        span = range(-radius, radius + 1)
        for dy, dx in sorted(((dy, dx) for dy in span for dx in span), key=lambda v: (abs(v[0]) + abs(v[1]), v)):
            shifted = ref[..., radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            cost = F.avg_pool2d((cur - shifted).abs(), block) + lagrangian * vector_bits(dy, dx) / (255 * block**2)
            better = cost < best_cost
            best_cost = torch.where(better, cost, best_cost)
            mask = F.interpolate(better.to(cur.dtype), scale_factor=block, mode="nearest")
            prediction = torch.where(mask.bool(), shifted, prediction)
    return prediction.squeeze(1)


def _dct4(x: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` -> coefficients ``(N, 16, H/4, W/4)`` of the 4x4 blocks (DC first)."""
    basis = dct_basis(TRANSFORM).to(x.device, x.dtype)
    return F.conv2d(x.unsqueeze(1), basis, stride=TRANSFORM)


def _idct4(c: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_dct4`: ``(N, 16, H/4, W/4)`` -> ``(N, H, W)``."""
    basis = dct_basis(TRANSFORM).to(c.device, c.dtype)
    return F.conv_transpose2d(c, basis, stride=TRANSFORM).squeeze(1)


def _planes(x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    y, u, v = unpack(x)
    return [("luma", y), ("chroma", u), ("chroma", v)]


class TransformCoding(NamedTuple):
    """What :func:`transform_code` returns.

    Attributes:
        surrogate: ``(B, T)`` rate surrogate per luma pixel, differentiable with respect to
            the frames.
        reconstruction: ``(B, T, 24, h, w)`` the model's decoded pictures (no gradient).
        coded: ``(B, T, 24, h, w)`` the reconstruction's values with the gradient of the
            coded coefficients alone: a change of the frames reaches it through the 4x4 DCT
            coefficients whose quantised level is not zero (and each intra block's DC) and
            through nothing else, as the dead-zone quantiser passes it. Values of both are
            the model's, not the codec's.
    """

    surrogate: torch.Tensor
    reconstruction: torch.Tensor
    coded: torch.Tensor


def transform_code(frames: torch.Tensor, references: torch.Tensor, qp: float,
                   intra_qp_offset: float = X264_INTRA_QP_OFFSET,
                   chroma_qp_offset: float = X264_CHROMA_QP_OFFSET) -> TransformCoding:
    """The transform-coding model of a group of pictures: rate surrogate and reconstruction.

    Args:
        frames: packed 4:2:0 ``(B, T, 24, h, w)`` in [0, 1], the pictures given to the codec
            (the first intra, the rest predicted); luma ``4h x 4w`` with ``h``, ``w`` even.
        references: ``(B, T, 24, h, w)``: the codec's decoded pictures; picture ``t`` is
            predicted from ``references[:, t - 1]`` (low delay, one reference).
        qp: the codec's quantisation parameter of its predicted pictures (H.264 scale).
        intra_qp_offset: added to ``qp`` for intra pictures (x264's ``ipratio``).
        chroma_qp_offset: added to a picture's QP for its chroma, then H.264's chroma table.

    Returns:
        :class:`TransformCoding`: the rate surrogate ``S``, the reconstruction, and the
        reconstruction with the coded coefficients' gradient.

    Raises:
        ValueError: a luma side not a multiple of 8 (the motion search's blocks).
    """
    b, t = frames.shape[:2]
    pic_qp = {False: float(qp), True: float(qp) + intra_qp_offset}
    pixels = 16 * frames.shape[-1] * frames.shape[-2]
    current, previous = _planes(frames.flatten(0, 1)), _planes(references.flatten(0, 1))
    intra = torch.zeros(b, t, dtype=torch.bool, device=frames.device)
    intra[:, 0] = True
    intra = intra.flatten()
    surrogate = torch.zeros(b * t, device=frames.device, dtype=frames.dtype)
    rebuilt, passed = [], []
    for (kind, cur), (_, ref) in zip(current, previous):
        block, radius = SEARCH[kind]
        qps = {k: chroma_qp(v + chroma_qp_offset) if kind == "chroma" else v for k, v in pic_qp.items()}
        step = (qstep(torch.tensor([qps[bool(i)] for i in intra.tolist()])) / 255).to(cur)[:, None, None, None]
        ref_prev = torch.roll(ref.reshape(b, t, *ref.shape[-2:]), 1, dims=1).flatten(0, 1)  # picture t - 1
        inter_pred = block_motion_prediction(cur, ref_prev, block, radius, motion_lambda(pic_qp[False]))
        coeff = _dct4(cur)
        predicted = _dct4(inter_pred)
        predicted[intra] = 0
        # intra: each block's own DC stands for what H.264's intra prediction supplies from the
        # neighbours (an oracle: the intra DC costs no rate and gets no rate gradient)
        predicted[intra, 0] = coeff[intra, 0].detach()
        residual = coeff - predicted
        surrogate = surrogate + torch.log2(1 + residual.abs() / step).sum((1, 2, 3)) / pixels
        offset = torch.where(intra, DEADZONE[0], DEADZONE[1]).to(coeff.dtype)[:, None, None, None]
        with torch.no_grad():
            levels = torch.sign(residual) * torch.floor(residual.abs() / step + offset)
            rebuilt.append(_idct4(levels * step + predicted).clamp(0, 1))
            mask = levels != 0
            mask[intra, 0] = True
        path = _idct4(coeff * mask)
        passed.append(rebuilt[-1] + path - path.detach())
    recon = pack(*rebuilt).reshape(frames.shape)
    return TransformCoding(surrogate.reshape(b, t), recon, pack(*passed).reshape(frames.shape))


class RateCalibration:
    """The affine map ``bits ~ alpha_k S + beta_k`` per picture type ``k`` (intra, inter),
    fitted by least squares to the codec's real bits, over an exponential moving average of
    the batches' sums (``decay`` per batch) so that it follows a drifting pre-processor.

    Args:
        decay: weight of the past at each update (0: this batch alone).
    """

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.stats = torch.zeros(2, 5, dtype=torch.float64)  # n, sum S, sum R, sum S^2, sum S R

    def update(self, surrogate: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Add a batch (``(B, T)`` surrogate and real bits per luma pixel, the first
        picture intra) and return the slopes ``alpha`` per picture ``(T,)`` (never negative)."""
        s, r = surrogate.detach().double().cpu(), bits.detach().double().cpu()
        new = torch.zeros_like(self.stats)
        for k, (ss, rr) in enumerate(((s[:, :1], r[:, :1]), (s[:, 1:], r[:, 1:]))):
            new[k] = torch.stack([torch.tensor(float(ss.numel())), ss.sum(), rr.sum(), (ss * ss).sum(),
                                  (ss * rr).sum()])
        self.stats = self.decay * self.stats + new if self.stats[:, 0].any() else new
        alpha, _ = self.fit()
        slopes = torch.full((surrogate.shape[1],), float(alpha[1]))
        slopes[0] = float(alpha[0])
        return slopes.to(surrogate.device, surrogate.dtype)

    def fit(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``alpha, beta`` ``(2,)`` (intra, inter) of the current statistics."""
        n, s, r, ss, sr = self.stats.unbind(1)
        n = n.clamp(min=1e-9)
        var = ss / n - (s / n) ** 2
        cov = sr / n - (s / n) * (r / n)
        alpha = torch.where(var > 1e-12, cov / var.clamp(min=1e-12), torch.zeros_like(var)).clamp(min=0)
        return alpha, r / n - alpha * s / n


__all__ = ["CHROMA_QP_TABLE", "DEADZONE", "SEARCH", "TRANSFORM", "X264_CHROMA_QP_OFFSET", "X264_INTRA_QP_OFFSET",
           "RateCalibration", "TransformCoding", "block_motion_prediction", "chroma_qp", "motion_lambda",
           "transform_code", "vector_bits"]
