"""Tests of codecave.data.synth: camera motion over stills with exact flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codecave.data.synth import CameraMotion, SynthClip, load_still, synthesize_clip
from codecave.errors import ConfigError, DatasetError

H, W = 64, 96
BORDER = 3  # pixels ignored at the frame edges in the warp checks


def texture(height: int, width: int, cell: int = 8, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture, ``(height, width, 3)`` uint8, features ~``cell`` px."""
    rng = np.random.default_rng(seed)
    noise = rng.random((1, 3, height // cell + 1, width // cell + 1)).astype(np.float32)
    image = F.interpolate(torch.from_numpy(noise), size=(height, width), mode="bicubic")
    image = image[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Samples ``image`` (h, w, C) at float pixel coordinates ``x, y`` (any shape)."""
    h, w = image.shape[:2]
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = (1 - fx) * image[y0, x0] + fx * image[y0, x0 + 1]
    bottom = (1 - fx) * image[y0 + 1, x0] + fx * image[y0 + 1, x0 + 1]
    return (1 - fy) * top + fy * bottom


def warp_errors(clip: SynthClip, sign: float = 1.0) -> tuple[float, float]:
    """Mean abs error (in 8-bit levels) of frame t vs frame t-1 warped by flow_past[t],
    and of frame t vs the unwarped frame t-1, on the interior."""
    frames = clip.frames.astype(np.float64)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    warped_err, still_err = [], []
    for t in range(1, len(frames)):
        x = xs + sign * clip.flow_past[t, 0]
        y = ys + sign * clip.flow_past[t, 1]
        inside = (x >= BORDER) & (x <= W - 1 - BORDER) & (y >= BORDER) & (y <= H - 1 - BORDER)
        interior = np.zeros((H, W), bool)
        interior[BORDER:-BORDER, BORDER:-BORDER] = True
        mask = inside & interior
        warped = bilinear(frames[t - 1], x, y)
        warped_err.append(np.abs(warped - frames[t])[mask].mean())
        still_err.append(np.abs(frames[t - 1] - frames[t])[mask].mean())
    return float(np.mean(warped_err)), float(np.mean(still_err))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test images are tiny; idle OpenMP workers only slow a shared machine down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return texture(160, 224)


def test_shapes_dtypes_and_nan_conventions(photo: np.ndarray) -> None:
    clip = synthesize_clip(photo, 5, (H, W), CameraMotion((1.0, 0.5), 0.005, 0.2))
    assert clip.frames.shape == (5, H, W, 3) and clip.frames.dtype == np.uint8
    for flow in (clip.flow_past, clip.flow_future):
        assert flow.shape == (5, 2, H, W) and flow.dtype == np.float32
    assert np.isnan(clip.flow_past[0]).all()
    assert np.isnan(clip.flow_future[4]).all()
    assert np.isfinite(clip.flow_past[1:]).all()
    assert np.isfinite(clip.flow_future[:4]).all()
    assert clip.affine.shape == (5, 2, 3)
    assert clip.motion == CameraMotion((1.0, 0.5), 0.005, 0.2)


def test_single_frame_clip_has_no_flow(photo: np.ndarray) -> None:
    clip = synthesize_clip(photo, 1, (H, W), CameraMotion((1.0, 0.0), 0.0, 0.0))
    assert clip.frames.shape == (1, H, W, 3)
    assert np.isnan(clip.flow_past).all() and np.isnan(clip.flow_future).all()


def test_pure_pan_flow_sign_and_warp(photo: np.ndarray) -> None:
    # The camera moves by (1.5, -0.5) output px per frame, so the content moves by
    # (-1.5, +0.5): pixel p of frame t was at p + (1.5, -0.5) in frame t-1.
    clip = synthesize_clip(photo, 6, (H, W), CameraMotion((1.5, -0.5), 0.0, 0.0), scale=1.0)
    expected = np.array([1.5, -0.5], np.float32)[:, None, None]
    np.testing.assert_allclose(clip.flow_past[1:], np.broadcast_to(expected, (5, 2, H, W)), atol=1e-4)
    np.testing.assert_allclose(clip.flow_future[:-1], np.broadcast_to(-expected, (5, 2, H, W)), atol=1e-4)
    warped, still = warp_errors(clip)
    wrong_sign, _ = warp_errors(clip, sign=-1.0)
    assert warped < 2.0, warped
    assert still > 5 * warped and wrong_sign > 5 * warped, (warped, still, wrong_sign)


def test_integer_pan_shifts_pixels_exactly(photo: np.ndarray) -> None:
    clip = synthesize_clip(photo, 3, (H, W), CameraMotion((2.0, -1.0), 0.0, 0.0), scale=1.3)
    # frame t at (x, y) equals frame t-1 at (x + 2, y - 1)
    np.testing.assert_array_equal(clip.frames[1:, 1:, : W - 2], clip.frames[:-1, :-1, 2:])


@pytest.mark.parametrize(
    "motion",
    [
        CameraMotion((0.0, 0.0), 0.02, 0.0),
        CameraMotion((0.0, 0.0), -0.02, 0.0),
        CameraMotion((0.0, 0.0), 0.0, 1.5),
        CameraMotion((0.7, 0.4), 0.01, -0.8, pan_accel=(0.2, -0.1)),
    ],
    ids=["zoom-in", "zoom-out", "rotation", "combined"],
)
def test_zoom_and_rotation_flow_matches_frames(photo: np.ndarray, motion: CameraMotion) -> None:
    clip = synthesize_clip(photo, 6, (H, W), motion, scale=1.0)
    warped, still = warp_errors(clip)
    assert warped < 2.0, warped
    assert still > 5 * warped, (warped, still)


def test_rotation_and_zoom_are_centred_and_signed() -> None:
    photo = texture(160, 224)
    zoom = synthesize_clip(photo, 2, (H, W), CameraMotion((0.0, 0.0), 0.1, 0.0))
    centre = ((W - 1) // 2, (H - 1) // 2)
    # zoom-in: content grows, so a pixel right of the centre came from nearer the centre
    dx_right = zoom.flow_past[1, 0, 0, W - 1]
    assert dx_right < 0
    np.testing.assert_allclose(
        zoom.flow_past[1, :, :, :], -zoom.flow_past[1, :, ::-1, ::-1], atol=1e-4
    )
    assert abs(zoom.flow_past[1, 0, centre[1], centre[0]]) < 0.1
    rot = synthesize_clip(photo, 2, (H, W), CameraMotion((0.0, 0.0), 0.0, 2.0))
    # positive rotation turns the camera clockwise (y down): content turns anticlockwise,
    # so the right edge of frame t was further down (dy > 0) in frame t-1
    assert rot.flow_past[1, 1, H // 2, W - 1] > 0


def test_pan_accel_changes_the_pan_linearly(photo: np.ndarray) -> None:
    motion = CameraMotion((1.0, 0.0), 0.0, 0.0, pan_accel=(0.25, 0.5))
    clip = synthesize_clip(photo, 5, (H, W), motion, scale=1.0)
    for t in range(1, 5):
        expected = np.array([1.0 + 0.25 * (t - 1), 0.5 * (t - 1)])
        np.testing.assert_allclose(clip.flow_past[t, :, 10, 10], expected, atol=1e-4)


def test_forward_backward_flows_compose_to_identity(photo: np.ndarray) -> None:
    motion = CameraMotion((1.2, -0.7), 0.015, 0.6, pan_accel=(0.1, 0.05))
    clip = synthesize_clip(photo, 5, (H, W), motion)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    for t in range(1, 5):
        fwd = clip.flow_future[t - 1].astype(np.float64)
        x, y = xs + fwd[0], ys + fwd[1]
        inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
        back = bilinear(clip.flow_past[t].astype(np.float64).transpose(1, 2, 0), x, y)
        err = np.hypot(fwd[0] + back[..., 0], fwd[1] + back[..., 1])[inside]
        assert inside.mean() > 0.8
        assert err.max() < 1e-3, err.max()


@pytest.mark.parametrize("supersample,scale", [(1, 1.0), (2, 1.0), (3, 1.7), (2, 5.0), (4, 2.3)])
def test_rendering_is_unbiased_on_a_ramp(supersample: int, scale: float) -> None:
    # On a linear ramp every stage (area downscale, Gaussian, Catmull-Rom, box average
    # of symmetric sub-samples) is exact, so frame t must equal ramp(A_t(p)). A shift
    # by half a sub-pixel would show as a bias of about half a level.
    motion = CameraMotion((1.3, 0.6), 0.01, 0.7)
    ph, pw = int(scale * (H + 40)), int(scale * (W + 40))
    v, u = np.mgrid[0:ph, 0:pw].astype(np.float64)
    slope_u, slope_v = 0.8 / pw, 0.8 / ph
    ramp = np.stack(
        [0.1 + slope_u * u, 0.1 + slope_v * v, 0.5 + 0.4 * (slope_u * u - slope_v * v)], -1
    )
    clip = synthesize_clip(ramp, 4, (H, W), motion, supersample=supersample, scale=scale)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    for t in range(4):
        a = clip.affine[t]
        pu = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
        pv = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
        expected = np.stack(
            [0.1 + slope_u * pu, 0.1 + slope_v * pv, 0.5 + 0.4 * (slope_u * pu - slope_v * pv)],
            -1,
        )
        err = clip.frames[t].astype(np.float64) - expected * 255
        assert np.abs(err).max() <= 0.55, np.abs(err).max()
        assert np.abs(err.reshape(-1, 3).mean(0)).max() < 0.1, err.reshape(-1, 3).mean(0)


@pytest.mark.parametrize("period,scale,expect_detail", [(2.5, 4.0, False), (9.0, 1.0, True)])
def test_detail_finer_than_a_pixel_is_filtered_out(period: float, scale: float, expect_detail: bool) -> None:
    # Stripes of 0.625 output px must average to grey instead of aliasing into coarse
    # stripes; stripes of 9 output px must survive.
    ph, pw = int(scale * (H + 20)), int(scale * (W + 20))
    v, u = np.mgrid[0:ph, 0:pw].astype(np.float64)
    stripes = np.repeat((0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.7 * v) / period))[..., None], 3, -1)
    clip = synthesize_clip(stripes, 2, (H, W), CameraMotion((0.3, 0.1), 0.01, 0.3), scale=scale)
    std = clip.frames.astype(np.float64).std()
    assert std > 60 if expect_detail else std < 4, std


def test_photo_of_clip_size_without_motion_renders_as_itself() -> None:
    photo = texture(H, W)
    clip = synthesize_clip(photo, 2, (H, W), CameraMotion((0.0, 0.0), 0.0, 0.0), supersample=1)
    np.testing.assert_array_equal(clip.frames[0], photo)
    np.testing.assert_array_equal(clip.frames[1], photo)


def test_views_stay_inside_the_photo_and_large_photos_are_downscaled() -> None:
    rng = np.random.default_rng(7)
    photo = texture(300, 400, cell=16)
    corners = np.array([[-0.5, -0.5, 1], [W - 0.5, -0.5, 1], [-0.5, H - 0.5, 1], [W - 0.5, H - 0.5, 1]])
    for fill in (0.5, 1.0):
        for _ in range(3):
            motion = CameraMotion.random(rng, max_pan_accel=0.2)
            clip = synthesize_clip(photo, 8, (H, W), motion, fill=fill, supersample=1)
            pts = np.einsum("tij,kj->tki", clip.affine, corners)
            assert pts[..., 0].min() >= -0.5 - 1e-6 and pts[..., 0].max() <= 400 - 0.5 + 1e-6
            assert pts[..., 1].min() >= -0.5 - 1e-6 and pts[..., 1].max() <= 300 - 0.5 + 1e-6
            scales = np.sqrt(np.abs(np.linalg.det(clip.affine[:, :, :2])))
            assert scales.min() > 1.5  # photo ~4x the clip: downscaled, not a tiny crop
            if fill == 1.0:  # the trajectory touches the photo's limiting sides
                span = pts.max((0, 1)) - pts.min((0, 1))
                assert np.isclose(span, [400, 300], rtol=1e-6).any()


def test_deterministic_for_a_seed(photo: np.ndarray) -> None:
    a = synthesize_clip(photo, 5, (H, W), seed=3)
    b = synthesize_clip(photo, 5, (H, W), seed=3)
    c = synthesize_clip(photo, 5, (H, W), seed=4)
    assert a.motion == b.motion == CameraMotion.random(np.random.default_rng(3))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.flow_past, b.flow_past)
    assert c.motion != a.motion


def test_random_motions_within_bounds() -> None:
    rng = np.random.default_rng(0)
    motions = [CameraMotion.random(rng, max_pan=3.0, max_zoom=0.02, max_rotation=0.4) for _ in range(300)]
    pans = np.array([m.pan for m in motions])
    zooms = np.array([m.zoom for m in motions])
    rots = np.array([m.rotation for m in motions])
    assert np.hypot(pans[:, 0], pans[:, 1]).max() <= 3.0
    assert np.abs(zooms).max() <= 0.02 and np.abs(rots).max() <= 0.4
    assert np.hypot(pans[:, 0], pans[:, 1]).max() > 2.5 and np.abs(zooms).max() > 0.015
    assert (pans[:, 0] < 0).any() and (pans[:, 0] > 0).any() and (rots < 0).any()
    assert all(m.pan_accel == (0.0, 0.0) for m in motions)


def test_too_small_photo_raises() -> None:
    with pytest.raises(DatasetError, match="photo 60x40 is smaller than the requested 96x64 clip"):
        synthesize_clip(texture(40, 60), 3, (H, W), CameraMotion((0.0, 0.0), 0.0, 0.0))
    # big enough for one view, not for the whole trajectory
    with pytest.raises(DatasetError, match="photo 100x70 is too small .* camera motion"):
        synthesize_clip(texture(70, 100), 8, (H, W), CameraMotion((3.0, 0.0), 0.0, 0.0))
    with pytest.raises(DatasetError, match="at scale 4"):
        synthesize_clip(texture(70, 100), 2, (H, W), CameraMotion((0.0, 0.0), 0.0, 0.0), scale=4.0)


def test_bad_arguments_raise_config_error(photo: np.ndarray) -> None:
    still = CameraMotion((0.0, 0.0), 0.0, 0.0)
    with pytest.raises(ConfigError, match="n_frames"):
        synthesize_clip(photo, 0, (H, W), still)
    with pytest.raises(ConfigError, match="supersample"):
        synthesize_clip(photo, 2, (H, W), still, supersample=0)
    with pytest.raises(ConfigError, match="zoom"):
        CameraMotion((0.0, 0.0), -1.0, 0.0)
    with pytest.raises(DatasetError, match="expected"):
        synthesize_clip(photo[..., 0], 2, (H, W), still)


def test_load_still_reads_rgb(tmp_path) -> None:
    from PIL import Image

    image = texture(20, 30)
    Image.fromarray(image).save(tmp_path / "still.png")
    Image.fromarray(image[..., 0]).save(tmp_path / "gray.png")
    loaded = load_still(tmp_path / "still.png")
    assert loaded.dtype == np.uint8 and loaded.shape == (20, 30, 3)
    np.testing.assert_array_equal(loaded, image)
    assert load_still(str(tmp_path / "gray.png")).shape == (20, 30, 3)
    with pytest.raises(DatasetError, match="missing.png"):
        load_still(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="junk.png"):
        load_still(tmp_path / "junk.png")
