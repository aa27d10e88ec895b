"""The packed 4:2:0 grid: exact packing for 8 and 10 bits and any even size, padding,
sample-exact warping of known pans, and flips done on the planes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.codec.convert import rgb_to_planes
from codecave.codec.priors import YUVPlanes
from codecave.codec.rasterize import compact_priors, grid_priors, stack_compact
from codecave.codec.reader import open_video
from codecave.data.augment import dihedral
from codecave.grid import (
    crop_planes,
    dihedral_packed,
    luma,
    pack,
    pack_planes,
    pad_planes,
    to_codes,
    to_unit,
    unpack,
    unpack_planes,
    warp_packed,
)
from tests.conftest import pan_frames


def _planes(h: int, w: int, depth: int, seed: int = 0) -> YUVPlanes:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if depth == 8 else np.uint16
    top = (1 << depth) - 1
    return YUVPlanes(rng.integers(0, top + 1, (h, w)).astype(dtype), rng.integers(0, top + 1, (h // 2, w // 2)).astype(dtype),
                     rng.integers(0, top + 1, (h // 2, w // 2)).astype(dtype), depth)


@pytest.mark.parametrize("depth", [8, 10])
@pytest.mark.parametrize("size", [(32, 48), (270, 482), (18, 6)])
def test_pack_unpack_is_exact(depth: int, size: tuple[int, int]) -> None:
    p = _planes(*size, depth)
    y, u, v = (torch.from_numpy(a.astype(np.int32)) for a in (p.y, p.u, p.v))
    padded = pad_planes(y, u, v)
    assert padded[0].shape[-2] % 16 == 0 and padded[0].shape[-1] % 16 == 0
    x = to_unit(pack(*padded), depth)
    assert x.shape[-3] == 24 and float(x.max()) <= 1.0
    back = crop_planes(*(to_codes(t, depth) for t in unpack(x)), *size)
    for a, b in zip(back, (p.y, p.u, p.v)):
        assert np.array_equal(a.numpy().astype(np.int64), b.astype(np.int64))
    # edge replication: the padded rows repeat the last real row
    assert torch.equal(padded[0][-1], padded[0][size[0] - 1])


def test_numpy_and_torch_packing_agree_and_one_position_is_one_block() -> None:
    p = _planes(16, 32, 8, seed=3)
    packed = pack_planes(p)
    t = pack(*(torch.from_numpy(a) for a in (p.y, p.u, p.v)))
    assert np.array_equal(packed, t.numpy())
    # position (1, 2) holds luma rows 4..7, columns 8..11 and chroma rows 2..3, columns 4..5
    assert np.array_equal(packed[:16, 1, 2].reshape(4, 4), p.y[4:8, 8:12])
    assert np.array_equal(packed[16:20, 1, 2].reshape(2, 2), p.u[2:4, 4:6])
    back = unpack_planes(packed)
    assert all(np.array_equal(a, b) for a, b in zip((back.y, back.u, back.v), (p.y, p.u, p.v)))
    assert torch.equal(luma(t), torch.from_numpy(p.y))


def test_pack_refuses_sizes_off_the_grid() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        pack(torch.zeros(6, 8), torch.zeros(3, 4), torch.zeros(3, 4))


@pytest.mark.parametrize("step", [(1, 0), (4, 0), (1, 1), (-3, 2)])
def test_warp_packed_aligns_sub_grid_pans_exactly(step: tuple[int, int]) -> None:
    """Two 4:2:0 views of one picture, ``2 * step`` luma pixels apart (even, so chroma moves by
    whole samples too): warping the first by that motion in grid units gives the second,
    also when the motion is not a multiple of the 4-pixel grid."""
    big = rgb_to_planes(pan_frames(1, 64 + 32, 96 + 32)[0])
    dx, dy = 2 * step[0], 2 * step[1]

    def view(x0: int, y0: int) -> torch.Tensor:
        return pack(torch.from_numpy(big.y[y0 : y0 + 64, x0 : x0 + 96]).float(),
                    torch.from_numpy(big.u[y0 // 2 : y0 // 2 + 32, x0 // 2 : x0 // 2 + 48]).float(),
                    torch.from_numpy(big.v[y0 // 2 : y0 // 2 + 32, x0 // 2 : x0 // 2 + 48]).float())

    prev, cur = view(16, 16), view(16 + dx, 16 + dy)  # cur(p) = prev(p + (dx, dy))
    mv = torch.tensor([dx / 4, dy / 4]).view(1, 2, 1, 1).expand(1, 2, 16, 24)
    warped = warp_packed(prev.unsqueeze(0), mv)[0]
    inner = (slice(None), slice(3, -3), slice(3, -3))  # positions whose source lies inside the picture
    assert torch.allclose(warped[inner], cur[inner], atol=1e-4)
    assert not torch.allclose(prev[inner], cur[inner], atol=1.0)


def test_decoder_vectors_on_the_grid_align_known_pans(tmp_path: Path) -> None:
    """x264 clips panning 1 px and 4 px per frame: the decoder's vectors, put on the grid,
    align each P/B frame's past reference far better than no motion at all."""
    from codecave.codec.encode import EncodeSettings, encode_frames

    for step in ((1, 0), (4, 0)):
        frames = pan_frames(8, 96, 160, step=step)
        path = tmp_path / f"pan{step[0]}.mp4"
        # one reference frame: which of several references a vector uses is the reader's
        # business (benchmarks/reference_accuracy.py), not the grid's
        encode_frames(frames, path, EncodeSettings(crf=18, bframes=0, ref=1, threads=1))
        with open_video(path) as video:
            coded = list(video)
        stacked = stack_compact([compact_priors(f.priors, f.height, f.width) for f in coded])
        g = grid_priors(stacked)
        packed = torch.stack([torch.from_numpy(pack_planes(f.planes)).float() for f in coded])
        errors_warp, errors_still = [], []
        for t in range(1, len(coded)):
            valid = g["mv_valid"][t, :1].float()
            if valid.mean() < 0.5:
                continue
            warped = warp_packed(packed[t - 1 : t], g["mv_past"][t : t + 1], valid.unsqueeze(0))[0]
            inner = (slice(None), slice(2, -2), slice(4, -4))
            errors_warp.append(float((warped - packed[t])[inner].abs().mean()))
            errors_still.append(float((packed[t - 1] - packed[t])[inner].abs().mean()))
        assert errors_warp, f"no inter frames in the {step} pan"
        assert np.mean(errors_warp) < 0.35 * np.mean(errors_still), (step, errors_warp, errors_still)
        # vectors on the grid are the pan in grid units: +step / 4
        median = float(g["mv_past"][1:, 0][g["mv_valid"][1:, 0]].median())
        assert median == pytest.approx(step[0] / 4, abs=0.07)


def test_dihedral_on_packed_pictures_matches_the_planes() -> None:
    p = _planes(32, 48, 8, seed=5)
    x = pack(*(torch.from_numpy(a).float() for a in (p.y, p.u, p.v)))
    for code in range(8):
        y = torch.from_numpy(p.y).float()
        if code & 1:
            y = y.flip(-1)
        if code & 2:
            y = y.flip(-2)
        if code & 4:
            y = y.transpose(-1, -2)
        assert torch.equal(luma(dihedral_packed(x, code)), y)
    sample = {"frames": x.unsqueeze(0), "gt": x.unsqueeze(0), "mv_past": torch.ones(1, 2, 8, 12)}
    flipped = dihedral(sample, 1, packed=True)
    assert torch.equal(flipped["frames"], dihedral_packed(x.unsqueeze(0), 1))
    assert float(flipped["mv_past"][0, 0, 0, 0]) == -1.0 and flipped["mv_past"].shape == (1, 2, 8, 12)
