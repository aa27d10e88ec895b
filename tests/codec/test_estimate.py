"""Tests of motion estimated from decoded pixels (codecave.codec.estimate)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from codecave.codec.estimate import estimate_block_motion, estimate_priors
from codecave.codec.priors import MB, MV_DTYPE, FrameType

H, W = 96, 128


def _texture(h: int, w: int, *, scale: float = 4.0, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture, zero mean and unit variance, ``(h, w, 3)`` float."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(h)[:, None, None]
    kx = np.fft.fftfreq(w)[None, :, None]
    spectrum = np.fft.fft2(rng.standard_normal((h, w, 3)), axes=(0, 1))
    spectrum *= np.exp(-(kx**2 + ky**2) * (2 * np.pi * scale) ** 2 / 2)
    t = np.real(np.fft.ifft2(spectrum, axes=(0, 1)))
    return (t - t.mean()) / t.std()


def _shift(t: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Fourier shift: the result at (x, y) is ``t`` at (x + dx, y + dy)."""
    h, w = t.shape[:2]
    ky = np.fft.fftfreq(h)[:, None, None]
    kx = np.fft.fftfreq(w)[None, :, None]
    spectrum = np.fft.fft2(t, axes=(0, 1)) * np.exp(2j * np.pi * (kx * dx + ky * dy))
    return np.real(np.fft.ifft2(spectrum, axes=(0, 1)))


def _to_rgb(t: np.ndarray) -> np.ndarray:
    return np.clip(128 + 40 * t, 0, 255).astype(np.uint8)


def _pair(
    dx: float, dy: float, *, margin: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(current, reference) where current at (x, y) shows reference at (x + dx, y + dy)."""
    base = _texture(H + 2 * margin, W + 2 * margin, seed=seed)
    window = (slice(margin, margin + H), slice(margin, margin + W))
    return _to_rgb(_shift(base, dx, dy)[window]), _to_rgb(base[window])


def _interior(mvs: np.ndarray, border: int) -> np.ndarray:
    return (
        (mvs["x"] >= border)
        & (mvs["x"] + mvs["w"] <= W - border)
        & (mvs["y"] >= border)
        & (mvs["y"] + mvs["h"] <= H - border)
    )


def test_integer_translation_is_found_exactly() -> None:
    current, reference = _pair(3, -2)
    mvs = estimate_block_motion(current, reference)
    assert mvs.dtype == MV_DTYPE
    assert len(mvs) == (H // 8) * (W // 8)
    assert (mvs["direction"] == -1).all()
    assert (mvs["w"] == 8).all() and (mvs["h"] == 8).all()
    inner = _interior(mvs, 8)
    np.testing.assert_array_equal(mvs["dx"][inner], 3.0)
    np.testing.assert_array_equal(mvs["dy"][inner], -2.0)


def test_direction_is_recorded_and_sign_follows_reference() -> None:
    current, reference = _pair(-2, 1)
    mvs = estimate_block_motion(current, reference, direction=1)
    assert (mvs["direction"] == 1).all()
    inner = _interior(mvs, 8)
    assert np.median(mvs["dx"][inner]) == -2.0
    assert np.median(mvs["dy"][inner]) == 1.0
    # Swapping the pictures reverses the vectors.
    back = estimate_block_motion(reference, current)
    assert np.median(back["dx"][inner]) == 2.0
    assert np.median(back["dy"][inner]) == -1.0


@pytest.mark.parametrize("dx, dy", [(1.25, 0.5), (-0.75, 2.25)])
def test_subpixel_translation_quarter_pel(dx: float, dy: float) -> None:
    current, reference = _pair(dx, dy)
    mvs = estimate_block_motion(current, reference)
    for field in ("dx", "dy"):
        np.testing.assert_array_equal(mvs[field] * 4, np.round(mvs[field] * 4))
    inner = _interior(mvs, 16)
    assert np.median(np.abs(mvs["dx"][inner] - dx)) <= 0.25
    assert np.median(np.abs(mvs["dy"][inner] - dy)) <= 0.25
    close = (np.abs(mvs["dx"][inner] - dx) <= 0.25) & (np.abs(mvs["dy"][inner] - dy) <= 0.25)
    assert close.mean() >= 0.8


@pytest.mark.parametrize("dx, dy", [(20, -20), (-20, 12)])
def test_large_motion_is_found_through_the_pyramid(dx: int, dy: int) -> None:
    current, reference = _pair(dx, dy, seed=1)
    mvs = estimate_block_motion(current, reference, search=24)
    inner = _interior(mvs, 24)
    exact = (mvs["dx"][inner] == dx) & (mvs["dy"][inner] == dy)
    assert exact.mean() >= 0.9
    assert np.abs(mvs["dx"]).max() <= 24.75 and np.abs(mvs["dy"]).max() <= 24.75


def test_partial_blocks_tile_the_frame_once() -> None:
    height, width = 70, 100
    t = _texture(height + 16, width + 16, seed=2)
    reference = _to_rgb(t[8 : 8 + height, 8 : 8 + width])
    current = _to_rgb(t[9 : 9 + height, 7 : 7 + width])  # motion (-1, +1)
    mvs = estimate_block_motion(current, reference)
    assert len(mvs) == math.ceil(height / 8) * math.ceil(width / 8)
    cover = np.zeros((height, width), dtype=int)
    for row in mvs:
        cover[row["y"] : row["y"] + row["h"], row["x"] : row["x"] + row["w"]] += 1
    assert (cover == 1).all()
    assert set(mvs["w"][mvs["x"] == 96].tolist()) == {4}
    assert set(mvs["h"][mvs["y"] == 64].tolist()) == {6}
    assert (mvs["x"] % 8 == 0).all() and (mvs["y"] % 8 == 0).all()
    # The clipped blocks still track the motion.
    edge = (mvs["x"] == 96) | (mvs["y"] == 64)
    assert np.median(mvs["dx"][edge]) == -1.0
    assert np.median(mvs["dy"][edge]) == 1.0


def test_static_and_flat_pictures_give_zero_vectors() -> None:
    _, reference = _pair(0, 0)
    still = estimate_block_motion(reference, reference.copy())
    assert (still["dx"] == 0).all() and (still["dy"] == 0).all()
    flat = np.full((H, W, 3), 90, dtype=np.uint8)
    blank = estimate_block_motion(flat, flat.copy())
    assert (blank["dx"] == 0).all() and (blank["dy"] == 0).all()


def test_bad_inputs_are_refused() -> None:
    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="frames must match"):
        estimate_block_motion(picture, np.zeros((16, 24, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        estimate_block_motion(picture.astype(np.float32), picture)
    with pytest.raises(ValueError, match="direction"):
        estimate_block_motion(picture, picture, direction=0)
    with pytest.raises(ValueError, match="frame types"):
        estimate_priors([picture, picture], [FrameType.I])


def test_estimate_priors_follows_frame_types() -> None:
    t = _texture(H + 32, W + 32, seed=3)
    frames = [_to_rgb(t[16 : 16 + H, 16 + 2 * i : 16 + 2 * i + W]) for i in range(5)]
    types = [FrameType.I, FrameType.B, FrameType.B, FrameType.P, FrameType.B]
    priors = estimate_priors(frames, types, qp=30)
    n_blocks = (H // 8) * (W // 8)
    assert [p.frame_type for p in priors] == types
    assert [p.key_frame for p in priors] == [True, False, False, False, False]
    assert all(p.source == "estimated" for p in priors)
    for p in priors:
        assert p.qp == 30.0
        assert p.qp_map is not None and p.qp_map.dtype == np.float32
        assert p.qp_map.shape == (math.ceil(H / MB), math.ceil(W / MB))
        assert (p.qp_map == 30.0).all()

    i_frame, b1, b2, p_frame, b_last = priors
    assert len(i_frame.mvs) == 0 and i_frame.ref_past is None and i_frame.ref_future is None
    assert (p_frame.mvs["direction"] == -1).all() and len(p_frame.mvs) == n_blocks
    assert p_frame.ref_past == 1 and p_frame.ref_future is None
    for b in (b1, b2):
        assert (b.mvs["direction"] == -1).sum() == n_blocks
        assert (b.mvs["direction"] == 1).sum() == n_blocks
        assert b.ref_past == 1 and b.ref_future == 1
    # The window ends: the last B frame has no next frame, so only past vectors.
    assert (b_last.mvs["direction"] == -1).all() and len(b_last.mvs) == n_blocks
    assert b_last.ref_past == 1 and b_last.ref_future is None
    # Content pans left by 2 px per frame: past +2, future -2.
    assert np.median(b1.mvs["dx"][b1.mvs["direction"] == -1]) == 2.0
    assert np.median(b1.mvs["dx"][b1.mvs["direction"] == 1]) == -2.0

    unknown = estimate_priors(frames[:2], [FrameType.I, FrameType.P])
    assert unknown[1].qp is None and unknown[1].qp_map is None


def test_hevc_round_trip_recovers_the_pan(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    from codecave.codec.encode import EncodeSettings, encode_frames
    from codecave.errors import EncoderError

    pan = (2, 1)  # content moves so that frame t at (x, y) shows frame t-1 at (x+2, y+1)
    t = _texture(H + 32, W + 32, scale=3, seed=4)
    frames = [
        _to_rgb(t[i * pan[1] : i * pan[1] + H, i * pan[0] : i * pan[0] + W]) for i in range(8)
    ]
    path = tmp_path / "pan.mkv"
    settings = EncodeSettings(codec="x265", crf=28, bframes=2, preset="ultrafast")
    try:
        encode_frames(frames, path, settings)
    except EncoderError as exc:
        pytest.skip(f"x265 unavailable: {exc}")

    decoded, types = [], []
    letters = {1: FrameType.I, 2: FrameType.P, 3: FrameType.B}  # PyAV's pict_type values
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            decoded.append(frame.to_ndarray(format="rgb24"))
            types.append(letters.get(int(frame.pict_type), FrameType.P))
    assert len(decoded) == len(frames)
    assert types[0] == FrameType.I

    priors = estimate_priors(decoded, types, qp=28)
    checked = 0
    for p in priors[1:]:
        inner = _interior(p.mvs, 16)
        for direction, sign in ((-1, 1), (1, -1)):
            sel = inner & (p.mvs["direction"] == direction)
            if not sel.any():
                continue
            checked += 1
            dx, dy = p.mvs["dx"][sel], p.mvs["dy"][sel]
            assert np.median(dx) == sign * pan[0] and np.median(dy) == sign * pan[1]
            hit = (np.abs(dx - sign * pan[0]) <= 0.25) & (np.abs(dy - sign * pan[1]) <= 0.25)
            assert hit.mean() >= 0.8
    assert checked >= len(priors) - 1
