"""In-memory encode/decode (the real codec inside neural wrapping's training loop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codecave.codec.convert import rgb_to_planes
from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video
from codecave.codec.roundtrip import round_trip, round_trip_packed
from codecave.errors import EncoderError
from codecave.grid import pack_planes
from tests.conftest import pan_frames

SETTINGS = EncodeSettings(codec="x264", crf=None, qp=30, preset="medium", bframes=0, keyint=4, threads=1)


@pytest.fixture(scope="module")
def pictures() -> list:
    return [rgb_to_planes(f) for f in pan_frames(4, 64, 96)]


def test_round_trip_matches_a_file_encode(pictures: list, tmp_path: Path) -> None:
    """Per-frame bits sum to the raw bitstream's size and the decoded pictures are the file's, bit for bit."""
    result = round_trip(pictures, SETTINGS)
    assert result.frame_types == ("I", "P", "P", "P")
    path = tmp_path / "gop.264"
    encode_frames(pictures, path, SETTINGS)
    assert sum(result.bits) == 8 * path.stat().st_size
    with open_video(path, priors=False) as reader:
        from_file = [f.planes for f in reader]
    for a, b in zip(result.decoded, from_file, strict=True):
        assert np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    assert result.bits[0] > max(result.bits[1:])  # the intra picture (and the headers) cost the most


def test_round_trip_packed_and_rate(pictures: list) -> None:
    codes = np.stack([pack_planes(p) for p in pictures])
    decoded, bits = round_trip_packed(codes, SETTINGS)
    assert decoded.shape == codes.shape and decoded.dtype == np.uint8
    _, bits_coarse = round_trip_packed(codes, SETTINGS.with_(qp=45))
    assert bits_coarse.sum() < bits.sum()
    assert np.abs(decoded.astype(int) - codes).mean() < 6


def test_round_trip_refuses_bad_input(pictures: list) -> None:
    with pytest.raises(EncoderError, match="no pictures"):
        round_trip([], SETTINGS)
    with pytest.raises(EncoderError, match="frame_qps"):
        round_trip(pictures, SETTINGS.with_(codec="x265", frame_qps=(30, 31, 32, 33)))
