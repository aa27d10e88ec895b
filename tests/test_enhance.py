"""`enhance_video` / `codecave enhance` end to end on small clips made here."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from codecave.cli.main import main
from codecave.codec.convert import rgb_to_yuv420_like_encoder
from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video, read_info
from codecave.data.synth import load_still, synthesize_clip
from codecave.demo import sample_photo
from codecave.enhance import EnhanceOptions, Enhancer, enhance_video
from codecave.errors import (
    ConfigError,
    CorruptVideoError,
    OutputExistsError,
    UnsupportedVideoError,
    VideoError,
)
from codecave.metrics.quality import psnr_plane
from codecave.models import create_model
from tests.conftest import pan_frames

FAST = EnhanceOptions(device="cpu", chunk=3)


def identity() -> Enhancer:
    """An untrained PnP-VCVE small (RGB) returns its input (zero-initialised output layers)."""
    return Enhancer(create_model("pnp_vcve", weights=None, variant="small"), FAST)


def make_clip(path: Path, n: int = 12, size: tuple[int, int] = (64, 96), vfr: bool = False,
              audio: bool = True, rotation: int = 0, pix_fmt: str = "yuv420p", crf: int = 30,
              bt709: bool = False, sar: Fraction | None = None) -> list[float]:
    """x264 clip (+ AAC tone), optionally with irregular timestamps; returns the frame times in seconds."""
    h, w = size
    frames = pan_frames(n, h, w)
    c = av.open(str(path), "w")
    v = c.add_stream("libx264", rate=25)
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    v.time_base = v.codec_context.time_base = Fraction(1, 1000)
    v.options = {"crf": str(crf), "bframes": "2"}
    if rotation:
        v.set_display_rotation(rotation)
    if sar:
        v.codec_context.sample_aspect_ratio = sar
    if bt709:
        ctx = v.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709
        ctx.color_range = 1  # limited ("tv")
    a = c.add_stream("aac", rate=48000) if audio else None
    pts, t = [], 0
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix_fmt,
                                                                       dst_colorspace=1 if bt709 else None)
        frame.pts, frame.time_base = t, Fraction(1, 1000)
        pts.append(t / 1000)
        t += (40 if not vfr else (20, 40, 80)[i % 3])
        for p in v.encode(frame):
            c.mux(p)
    for p in v.encode():
        c.mux(p)
    if a is not None:
        total = int(48000 * t / 1000)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(total) / 48000)).astype(np.float32)[None]
        for k in range(0, total, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 48000, k
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return pts


def streams(path: Path) -> dict[str, int]:
    with av.open(str(path)) as c:
        out: dict[str, int] = {}
        for s in c.streams:
            out[s.type] = out.get(s.type, 0) + 1
        return out


def video_pts(path: Path) -> list[float]:
    """Frame times in seconds, to the millisecond."""
    with av.open(str(path)) as c:
        return [round(float(f.time), 3) for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def test_frames_timestamps_audio_and_rotation_survive(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    pts = make_clip(src, vfr=True, rotation=90, bt709=True)
    result = enhance_video(src, out, model=identity())
    assert result.frames == 12 and result.crf == 30 and result.crf_source == "encoder crf"
    assert video_pts(out) == pts
    assert streams(out) == {"video": 1, "audio": 1}
    assert audio_packets(out) == audio_packets(src)
    info_in, info_out = read_info(src), read_info(out)
    assert (info_out.width, info_out.height, info_out.rotation) == (info_in.width, info_in.height, info_in.rotation)
    colour = ("color_space", "color_primaries", "color_trc", "color_range")
    assert [getattr(info_out, k) for k in colour] == [getattr(info_in, k) for k in colour]
    assert info_in.color_space == "bt709" and info_in.rotation == 90
    assert not list(tmp_path.glob(".*partial*"))


SRT = """1
00:00:00,000 --> 00:00:00,200
first line

2
00:00:00,240 --> 00:00:00,440
second line
"""


def with_subtitles_and_tags(clip: Path, srt: Path, out: Path) -> None:
    """Remux ``clip`` into Matroska with an SRT track, and tag every stream's language."""
    srt.write_text(SRT)
    with av.open(str(clip)) as a, av.open(str(srt)) as b, av.open(str(out), "w") as c:
        pairs = []
        for s, lang in ((a.streams.video[0], "eng"), (a.streams.audio[0], "deu"), (b.streams[0], "fra")):
            t = c.add_stream_from_template(s)
            t.metadata["language"] = lang
            t.metadata["title"] = f"{s.type} track"
            pairs.append((s, t))
        for container, (s, t) in ((a, pairs[0]), (a, pairs[1]), (b, pairs[2])):
            for p in container.demux(s):
                if p.size:
                    p.stream = t
                    c.mux(p)


def test_subtitles_tags_and_aspect_ratio_survive(tmp_path: Path) -> None:
    clip, src, out = tmp_path / "clip.mp4", tmp_path / "in.mkv", tmp_path / "out.mkv"
    make_clip(clip, sar=Fraction(4, 3))
    with_subtitles_and_tags(clip, tmp_path / "subs.srt", src)
    enhance_video(src, out, model=identity())
    assert streams(out) == {"video": 1, "audio": 1, "subtitle": 1}

    def describe(path: Path) -> list[object]:
        with av.open(str(path)) as c:
            tags = [(s.type, s.metadata.get("language"), s.metadata.get("title")) for s in c.streams]
            text = [(round(float(p.pts * p.time_base), 3), bytes(p)) for p in c.demux(subtitles=0) if p.size]
            return [tags, text, c.streams.video[0].codec_context.sample_aspect_ratio]

    tags, text, sar = describe(out)
    assert [tags, text, sar] == describe(src)
    assert text == [(0.0, b"first line"), (0.24, b"second line")] and sar == Fraction(4, 3)
    assert audio_packets(out) == audio_packets(src)


def test_identity_model_output_matches_input_closely(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(src, audio=False, vfr=True)
    enhance_video(src, out, model=identity(), encode=EncodeSettings(codec="ffv1", crf=None, preset=None,
                                                                     pix_fmt="bgr0"))
    with open_video(src, priors=False) as a, open_video(out, priors=False) as b:
        for fa, fb in zip(a, b):
            assert np.array_equal(fa.rgb, fb.rgb)
    # Matroska has its own 1/1000 time base: the frames must still sit at the source's times.
    assert video_pts(out) == video_pts(src)


def test_odd_size_444_input(tmp_path: Path) -> None:
    src, out = tmp_path / "odd.mp4", tmp_path / "out.mp4"
    make_clip(src, n=6, size=(45, 67), audio=False, pix_fmt="yuv444p")
    result = enhance_video(src, out, model=identity())
    info = read_info(out)
    assert result.frames == 6 and (info.width, info.height) == (67, 45)
    assert info.frame_rate == read_info(src).frame_rate == 25


def test_tiling_matches_whole_frames(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, n=5, size=(96, 128), audio=False)
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant="small")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    whole = Enhancer(model, FAST)
    tiled = Enhancer(model, EnhanceOptions(device="cpu", chunk=3, tile=48, tile_overlap=32))
    with open_video(src) as v:
        frames = list(v)
    a = np.stack(list(whole.stream(frames)))
    b = np.stack(list(tiled.stream(frames)))
    assert np.abs(a.astype(int) - b).max() <= 2
    assert np.abs(a.astype(int) - b).mean() < 0.05
    # Chunk boundaries change nothing but float rounding: one frame of context on
    # each side is all the model sees.
    c = np.stack(list(Enhancer(model, EnhanceOptions(device="cpu", chunk=1)).stream(frames)))
    assert np.abs(a.astype(int) - c).max() <= 1 and (a != c).mean() < 1e-4


def test_frame_range(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    pts = make_clip(src)
    result = enhance_video(src, out, model=identity(), frames=(3, 8))
    # The excerpt starts at zero; its audio is cut to the frames' span and moves with them.
    assert result.frames == 5 and video_pts(out) == [round(t - pts[3], 3) for t in pts[3:8]]
    with av.open(str(out)) as c:
        audio = [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None]
    assert audio and min(audio) >= -0.03 and max(audio) < (pts[8] - pts[3]) + 0.03
    # Edge frames of the excerpt saw their neighbours: they match a full run's frames.
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant="small")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    enhancer = Enhancer(model, EnhanceOptions(device="cpu"))
    lossless = EncodeSettings(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")
    enhance_video(src, tmp_path / "full.mkv", model=enhancer, encode=lossless)
    enhance_video(src, tmp_path / "part.mkv", model=enhancer, encode=lossless, frames=(3, 8))
    with open_video(tmp_path / "full.mkv", priors=False) as a, open_video(tmp_path / "part.mkv", priors=False) as b:
        full = np.stack([f.rgb for f in a])[3:8].astype(int)
        part = np.stack([f.rgb for f in b]).astype(int)
    assert np.abs(full - part).max() <= 1


def test_bad_inputs_fail_cleanly_with_no_output(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    with pytest.raises(VideoError):
        enhance_video(text, tmp_path / "o1.mp4", model=identity())
    src = tmp_path / "in.mp4"
    make_clip(src, n=24, audio=False)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(VideoError):
        enhance_video(cut, tmp_path / "o2.mp4", model=identity())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "in.mp4", "notes.mp4"]
    assert main(["enhance", str(text), str(tmp_path / "o3.mp4"), "--no-progress"]) == 2
    assert not (tmp_path / "o3.mp4").exists()
    # With the output codec given, too (the source was once opened for the trial write first,
    # which let FFmpeg's own error through with a traceback).
    assert main(["enhance", str(text), str(tmp_path / "o4.mkv"), "--codec", "ffv1", "--no-progress"]) == 2
    assert not (tmp_path / "o4.mkv").exists()


def test_frames_damaged_mid_stream_are_reported_and_the_rest_enhanced(tmp_path: Path) -> None:
    src = tmp_path / "clip.264"
    encode_frames(pan_frames(24, 64, 96), src, EncodeSettings(crf=18, keyint=8, bframes=0))
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.264"
    bad.write_bytes(bytes(data))
    with open_video(bad, priors=False) as video:
        decodable = sum(1 for _ in video)
    with pytest.raises(CorruptVideoError, match="frame 8 decoded with errors"):  # stop is the default
        enhance_video(bad, tmp_path / "out.mkv", model=identity())
    assert not (tmp_path / "out.mkv").exists()
    result = enhance_video(bad, tmp_path / "out.mkv", model=identity(), on_damage="keep")
    assert result.frames == decodable > 12
    assert any("concealed" in line or "failed" in line for line in result.decode_problems)


def test_refuses_to_overwrite_the_input_or_an_existing_file(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, n=4, audio=False)
    before = src.read_bytes()
    with pytest.raises(OutputExistsError, match="is the input"):
        enhance_video(src, src, model=identity(), overwrite=True)
    with pytest.raises(OutputExistsError, match="is the input"):
        enhance_video(src, tmp_path / "." / "in.mp4", model=identity(), overwrite=True)
    other = tmp_path / "other.mp4"
    other.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="overwrite"):
        enhance_video(src, other, model=identity())
    assert other.read_bytes() == b"keep me" and src.read_bytes() == before
    enhance_video(src, other, model=identity(), overwrite=True)
    assert streams(other) == {"video": 1}


class Interrupting(torch.nn.Module):
    """Wraps a model and raises KeyboardInterrupt on its second call (Ctrl-C mid-run)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self.inner(*args, **kwargs)

    def adapt(self, crf: torch.Tensor) -> object:
        return self.inner.adapt(crf)


def test_interrupted_run_leaves_no_partial_file(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, audio=True)
    enhancer = Enhancer(Interrupting(create_model("pnp_vcve", weights=None, variant="small")), FAST)
    with pytest.raises(KeyboardInterrupt):
        enhance_video(src, out, model=enhancer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_default_model_raises_psnr_on_a_compressed_clip(tmp_path: Path) -> None:
    # a photo (matplotlib's bundled sample) seen by a moving camera: natural content, as the
    # model was trained on; on the noise texture of pan_frames its gain is within +-0.02 dB
    frames = list(synthesize_clip(load_still(sample_photo()), 10, (96, 160), seed=1).frames)
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    encode_frames(frames, src, EncodeSettings(crf=35, preset="medium", threads=1))
    result = enhance_video(src, out, encode=EncodeSettings(codec="ffv1", crf=None, preset=None),
                           options=EnhanceOptions(device="cpu"))
    assert result.variant == "fast"  # the default, on the decoder's 4:2:0 planes
    gt = torch.from_numpy(np.stack([rgb_to_yuv420_like_encoder(f).y for f in frames]))

    def score(path: Path) -> float:  # PSNR on the Y plane of the file, no RGB round trip
        with open_video(path, priors=False) as v:
            y = torch.from_numpy(np.stack([f.planes.y for f in v]))
        return float(psnr_plane(y, gt).mean())

    # measured with the shipped fast weights: +0.16 to +0.20 dB over camera seeds 0-3 (small: +0.07 to +0.12)
    assert score(out) > score(src) + 0.1


def test_default_falls_back_to_an_rgb_model_for_input_that_is_not_420(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=4, size=(48, 64), audio=False, pix_fmt="yuv444p")
    result = enhance_video(src, out, options=FAST)          # variant left to the default
    assert result.variant == "small" and result.frames == 4
    assert result.pass_through_qp == create_model(variant="small").pass_through_qp
    explicit = Enhancer(create_model(variant="fast"), FAST)  # chosen: no silent switch
    assert explicit.model.fallback_variant is None
    with pytest.raises(UnsupportedVideoError, match="yuv444p is not YUV 4:2:0"):
        enhance_video(src, tmp_path / "fast.mp4", model=explicit)
    assert not (tmp_path / "fast.mp4").exists()


def yuv_identity(**options: object) -> Enhancer:
    """An untrained PnP-VCVE fast is the identity on the packed grid."""
    return Enhancer(create_model("pnp_vcve", weights=None, variant="fast"),
                    EnhanceOptions(device="cpu", **{"chunk": 3, **options}))


def test_enhance_clip_refuses_frames_laid_out_for_the_other_domain() -> None:
    with pytest.raises(ConfigError, match=r"takes \(T, 24, H/4, W/4\)"):
        yuv_identity().enhance_clip(np.zeros((2, 16, 16, 3), np.uint8), {}, 35.0)
    with pytest.raises(ConfigError, match=r"takes \(T, H, W, 3\) RGB"):
        identity().enhance_clip(np.zeros((2, 24, 4, 4), np.uint8), {}, 35.0)


def planes_of(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    with open_video(path, priors=False) as video:
        return [(f.planes.y, f.planes.u, f.planes.v) for f in video]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
@pytest.mark.parametrize("codec", ["ffv1", "x264-lossless"])
def test_identity_yuv_model_returns_the_input_planes_bit_for_bit(tmp_path: Path, pix_fmt: str, codec: str) -> None:
    """No harm by construction: planes go in and out without RGB, padding or rounding
    changing a sample, at 8 and 10 bits, on a size that is not a multiple of 16."""
    from codecave.cli.enhance import OUTPUT_CODECS

    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_clip(src, n=7, size=(62, 94), audio=False, pix_fmt=pix_fmt)
    settings = EncodeSettings(**{**OUTPUT_CODECS[codec], "preset": None if codec == "ffv1" else "medium",
                                 "pix_fmt": "source"})
    enhance_video(src, out, model=yuv_identity(), encode=settings)
    assert read_info(out).pix_fmt == pix_fmt
    a, b = planes_of(src), planes_of(out)
    assert len(a) == len(b) == 7
    for pa, pb in zip(a, b):
        assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(pa, pb))


def test_ten_bit_input_gives_ten_bit_output_by_default(tmp_path: Path) -> None:
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=5, audio=False, pix_fmt="yuv420p10le")
    enhance_video(src, out, model=yuv_identity())
    assert read_info(out).pix_fmt == "yuv420p10le"
    assert planes_of(out)[0][0].dtype == np.uint16


def test_yuv_stream_is_independent_of_chunking_and_tiling(tmp_path: Path) -> None:
    """Each frame is computed once, with its neighbours as context: chunk 1, chunk 3 and
    tiles give the same planes; RGB is yielded by default, planes on request."""
    src = tmp_path / "in.mp4"
    make_clip(src, n=6, size=(96, 128), audio=False)
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant="fast")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)

    def run(**options: object) -> list[object]:  # fp32: bf16 rounds differently with the batch shape
        with open_video(src) as video:
            return list(Enhancer(model, EnhanceOptions(device="cpu", precision="fp32", **options)).stream(video, output="yuv420"))

    whole, single = run(chunk=3), run(chunk=1)
    tiled = run(chunk=3, tile=64, tile_overlap=48)
    assert len(whole) == len(single) == len(tiled) == 6
    for a, b, c in zip(whole, single, tiled):
        for other in (b, c):  # float sums differ with the batch shape: a sample may round the other way
            for p, q in ((a.y, other.y), (a.u, other.u), (a.v, other.v)):
                diff = np.abs(p.astype(int) - q.astype(int))
                assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    with open_video(src) as video:
        decoded = [f.planes.y for f in video]
    assert any(not np.array_equal(a.y, d) for a, d in zip(whole, decoded))
    with open_video(src) as video:
        rgb = list(Enhancer(model, EnhanceOptions(device="cpu")).stream(video))
    assert rgb[0].shape == (96, 128, 3) and rgb[0].dtype == np.uint8


def test_hdr10_metadata_is_kept_by_x265_and_warned_about_otherwise(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "hdr.mp4"
    c = av.open(str(src), "w")
    s = c.add_stream("libx265", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p10le"
    master = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    s.options = {"x265-params": f"master-display={master}:max-cll=1000,400:hdr10=1:log-level=error"}
    ctx = s.codec_context  # PQ / BT.2020, as HDR10 files are tagged
    ctx.color_primaries, ctx.color_trc, ctx.colorspace = 9, 16, 9
    for i in range(4):
        f = av.VideoFrame.from_ndarray(np.full((72, 64), 400 + 10 * i, np.uint16), format="yuv420p10le")
        f.pts = i
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    assert read_info(src).hdr == {"master-display": master, "max-cll": "1000,400"}
    kept = tmp_path / "kept.mp4"
    enhance_video(src, kept, model=yuv_identity(), encode=EncodeSettings(codec="x265", crf=20, pix_fmt="source"))
    info = read_info(kept)
    assert info.hdr == {"master-display": master, "max-cll": "1000,400"} and info.pix_fmt == "yuv420p10le"
    # No codec chosen (issue 14, case 6): x265, the encoder that keeps it, at the source's depth.
    default = read_info(enhance_video(src, tmp_path / "default.mp4", model=yuv_identity()).output)
    assert default.hdr == {"master-display": master, "max-cll": "1000,400"} and default.codec == "hevc"
    assert default.pix_fmt == "yuv420p10le"
    assert (default.color_primaries, default.color_trc, default.color_space) == ("bt2020", "smpte2084", "bt2020nc")
    with caplog.at_level("WARNING"):
        enhance_video(src, tmp_path / "lost.mp4", model=yuv_identity(), encode=EncodeSettings(codec="x264"))
    assert "HDR10 metadata" in caplog.text and read_info(tmp_path / "lost.mp4").hdr is None


@pytest.mark.parametrize("dct_shrink", [0.0, 1.0])
def test_recurrent_vig_streams_a_file_once_per_frame_equal_to_the_whole_clip(tmp_path: Path, dct_shrink: float
                                                                              ) -> None:
    """VIG through the Enhancer (bf16, its default): the Y plane of every frame equals the model
    run on the whole clip at once, chroma is the decoder's, and odd sizes are padded and
    cropped back; with the shrinkage stage each enhanced frame is shrunk once."""
    from codecave.models.vig import VIG

    src = tmp_path / "in.mp4"
    encode_frames(pan_frames(9, 70, 98), src, EncodeSettings(crf=35, preset="veryfast"))
    torch.manual_seed(0)
    model = create_model("vig", weights=None, dct_shrink=dct_shrink)
    torch.nn.init.normal_(model.fusion.weight, std=0.02)
    calls, shrunk = [], []
    original = VIG.encode_frames
    model.encode_frames = lambda frames, qp=None: calls.append(len(frames)) or original(model, frames, qp)
    if dct_shrink:
        stage = model.shrink.forward
        model.shrink.forward = lambda plane, qp: shrunk.append(len(plane)) or stage(plane, qp)
    with open_video(src) as video:
        decoded = [f.planes for f in video]
    with open_video(src) as video:
        enhancer = Enhancer(model)
        assert enhancer.precision == "bf16"
        out = list(enhancer.stream(video, crf=35.0, output="yuv420"))
    assert len(out) == 9 and sum(calls) == 9  # each frame's features computed once
    assert sum(shrunk) == (9 if dct_shrink else 0)  # and each enhanced frame shrunk once
    shrunk.clear()
    y = torch.stack([torch.from_numpy(p.y.astype(np.float32)) for p in decoded]) / 255
    y = torch.nn.functional.pad(y[None], (0, 2, 0, 2), mode="replicate")[0]  # 70x98 -> 72x100
    with torch.no_grad():
        whole = model(y[None, :, None], torch.tensor([35.0]))[0, :, 0, :70, :98]
    expected = whole.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    for p, d, e in zip(out, decoded, expected):
        assert np.array_equal(p.u, d.u) and np.array_equal(p.v, d.v)
        assert np.abs(p.y.astype(int) - e.astype(int)).max() <= 1
    assert any(not np.array_equal(p.y, d.y) for p, d in zip(out, decoded))


def test_crds_streams_a_file_in_chunks_with_context_and_flat_memory(tmp_path: Path) -> None:
    """CRDS through the Enhancer: every frame comes out once, chroma is the decoder's, odd
    sizes are padded and cropped back, and with a chunk as long as the clip the Y plane equals
    the model run on the whole clip (DIS motion included)."""
    from codecave.models.crds import CRDSStream

    src = tmp_path / "in.mp4"
    n = 21  # more than two chunks of 8 with 2 frames of context
    encode_frames(pan_frames(n, 70, 98), src, EncodeSettings(crf=35, preset="veryfast"))
    torch.manual_seed(0)
    model = create_model("crds", weights=None)
    for block in model.blocks:  # a trained-like model: the recurrences and windows reach across frames
        torch.nn.init.normal_(block.rpn.out.weight, std=0.05)
    with open_video(src) as video:
        decoded = [f.planes for f in video]
    held, pushed = [], []
    model.streamer = lambda qp=None: _Watched(model, held, pushed)  # type: ignore[method-assign]
    with open_video(src) as video:
        out = list(Enhancer(model, EnhanceOptions(device="cpu", precision="fp32")).stream(video, crf=35.0,
                                                                                         output="yuv420"))
    assert len(out) == n and max(held) <= model.config.chunk + 2 * model.config.context and sum(pushed) >= 10
    for p, d in zip(out, decoded):
        assert np.array_equal(p.u, d.u) and np.array_equal(p.v, d.v) and p.y.shape == d.y.shape
    # the Y planes are the model's chunks, each run with its context: frames 8-15 saw 6-17
    y = torch.stack([torch.from_numpy(p.y.astype(np.float32)) for p in decoded]) / 255
    y = torch.nn.functional.pad(y[None], (0, 2, 0, 2), mode="replicate")[0]
    with torch.no_grad():
        middle = model(y[None, 6:18, None])[0, 2:10, 0, :70, :98]
    expected = middle.clamp(0, 1).mul(255).round().numpy()
    got = np.stack([p.y for p in out[8:16]]).astype(float)
    assert np.abs(got - expected).max() <= 1 and not np.array_equal(got, np.stack([d.y for d in decoded[8:16]]))
    with torch.no_grad():  # one chunk as long as the clip is the whole clip (DIS motion included)
        whole = model(y[None, :, None])[0, :, 0, :70, :98]
        stream = CRDSStream(model, chunk=n)
        first = [stream.push(y[i][None, None]) for i in range(n)]
        streamed = [f for f in first if f is not None] + stream.flush()
    torch.testing.assert_close(torch.stack(streamed)[:, 0, 0, :70, :98], whole)


def test_crds_with_the_shrinkage_stage_shrinks_each_frame_once_at_the_sequence_qp() -> None:
    """``dct_shrink``: the stream shrinks every frame once as it arrives, at the stream's QP, and
    gives what the model gives on the whole clip; without the QP it refuses; NaN leaves the
    frames as they are."""
    from codecave.models.crds import CRDSStream

    torch.manual_seed(0)
    model = create_model("crds", weights=None, dct_shrink=1.0)
    plain = create_model("crds", weights=None)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("shrink.")})
    for block in model.blocks:
        torch.nn.init.normal_(block.rpn.out.weight, std=0.05)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("shrink.")})
    y = (0.5 + 0.02 * torch.randn(1, 6, 1, 32, 40)).clamp(0, 1)  # flat grey and noise of 5 code values
    qp = torch.tensor([37.0])
    with torch.no_grad():
        whole = model(y, qp=qp)
        shrunk = model.prefilter(y, qp)
        assert (shrunk - 0.5).abs().mean() < 0.75 * (y - 0.5).abs().mean()  # noise is shrunk at QP 37
        torch.testing.assert_close(whole, plain(shrunk))  # the network restores the shrunk frames
        torch.testing.assert_close(model.prefilter(y, torch.tensor([float("nan")])), y)
        stream = CRDSStream(model, chunk=6, qp=qp)
        calls = []
        original = model.shrink.forward
        model.shrink.forward = lambda *a: calls.append(a[0].shape[0]) or original(*a)  # type: ignore[method-assign]
        first = [stream.push(y[:, i]) for i in range(6)]
        streamed = [f for f in first if f is not None] + stream.flush()
    assert calls == [1] * 6  # one frame at a time, each once
    torch.testing.assert_close(torch.stack(streamed, dim=1), whole)
    with pytest.raises(ValueError, match="sequence QP"):
        model(y)
    with pytest.raises(ValueError, match="sequence QP"):
        model.streamer()
    with pytest.raises(ValueError, match="sequence QP"):
        CRDSStream(model)


def test_a_luma_model_holds_back_whole_streams_at_or_below_its_pass_through_qp(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    encode_frames(pan_frames(5, 64, 96), src, EncodeSettings(crf=22, preset="veryfast"))
    torch.manual_seed(0)
    model = create_model("crds", weights=None)
    with open_video(src) as video:
        decoded = [f.planes for f in video]
    for crf, held in ((22.0, True), (35.0, False)):
        report: dict[str, object] = {}
        enhancer = Enhancer(model, EnhanceOptions(device="cpu", pass_through_qp=27))
        with open_video(src) as video:
            out = list(enhancer.stream(video, crf=crf, report=report, output="yuv420"))
        same = [np.array_equal(p.y, d.y) for p, d in zip(out, decoded)]
        assert len(out) == 5 and all(same) == held and report["passed_through"] == (5 if held else 0)
    codes = np.stack([np.zeros((24, 16, 24), np.uint8) + 100] * 3)
    held_clip = Enhancer(model, EnhanceOptions(device="cpu", pass_through_qp=27)).enhance_clip(codes, {}, 22.0)
    assert np.array_equal(held_clip, codes)


class _Watched:
    """A CRDS stream that records how many frames it holds after each push."""

    def __init__(self, model: torch.nn.Module, held: list[int], pushed: list[int]) -> None:
        from codecave.models.crds import CRDSStream

        self.inner, self.held, self.pushed = CRDSStream(model), held, pushed

    def push(self, frame: torch.Tensor) -> torch.Tensor | None:
        y = self.inner.push(frame)
        self.held.append(len(self.inner.frames))
        self.pushed.append(int(y is not None))
        return y

    def flush(self) -> list[torch.Tensor]:
        return self.inner.flush()


def test_super_resolution_writes_a_4x_video_with_the_frames_timestamps_and_audio(tmp_path: Path) -> None:
    """CAVSR (untrained: bicubic up-sampling) over a file: 4x the size, the same frames,
    timestamps and audio; overlapping windows give what the model gives on the whole clip
    when the window reaches the whole clip."""
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    pts = make_clip(src, n=7, size=(32, 48), vfr=True)
    model = create_model("cavsr", weights=None)
    result = enhance_video(src, out, model=Enhancer(model, EnhanceOptions(device="cpu", chunk=3)))
    assert result.frames == 7
    info = read_info(out)
    assert (info.width, info.height) == (4 * 48, 4 * 32)
    assert video_pts(out) == pts
    assert audio_packets(out) == audio_packets(src)
    with open_video(src) as v:
        frames = list(v)
    torch.manual_seed(0)
    for p in model.parameters():  # a trained-like model: the recurrence matters
        torch.nn.init.normal_(p, std=0.02)
    long_reach = Enhancer(model, EnhanceOptions(device="cpu", chunk=2))
    long_reach.radius = 7  # every window holds the whole clip
    streamed = np.stack(list(long_reach.stream(frames)))
    assert streamed.shape == (7, 128, 192, 3)
    whole = np.stack(list(Enhancer(model, EnhanceOptions(device="cpu", chunk=7)).stream(frames)))
    assert np.abs(streamed.astype(int) - whole).max() <= 1


def test_evaluate_scores_super_resolution_against_bicubic_and_refuses_mixed_sets(
        tiny_sr_dataset: Path, tiny_dataset: Path) -> None:
    from codecave.errors import DatasetError
    from codecave.evaluate import evaluate

    sr = Enhancer(create_model("cavsr", weights=None), EnhanceOptions(device="cpu", chunk=4))
    report = evaluate(sr, tiny_sr_dataset, ["crf15"], ["pan0"], max_frames=4)
    score = report.scores[0]
    assert report.scale == 4 and "bicubic" in report.to_markdown()
    # an untrained small CAVSR is bicubic up-sampling: the same PSNR as the baseline, to rounding
    assert np.allclose(score.psnr_in, score.psnr_out, atol=0.05)
    with pytest.raises(DatasetError, match="super-resolution"):
        evaluate(identity(), tiny_sr_dataset, ["crf15"], ["pan0"], max_frames=2)
    with pytest.raises(DatasetError, match="--scale 4"):
        evaluate(sr, tiny_dataset, ["crf35"], ["pan0"], max_frames=2)


def test_the_chunk_comes_from_the_model_unless_given() -> None:
    sr = create_model("cavsr", weights=None)
    assert Enhancer(sr, EnhanceOptions(device="cpu")).chunk == sr.stream_chunk == 16
    assert Enhancer(sr, EnhanceOptions(device="cpu", chunk=5)).chunk == 5
    assert identity().chunk == 3  # FAST's
    assert Enhancer(create_model("pnp_vcve", weights=None, variant="small"), EnhanceOptions(device="cpu")).chunk == 4
    with pytest.raises(ConfigError, match="chunk"):
        EnhanceOptions(chunk=0)


def test_frames_per_call_follow_the_models_pixel_bound() -> None:
    """PnP-VCVE fast streams 8 frames per call up to its pixel bound (4 at 1280x720, 2 at
    1920x1080, one from 4K up); a chunk given in the options is kept whatever the size."""
    model = create_model("pnp_vcve", weights=None, variant="fast")
    enhancer = Enhancer(model, EnhanceOptions(device="cpu"))
    assert [enhancer.chunk_for(h, w) for h, w in ((360, 640), (720, 1280), (1080, 1920), (2160, 3840))] == [8, 4, 2, 1]
    assert Enhancer(model, EnhanceOptions(device="cpu", chunk=3)).chunk_for(2160, 3840) == 3


@pytest.mark.parametrize(("chunk", "without", "offset"), [(2, 13, 0.0), (1, 19, 7.0)])
def test_a_stream_shrinks_each_frame_once(tmp_path: Path, monkeypatch, chunk: int, without: int,
                                          offset: float) -> None:
    """With the shrinkage stage, a stream hands each frame to the model's prefilter once (the
    context frames two calls share are kept): every call gets, bit for bit, the shrunk window a
    run without the kept frames computes inside the model (one tile as large as the picture),
    and the two give the same pictures; also with the I and P pictures' QP offset, which
    needs the picture types."""
    import functools

    src = tmp_path / "in.mp4"
    make_clip(src, n=7, size=(64, 96), audio=False)
    torch.manual_seed(2)
    model = create_model("pnp_vcve", weights=None, variant="fast", dct_shrink=1.0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    model.shrink_ip_qp_offset = offset
    shrunk: list[torch.Tensor] = []  # what prefilter returned, call by call
    given: list[torch.Tensor] = []   # what forward got with prefiltered=True
    prefilter, forward = model.prefilter, model.forward

    def spy_prefilter(frames: torch.Tensor, priors: dict) -> torch.Tensor:
        shrunk.append(prefilter(frames, priors))
        return shrunk[-1]

    @functools.wraps(forward)
    def spy_forward(frames: torch.Tensor, priors: dict, **kwargs: object) -> torch.Tensor:
        if kwargs.get("prefiltered"):
            given.append(frames.clone())
        return forward(frames, priors, **kwargs)

    monkeypatch.setattr(model, "prefilter", spy_prefilter)
    monkeypatch.setattr(model, "forward", spy_forward)

    def run(**options: object) -> list[object]:
        with open_video(src) as video:
            return list(Enhancer(model, EnhanceOptions(device="cpu", precision="fp32", chunk=chunk, **options))
                        .stream(video, output="yuv420"))

    kept = run()
    assert sum(s.shape[1] for s in shrunk) == 7
    shrunk.clear()
    again = run(tile=128)  # every call shrinks its whole window inside forward
    assert sum(s.shape[1] for s in shrunk) == without
    assert len(given) == len(shrunk) and all(torch.equal(g, s) for g, s in zip(given, shrunk))
    for a, b in zip(kept, again):
        for p, q in ((a.y, b.y), (a.u, b.u), (a.v, b.v)):
            diff = np.abs(p.astype(int) - q.astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
