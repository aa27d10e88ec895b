"""Spatial augmentations applied to frames and codec priors together.

Design section 3: a horizontal flip negates dx, a vertical flip negates dy, a
transpose swaps dx and dy (and the picture axes). The eight combinations give every
flip and rot90 of the square dihedral group.
"""

from __future__ import annotations

import torch

#: Keys of a sample whose last two axes are picture axes.
SPATIAL = ("frames", "gt", "qp_map", "mv_past", "mv_future", "mv_valid", "partition")
#: Keys holding packed 4:2:0 pictures in packed samples.
PACKED = ("frames", "gt")
#: Keys holding (dx, dy) vector fields on axis -3.
VECTORS = ("mv_past", "mv_future")


def _flip(sample: dict[str, torch.Tensor], axis: int, component: int) -> dict[str, torch.Tensor]:
    """Mirror along a picture axis; the matching vector component changes sign."""
    out = dict(sample)
    for key in SPATIAL:
        if key in out:
            out[key] = out[key].flip(axis)
    for key in VECTORS:
        if key in out:
            sign = torch.ones(2, device=out[key].device).index_fill_(0, torch.tensor(component, device=out[key].device),
                                                                     -1.0).view(2, 1, 1)
            out[key] = out[key] * sign
    return out


def hflip(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mirror left-right; vectors' dx changes sign."""
    return _flip(sample, -1, 0)


def vflip(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mirror top-bottom; vectors' dy changes sign."""
    return _flip(sample, -2, 1)


def transpose(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swap the picture axes; vectors' dx and dy swap."""
    out = dict(sample)
    for key in SPATIAL:
        if key in out:
            out[key] = out[key].transpose(-1, -2)
    for key in VECTORS:
        if key in out:
            out[key] = out[key].flip(-3)
    return out


def dihedral(sample: dict[str, torch.Tensor], code: int, packed: bool = False) -> dict[str, torch.Tensor]:
    """Apply one of the 8 flips/rotations: bit 0 hflip, bit 1 vflip, bit 2 transpose.

    ``code`` 5 (hflip then transpose) is a rot90; all tensors stay contiguous.

    Args:
        sample: pictures and priors (:data:`SPATIAL` keys are transformed).
        code: 0 to 7.
        packed: ``frames`` and ``gt`` are packed 4:2:0 grids (:mod:`codecave.grid`); they
            are transformed on their planes (:func:`codecave.grid.dihedral_packed`), the
            grid priors like any other picture-shaped tensor.
    """
    if packed:
        from codecave.grid import dihedral_packed

        pictures = {k: dihedral_packed(sample[k], code) for k in PACKED if k in sample}
        rest = dihedral({k: v for k, v in sample.items() if k not in PACKED}, code)
        return {**rest, **pictures}
    if code & 1:
        sample = hflip(sample)
    if code & 2:
        sample = vflip(sample)
    if code & 4:
        sample = transpose(sample)
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in sample.items()}
