"""YUV 4:2:0 planes <-> the packed 4x4 luma-block grid, exactly (design section 3).

A 4:2:0 picture of ``H x W`` luma samples (``H``, ``W`` multiples of 4) becomes one
tensor ``(24, H/4, W/4)``: the Y plane pixel-unshuffled by 4 (16 channels, sample
``(4i + a, 4j + b)`` in channel ``4a + b``), then U and V pixel-unshuffled by 2
(4 channels each, sample ``(2i + a, 2j + b)`` in channel ``16 + 2a + b`` and
``20 + 2a + b``). One grid position is one 4x4 luma block with its chroma: the
smallest H.264 partition and the size of its transforms, and the cell of the
compact codec priors. Packing is a permutation, so it is exact and invertible.

Samples are scaled to [0, 1] by the largest code of their bit depth (255 for 8
bits, 1023 for 10). Pictures whose sides are not multiples of 16 are padded by edge
replication (:func:`pad_planes`) and cropped back (:func:`crop_planes`); that is done
here and nowhere else.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from codecave.codec.priors import YUVPlanes

#: Channels of one packed position: 16 Y, 4 U, 4 V.
PACKED_CHANNELS = 24
#: Luma samples per grid position along each side.
CELL = 4
#: Padding multiple for whole frames (the H.264 macroblock).
PAD_MULTIPLE = 16
#: Channel slices of the packed tensor.
Y_CHANNELS = slice(0, 16)
U_CHANNELS = slice(16, 20)
V_CHANNELS = slice(20, 24)


def peak(bit_depth: int) -> int:
    """Largest sample code of ``bit_depth`` bits (255 for 8, 1023 for 10)."""
    if not 8 <= bit_depth <= 16:
        raise ValueError(f"bit depth {bit_depth}: use 8 to 16")
    return (1 << bit_depth) - 1


def pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pack 4:2:0 planes onto the 4x4 grid.

    Args:
        y: ``(..., H, W)`` luma, ``H`` and ``W`` multiples of 4.
        u, v: ``(..., H/2, W/2)`` chroma.

    Returns:
        ``(..., 24, H/4, W/4)`` with the dtype of the planes.

    Raises:
        ValueError: the sides are not multiples of 4 or the chroma is not half the luma.
    """
    h, w = y.shape[-2:]
    if h % CELL or w % CELL:
        raise ValueError(f"luma {w}x{h}: both sides must be multiples of {CELL} (pad with pad_planes)")
    if u.shape[-2:] != (h // 2, w // 2) or v.shape[-2:] != (h // 2, w // 2):
        raise ValueError(f"chroma {tuple(u.shape[-2:])} / {tuple(v.shape[-2:])} is not half of luma {(h, w)}")
    lead = y.shape[:-2]
    packed_y = F.pixel_unshuffle(y.reshape(-1, 1, h, w), CELL)
    packed_u = F.pixel_unshuffle(u.reshape(-1, 1, h // 2, w // 2), 2)
    packed_v = F.pixel_unshuffle(v.reshape(-1, 1, h // 2, w // 2), 2)
    out = torch.cat([packed_y, packed_u, packed_v], dim=1)
    return out.reshape(*lead, PACKED_CHANNELS, h // CELL, w // CELL)


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack`: ``(..., 24, h, w)`` -> Y ``(..., 4h, 4w)``, U and V ``(..., 2h, 2w)``."""
    if x.shape[-3] != PACKED_CHANNELS:
        raise ValueError(f"packed tensor has {x.shape[-3]} channels, expected {PACKED_CHANNELS}")
    lead, (h, w) = x.shape[:-3], x.shape[-2:]
    flat = x.reshape(-1, PACKED_CHANNELS, h, w)
    y = F.pixel_shuffle(flat[:, Y_CHANNELS], CELL).reshape(*lead, CELL * h, CELL * w)
    u = F.pixel_shuffle(flat[:, U_CHANNELS], 2).reshape(*lead, 2 * h, 2 * w)
    v = F.pixel_shuffle(flat[:, V_CHANNELS], 2).reshape(*lead, 2 * h, 2 * w)
    return y, u, v


def luma(x: torch.Tensor) -> torch.Tensor:
    """The Y plane ``(..., 4h, 4w)`` of a packed tensor ``(..., 24, h, w)``."""
    lead, (h, w) = x.shape[:-3], x.shape[-2:]
    return F.pixel_shuffle(x.reshape(-1, PACKED_CHANNELS, h, w)[:, Y_CHANNELS], CELL).reshape(*lead, 4 * h, 4 * w)


def to_half_layout(x: torch.Tensor) -> torch.Tensor:
    """The packed grid ``(..., 24, h, w)`` as the half-resolution 4:2:0 layout
    ``(..., 6, 2h, 2w)``: Y pixel-unshuffled by 2 (sample ``(2i + a, 2j + b)`` in channel
    ``2a + b``), then U and V. Exact (a permutation); the neural-wrapping codec proxy
    works in it, where a displacement of one position is two luma samples."""
    y, u, v = unpack(x)
    lead, (h, w) = y.shape[:-2], y.shape[-2:]
    y2 = F.pixel_unshuffle(y.reshape(-1, 1, h, w), 2).reshape(*lead, 4, h // 2, w // 2)
    return torch.cat([y2, u.unsqueeze(-3), v.unsqueeze(-3)], dim=-3)


def from_half_layout(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_half_layout`: ``(..., 6, H/2, W/2)`` -> ``(..., 24, H/4, W/4)``."""
    if x.shape[-3] != 6:
        raise ValueError(f"half layout has 6 channels, got {x.shape[-3]}")
    lead, (h, w) = x.shape[:-3], x.shape[-2:]
    y = F.pixel_shuffle(x[..., :4, :, :].reshape(-1, 4, h, w), 2).reshape(*lead, 2 * h, 2 * w)
    return pack(y, x[..., 4, :, :], x[..., 5, :, :])


def padded_size(height: int, width: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """``(H, W)`` rounded up to ``multiple``."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_planes(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, multiple: int = PAD_MULTIPLE
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad 4:2:0 planes by edge replication so luma sides are multiples of ``multiple``.

    Args:
        y: ``(..., H, W)`` with ``H``, ``W`` even; u, v: ``(..., H/2, W/2)``.
        multiple: an even number (16: whole macroblocks).

    Returns:
        The padded planes (padding at the bottom and right; :func:`crop_planes` undoes it).
    """
    h, w = y.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"{w}x{h}: 4:2:0 needs even sides")
    ph, pw = padded_size(h, w, multiple)
    if (ph, pw) == (h, w):
        return y, u, v

    def edge(p: torch.Tensor, dh: int, dw: int) -> torch.Tensor:
        lead = p.shape[:-2]
        flat = p.reshape(1, -1, *p.shape[-2:])
        dtype = flat.dtype
        flat = F.pad(flat if dtype.is_floating_point else flat.float(), (0, dw, 0, dh), mode="replicate")
        return flat.to(dtype).reshape(*lead, *flat.shape[-2:])

    return edge(y, ph - h, pw - w), edge(u, (ph - h) // 2, (pw - w) // 2), edge(v, (ph - h) // 2, (pw - w) // 2)


def crop_planes(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, height: int, width: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Undo :func:`pad_planes`: keep the top-left ``height x width`` luma and its chroma."""
    return y[..., :height, :width], u[..., : height // 2, : width // 2], v[..., : height // 2, : width // 2]


def to_unit(x: torch.Tensor, bit_depth: int) -> torch.Tensor:
    """Integer sample codes -> float32 in [0, 1]."""
    return x.float() / peak(bit_depth)


def to_codes(x: torch.Tensor, bit_depth: int) -> torch.Tensor:
    """Float [0, 1] -> integer sample codes (rounded, clamped): uint8 for 8 bits, else int32."""
    top = peak(bit_depth)
    codes = x.mul(top).round().clamp(0, top)
    return codes.to(torch.uint8) if bit_depth == 8 else codes.to(torch.int32)


def warp_packed(x: torch.Tensor, mv: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Backward-warp packed pictures by per-position vectors, exactly at sample level.

    Each grid position carries one vector (one 4x4 block of the codec), in grid units
    (pixels / 4). The packed pictures are unpacked, every luma sample of a block is
    fetched from ``p + 4 * mv`` in the Y plane and every chroma sample from
    ``p + 2 * mv`` in U and V (bilinear, edges clamped), and the result is packed
    again. So motion that is not a multiple of 4 pixels moves the samples inside
    each block too; a whole-pixel pan is reproduced exactly away from the borders.

    Args:
        x: ``(N, 24, h, w)`` packed pictures (e.g. frame ``t-1``).
        mv: ``(N, 2, h, w)`` vectors (dx, dy) in grid units (``mv_past[t]`` on the grid).
        valid: optional ``(N, 1, h, w)`` mask; where it is 0 the vector is taken as zero.

    Returns:
        ``(N, 24, h, w)``: ``x`` aligned to the current picture.
    """
    from codecave.layers.warp import flow_warp

    if valid is not None:
        mv = mv * valid
    y, u, v = unpack(x)
    flow_y = mv.repeat_interleave(CELL, -2).repeat_interleave(CELL, -1) * CELL
    flow_c = mv.repeat_interleave(2, -2).repeat_interleave(2, -1) * 2
    y = flow_warp(y.unsqueeze(1), flow_y)[:, 0]
    uv = flow_warp(torch.stack([u, v], dim=1), flow_c)
    return pack(y, uv[:, 0], uv[:, 1])


def dihedral_packed(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 8 flips / rotations of packed pictures, done on their planes.

    Flipping the grid alone would leave the samples inside each block in place; the
    planes are transformed and packed again. ``code``: bit 0 flips left-right, bit 1
    top-bottom, bit 2 transposes (as :func:`codecave.data.augment.dihedral`).

    Args:
        x: ``(..., 24, h, w)``.
    """
    y, u, v = unpack(x)
    planes = [y, u, v]
    if code & 1:
        planes = [p.flip(-1) for p in planes]
    if code & 2:
        planes = [p.flip(-2) for p in planes]
    if code & 4:
        planes = [p.transpose(-1, -2) for p in planes]
    return pack(*planes).contiguous()


def pack_planes(planes: YUVPlanes) -> np.ndarray:
    """Pack one picture's planes with NumPy, keeping their integer codes.

    Args:
        planes: 4:2:0 planes with sides that are multiples of 4.

    Returns:
        ``(24, H/4, W/4)`` array of the planes' dtype (uint8 or uint16), the layout of :func:`pack`.
    """
    h, w = planes.y.shape
    if h % CELL or w % CELL:
        raise ValueError(f"luma {w}x{h}: both sides must be multiples of {CELL}")
    gh, gw = h // CELL, w // CELL
    y = planes.y.reshape(gh, CELL, gw, CELL).transpose(1, 3, 0, 2).reshape(16, gh, gw)
    u = planes.u.reshape(gh, 2, gw, 2).transpose(1, 3, 0, 2).reshape(4, gh, gw)
    v = planes.v.reshape(gh, 2, gw, 2).transpose(1, 3, 0, 2).reshape(4, gh, gw)
    return np.concatenate([y, u, v])


def unpack_planes(packed: np.ndarray, bit_depth: int = 8, **tags: str | None) -> YUVPlanes:
    """Inverse of :func:`pack_planes`: ``(24, h, w)`` integer codes -> planes (``tags``:
    ``color_range``, ``color_space``)."""
    _, gh, gw = packed.shape
    y = packed[Y_CHANNELS].reshape(CELL, CELL, gh, gw).transpose(2, 0, 3, 1).reshape(gh * CELL, gw * CELL)
    u = packed[U_CHANNELS].reshape(2, 2, gh, gw).transpose(2, 0, 3, 1).reshape(gh * 2, gw * 2)
    v = packed[V_CHANNELS].reshape(2, 2, gh, gw).transpose(2, 0, 3, 1).reshape(gh * 2, gw * 2)
    return YUVPlanes(np.ascontiguousarray(y), np.ascontiguousarray(u), np.ascontiguousarray(v), bit_depth, **tags)


def crop_yuv(planes: YUVPlanes, height: int, width: int) -> YUVPlanes:
    """The top-left ``height x width`` luma (even sides) and its chroma, as contiguous arrays."""
    if (planes.height, planes.width) == (height, width):
        return planes
    y, u, v = crop_planes(planes.y, planes.u, planes.v, height, width)
    return dataclasses.replace(planes, y=np.ascontiguousarray(y), u=np.ascontiguousarray(u),
                               v=np.ascontiguousarray(v))
