"""Augmentations keep frames and codec priors consistent; training windows are aligned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.data.augment import dihedral
from codecave.data.dataset import PreparedWindows, WindowSpec
from codecave.layers.warp import flow_warp
from tests.conftest import pan_frames


def _pan_sample() -> dict[str, torch.Tensor]:
    frames = torch.from_numpy(np.stack(pan_frames(2, 48, 48, step=(2, 1)))).permute(0, 3, 1, 2).float() / 255
    mv = torch.zeros(2, 2, 48, 48)
    mv[:, 0], mv[:, 1] = 2.0, 1.0
    return {"frames": frames, "mv_past": mv}


def _warp_error(sample: dict[str, torch.Tensor]) -> float:
    warped = flow_warp(sample["frames"][:1], sample["mv_past"][1:])
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    return float((warped - sample["frames"][1:])[inner].abs().mean())


@pytest.mark.parametrize("code", range(8))
def test_every_flip_and_rotation_keeps_vectors_pointing_at_the_same_content(code: int) -> None:
    sample = dihedral(_pan_sample(), code)
    assert _warp_error(sample) < 1e-5
    # The same flip applied to the frames alone breaks the alignment (the test can fail).
    if code:
        wrong = {"frames": sample["frames"], "mv_past": _pan_sample()["mv_past"]}
        assert _warp_error(wrong) > 0.01


def _expected_vector(code: int) -> tuple[float, float]:
    dx, dy = 2.0, 1.0
    if code & 1:
        dx = -dx
    if code & 2:
        dy = -dy
    if code & 4:
        dx, dy = dy, dx
    return dx, dy


def test_windows_are_deterministic_aligned_and_augmented_with_their_priors(tiny_dataset: Path) -> None:
    spec = WindowSpec(frames=3, crop=32, compressed=("crf35",), lossless="crf0", lossless_prob=0.0, qp_dropout=0.0)
    ds = PreparedWindows(tiny_dataset, spec, length=40, seed=3)
    a, b = ds[5], ds[5]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["frames"].shape == (3, 3, 32, 32) and a["partition"].shape == (3, 4, 32, 32)
    assert float(a["crf"]) == 35.0
    checked = 0
    for index in range(40):
        s = ds[index]
        valid = s["mv_valid"][2, 0]
        if valid.float().mean() < 0.9:
            continue
        mv = s["mv_past"][2]
        got = (round(float(mv[0][valid].median())), round(float(mv[1][valid].median())))
        assert got in {_expected_vector(c) for c in range(8)}
        # The vectors still point at the same content in the flipped/rotated frames.
        pair = s["gt"][1:3]
        errors = [_warp_error({"frames": pair, "mv_past": torch.stack([v, v])})
                  for v in (mv, torch.zeros_like(mv), mv.flip(0), -mv)]
        assert errors[0] < min(errors[1:])
        checked += 1
    assert checked >= 5
    plain = PreparedWindows(tiny_dataset, WindowSpec(frames=3, crop=32, compressed=("crf35",), lossless_prob=0.0,
                                                     qp_dropout=0.0, augment=False), length=40, seed=3)
    for index in range(10):
        s = plain[index]
        valid = s["mv_valid"][1:, 0]
        if valid.sum() >= 200:
            assert round(float(s["mv_past"][1:, 0][valid].median())) == 2
            assert round(float(s["mv_past"][1:, 1][valid].median())) == 1
