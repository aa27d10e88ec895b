"""The codec reader on real clips made here: priors recover known motion, GOP, QP, errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.priors import FrameType
from codecave.codec.rasterize import compact_priors, dense_priors, stack_compact
from codecave.codec.reader import open_video, read_info, yuv_options
from codecave.errors import (
    CodecaveError,
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedVideoError,
)
from tests.conftest import pan_frames


def read_all(path: Path, **kwargs: object) -> list:
    with open_video(path, **kwargs) as video:  # type: ignore[arg-type]
        return list(video)


def interior(field: torch.Tensor, margin: int = 16) -> torch.Tensor:
    return field[..., margin:-margin, margin:-margin]


def test_frames_in_display_order_with_timestamps_and_sizes(pan_clip: Path) -> None:
    frames = read_all(pan_clip)
    assert [f.index for f in frames] == list(range(24))
    times = [f.time for f in frames]
    assert times == sorted(times) and times[1] == pytest.approx(0.04)
    assert all(f.packet_size and f.packet_size > 0 for f in frames)
    assert frames[0].rgb.shape == (96, 160, 3) and frames[0].rgb.dtype == np.uint8
    assert sorted(f.decode_index for f in frames) == list(range(24))


def test_vectors_recover_a_known_pan(pan_clip: Path) -> None:
    frames = read_all(pan_clip)
    stacked = stack_compact([compact_priors(f.priors, 96, 160) for f in frames])
    dense = dense_priors(stacked, 96, 160)
    for t, f in enumerate(frames):
        valid = interior(dense["mv_valid"][t])
        for slot, key, expected in ((0, "mv_past", (2.0, 1.0)), (1, "mv_future", (-2.0, -1.0))):
            if not valid[slot].any():
                continue
            mv = interior(dense[key][t])[:, valid[slot]]
            share = ((mv[0] - expected[0]).abs() <= 0.25) & ((mv[1] - expected[1]).abs() <= 0.25)
            assert share.float().mean() > 0.9, (t, f.priors.frame_type, key, mv.median(dim=1))


def test_vectors_recover_synthetic_zoom_flow(tmp_path: Path) -> None:
    from codecave.data.synth import CameraMotion, synthesize_clip
    from tests.conftest import texture

    clip = synthesize_clip(texture(400, 600, seed=3), 8, (128, 192),
                           CameraMotion(pan=(1.5, 0.5), zoom=0.01, rotation=0.0))
    path = tmp_path / "zoom.mp4"
    # ref=1: with several reference frames x264 may point older (see benchmarks/reference_accuracy.py)
    encode_frames(list(clip.frames), path, EncodeSettings(codec="x264", crf=18, bframes=0, ref=1))
    frames = read_all(path)
    errors = []
    for t in range(1, 8):
        c = compact_priors(frames[t].priors, 128, 192)
        dense = dense_priors(stack_compact([c]), 128, 192)
        valid = interior(dense["mv_valid"][0, 0])
        diff = interior(dense["mv_past"][0]) - interior(torch.from_numpy(clip.flow_past[t]))
        errors.append(diff.norm(dim=0)[valid].median().item())
    assert np.median(errors) < 0.5, errors


@pytest.mark.parametrize("bframes,keyint", [(0, 8), (2, 12)])
def test_frame_types_follow_bframes_and_keyint(tmp_path: Path, bframes: int, keyint: int) -> None:
    path = tmp_path / "gop.mkv"
    encode_frames(pan_frames(30, 64, 96), path,
                  EncodeSettings(codec="x264", crf=23, bframes=bframes, keyint=keyint,
                                 params={"scenecut": "0"}))
    frames = read_all(path)
    types = [f.priors.frame_type for f in frames]
    keys = [f.index for f in frames if f.priors.key_frame]
    assert keys == list(range(0, 30, keyint))
    assert all(types[k] == FrameType.I for k in keys)
    run = longest = 0
    for t in types:
        run = run + 1 if t == FrameType.B else 0
        longest = max(longest, run)
    assert longest <= bframes
    assert (FrameType.B in types) == (bframes > 0)
    assert all(f.priors.ref_past is None for f in frames if f.priors.frame_type == FrameType.I)


def test_qp_tracks_crf_order(tmp_path: Path) -> None:
    frames = pan_frames(12, 64, 96)
    mean_qp = []
    for crf in (18, 28, 38):
        path = tmp_path / f"crf{crf}.mp4"
        encode_frames(frames, path, EncodeSettings(codec="x264", crf=crf))
        decoded = read_all(path)
        mean_qp.append(np.mean([f.priors.qp for f in decoded]))
        assert decoded[0].priors.qp_map.shape == (4, 6)
    assert mean_qp[0] < mean_qp[1] < mean_qp[2], mean_qp


def test_sei_settings_reach_stream_info(pan_clip: Path) -> None:
    info = read_info(pan_clip)
    assert info.codec == "h264" and info.prior_source == "bitstream"
    assert info.encoder is not None and info.encoder.encoder == "x264"
    assert info.encoder.crf == 23 and info.encoder.bframes == 3 and info.encoder.keyint == 16
    assert (info.width, info.height) == (160, 96) and info.frame_rate == 25


def test_pyramid_references_match_vector_lengths(pan_clip: Path) -> None:
    """Resolved distances make the scaled vectors equal the one-frame motion."""
    for f in read_all(pan_clip):
        for direction, ref, sign in ((-1, f.priors.ref_past, 1), (1, f.priors.ref_future, -1)):
            rows = f.priors.mvs[f.priors.mvs["direction"] == direction]
            if len(rows) == 0:
                assert ref is None
                continue
            assert ref is not None and ref >= 1
            if len(rows) < 8:
                # a B-frame that predicts a few blocks one way: their median says little
                continue
            assert np.median(rows["dx"]) / ref == pytest.approx(2.0 * sign, abs=0.25), (f.index, ref)


def test_thread_count_reaches_the_encoder(tmp_path: Path) -> None:
    frames = pan_frames(6, 64, 96)
    settings = EncodeSettings(codec="x264", crf=30, threads=1)
    encode_frames(frames, tmp_path / "a.mp4", settings)
    assert b" threads=1 " in (tmp_path / "a.mp4").read_bytes()  # x264's settings SEI
    with pytest.raises(CodecaveError, match="threads"):
        encode_frames(frames, tmp_path / "c.mp4", settings.with_(threads=0))


def test_mpeg2_gives_bitstream_priors(tmp_path: Path) -> None:
    path = tmp_path / "clip.mpg"
    encode_frames(pan_frames(12, 64, 96), path, EncodeSettings(codec="mpeg2", qp=4, bframes=2, keyint=6))
    frames = read_all(path)
    assert {f.priors.frame_type for f in frames} == {FrameType.I, FrameType.P, FrameType.B}
    assert all(f.priors.source == "bitstream" for f in frames)
    # FFmpeg's MPEG-2 decoder attaches no QP to the picture it flushes last
    assert all(f.priors.qp is not None for f in frames[:-1])
    p = next(f for f in frames if f.priors.frame_type == FrameType.P)
    assert np.median(p.priors.mvs["dx"]) / p.priors.ref_past == pytest.approx(2.0, abs=0.5)


def test_hevc_falls_back_to_estimated_priors(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    encode_frames(pan_frames(8, 64, 96), path, EncodeSettings(codec="x265", crf=28, bframes=2))
    with open_video(path) as video:
        assert video.info.prior_source == "estimated"
        assert video.info.encoder is not None and video.info.encoder.crf == 28
        frames = list(video)
    assert all(f.priors.source == "estimated" for f in frames)
    assert frames[0].priors.frame_type == FrameType.I and len(frames[0].priors.mvs) == 0
    moving = [f for f in frames if len(f.priors.mvs)]
    assert moving and all(f.priors.qp == 28 for f in frames)
    past = np.concatenate([f.priors.mvs[f.priors.mvs["direction"] < 0] for f in moving])
    assert np.median(past["dx"]) == pytest.approx(2.0, abs=0.25)


def test_av1_gets_estimated_vectors_and_an_estimated_crf(tmp_path: Path) -> None:
    from codecave.codec.priors import sequence_crf

    path = tmp_path / "clip.mkv"
    encode_frames(pan_frames(6, 64, 96), path, EncodeSettings(codec="svtav1", crf=35, preset="10"))
    with open_video(path) as video:
        assert video.info.codec in ("av1", "libdav1d", "libaom-av1") and video.info.prior_source == "estimated"
        frames = list(video)
    assert len(frames) == 6 and all(f.priors.source == "estimated" for f in frames)
    moving = [f for f in frames if len(f.priors.mvs)]
    past = np.concatenate([f.priors.mvs[f.priors.mvs["direction"] < 0] for f in moving])
    assert np.median(past["dx"]) == pytest.approx(2.0, abs=0.25)
    # No SEI and no QP from the AV1 decoder: the sequence CRF falls back to the default, and says so.
    assert video.info.encoder is None and all(f.priors.qp is None for f in frames)
    crf, source = sequence_crf(video.info.encoder, [f.priors.qp for f in frames],
                               [int(f.priors.frame_type) for f in frames])
    assert (crf, source) == (23.0, "default (no QP in the file)")


def test_odd_sizes_and_444_and_10bit(tmp_path: Path) -> None:
    odd = tmp_path / "odd.mkv"
    encode_frames([f[:33, :47] for f in pan_frames(4, 64, 96)], odd, EncodeSettings(codec="ffv1", pix_fmt="yuv444p"))
    frames = read_all(odd)
    assert frames[0].rgb.shape == (33, 47, 3)
    dense = dense_priors(stack_compact([compact_priors(f.priors, 33, 47) for f in frames]), 33, 47)
    assert dense["mv_past"].shape == (4, 2, 33, 47) and dense["partition"].shape == (4, 4, 33, 47)
    for pix_fmt in ("yuv444p", "yuv420p10le"):
        path = tmp_path / f"{pix_fmt}.mp4"
        encode_frames(pan_frames(6, 64, 96), path, EncodeSettings(codec="x264", crf=20, pix_fmt=pix_fmt))
        frames = read_all(path)
        assert len(frames) == 6 and frames[0].rgb.dtype == np.uint8
        assert any(len(f.priors.mvs) for f in frames)


def test_10bit_h264_qp_is_on_the_8bit_scale(tmp_path: Path) -> None:
    """FFmpeg exports QP'Y = QP + 12 for 10-bit H.264; ``qp`` (and the map) stay on the 8-bit
    scale, so one CRF gives about the same frame QPs at both depths, and ``codec_qp`` keeps
    the exported value."""
    qps = {}
    for pix_fmt in ("yuv420p", "yuv420p10le"):
        path = tmp_path / f"{pix_fmt}.mp4"
        encode_frames(pan_frames(4, 64, 96), path, EncodeSettings(codec="x264", crf=25, pix_fmt=pix_fmt))
        frames = read_all(path)
        qps[pix_fmt] = [f.priors.qp for f in frames]
        for f in frames:
            assert f.priors.qp_map.mean() == pytest.approx(f.priors.qp, abs=1e-4)
            if pix_fmt == "yuv420p":
                assert f.priors.codec_qp is None
            else:
                assert f.priors.codec_qp == pytest.approx(f.priors.qp + 12.0)
    assert abs(np.mean(qps["yuv420p10le"]) - np.mean(qps["yuv420p"])) < 4.0


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("hello, I am text")
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        open_video(path)


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
    with pytest.raises(NoVideoStreamError, match="no video stream"):
        open_video(path)


def test_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "empty.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    with pytest.raises(CodecaveError):  # empty: no frame to decode
        read_all(path)
    try:
        read_all(path)
    except EmptyVideoError as exc:
        assert "no frame" in str(exc)
    except NotAVideoError:
        pass


def test_truncated_raw_stream_decodes_what_it_can(tmp_path: Path) -> None:
    path = tmp_path / "clip.264"
    encode_frames(pan_frames(24, 64, 96), path, EncodeSettings(codec="x264", crf=23, keyint=8))
    data = path.read_bytes()
    cut = tmp_path / "cut.264"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with open_video(cut) as video:
        frames = list(video)
    assert 0 < len(frames) < 24


def test_truncated_mp4_is_a_codecave_error(tmp_path: Path) -> None:
    mp4 = tmp_path / "full.mp4"
    encode_frames(pan_frames(24, 64, 96), mp4, EncodeSettings(codec="x264", crf=23))
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(mp4.read_bytes()[:-2000])
    with pytest.raises(CodecaveError):
        read_all(broken)


def test_corrupt_middle_is_reported_not_hidden(tmp_path: Path) -> None:
    path = tmp_path / "clip.264"
    encode_frames(pan_frames(24, 64, 96), path, EncodeSettings(codec="x264", crf=18, keyint=8, bframes=0))
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    middle = len(data) // 2
    data[middle : middle + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.264"
    bad.write_bytes(bytes(data))
    with open_video(bad) as video:
        frames = list(video)
        assert len(frames) > 12
        assert not video.report.ok, video.report
        with pytest.raises(CodecaveError, match="bad.264"):
            video.check()


def test_lossless_x264_decodes_to_rgb_without_a_colour_bias(tmp_path: Path) -> None:
    """swscale's direct 4:2:0 -> RGB path darkens by about one level; the reader must not."""
    frames = pan_frames(3, 64, 96, seed=4)
    path = tmp_path / "lossless.mp4"
    encode_frames(frames, path, EncodeSettings(codec="x264", crf=None, qp=0, preset="veryfast"))
    with open_video(path, priors=False) as video:
        decoded = np.stack([f.rgb for f in video]).astype(np.float64)
    bias = (decoded - np.stack(frames)).mean(axis=(0, 1, 2))
    assert np.abs(bias).max() < 0.3, bias


def test_qp_map_read_from_the_side_data_buffer_equals_pyav(pan_clip: Path) -> None:
    from codecave.codec.reader import _qp_from_side_data

    with av.open(str(pan_clip)) as c:
        stream = c.streams.video[0]
        stream.codec_context.options = {"export_side_data": "venc_params"}
        checked = 0
        for frame in c.decode(stream):
            for side in frame.side_data:
                if type(side).__name__ == "VideoEncParams":
                    qp, qp_map = _qp_from_side_data(side)
                    np.testing.assert_array_equal(qp_map, np.asarray(side.qp_map(), dtype=np.float32))
                    assert qp == pytest.approx(float(qp_map.mean()))
                    checked += 1
    assert checked == 24


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_planes_equal_the_decoders_own(tmp_path: Path, pix_fmt: str) -> None:
    """Each frame's Y, U, V planes are the decoder's, bit for bit (PyAV's I420 layout), and at
    the stream's bit depth; RGB is only made when asked."""
    path = tmp_path / f"{pix_fmt}.mp4"
    encode_frames(pan_frames(5, 62, 94), path, EncodeSettings(crf=25, pix_fmt=pix_fmt))
    container = av.open(str(path))
    expected = [f.to_ndarray() for f in container.decode(video=0)]
    container.close()
    with open_video(path) as video:
        frames = list(video)
    assert len(frames) == len(expected) == 5
    for frame, ref in zip(frames, expected):
        p = frame.planes
        assert p.bit_depth == (10 if "10" in pix_fmt else 8) and p.y.shape == (62, 94) and p.u.shape == (31, 47)
        assert p.y.dtype == (np.uint16 if p.bit_depth == 10 else np.uint8)
        assert np.array_equal(np.concatenate([p.y.ravel(), p.u.ravel(), p.v.ravel()]), ref.ravel())
        assert frame._rgb is None or callable(frame._rgb)  # no RGB made yet
        assert frame.rgb.shape == (62, 94, 3)


def test_nv12_is_read_as_planes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y, u, v = rng.integers(0, 256, (32, 48), np.uint8), rng.integers(0, 256, (16, 24), np.uint8), \
        rng.integers(0, 256, (16, 24), np.uint8)
    uv = np.stack([u, v], axis=-1).reshape(16, 48)
    (tmp_path / "a.yuv").write_bytes(np.concatenate([y.ravel(), uv.ravel()]).tobytes() * 2)
    with open_video(tmp_path / "a.yuv", format="rawvideo", options=yuv_options(48, 32, "nv12")) as video:
        frames = list(video)
    assert len(frames) == 2
    p = frames[1].planes
    assert np.array_equal(p.y, y) and np.array_equal(p.u, u) and np.array_equal(p.v, v)


def test_444_frames_refuse_planes_by_name(tmp_path: Path) -> None:
    path = tmp_path / "444.mkv"
    encode_frames(pan_frames(2, 32, 48), path, EncodeSettings(codec="ffv1", crf=None, preset=None, pix_fmt="yuv444p"))
    with open_video(path) as video:
        frame = next(iter(video))
    assert not frame.has_planes and frame.rgb.shape == (32, 48, 3)
    with pytest.raises(UnsupportedVideoError, match="yuv444p is not YUV 4:2:0"):
        _ = frame.planes


def test_side_data_is_the_same_on_every_read(tmp_path: Path) -> None:
    """Frame threading once corrupted B-frames' QP maps now and then (a race); every read
    of the same file must give the same priors, with other work going on in between."""
    path = tmp_path / "b.mp4"
    encode_frames(pan_frames(6, 96, 128), path, EncodeSettings(crf=30, bframes=2, threads=1))
    seen = set()
    for _ in range(12):
        with open_video(path) as video:
            qps = []
            for frame in video:
                qps.append(round(float(frame.priors.qp), 3))
                torch.randn(160, 160) @ torch.randn(160, 160)
        seen.add(tuple(qps))
    assert len(seen) == 1 and min(next(iter(seen))) > 10
