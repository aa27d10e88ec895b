"""Real files, real faults: trimmed, damaged and unusual inputs (issue 14, one test per case).

Every input is made here with the encoders PyAV bundles; the case numbers are the issue's.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video, scan_video
from codecave.enhance import enhance_video
from codecave.errors import (
    CodecaveError,
    CorruptVideoError,
    InputNotFoundError,
    NotAVideoError,
    NotSeekableError,
)
from tests.conftest import pan_frames


def _with_audio(path: Path, frames: list[np.ndarray], fps: int = 24, keyint: int = 24) -> Path:
    """x264 (3 B-frames, GOP ``keyint``) plus an AAC sine, as phones and cameras write."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "23", "g": str(keyint), "bf": "3",
                                                         "threads": "1", "sc_threshold": "0"})
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = out.add_stream("aac", rate=48000)
        a.layout = "mono"
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        samples = int(48000 * len(frames) / fps)
        t = np.arange(samples) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, k : k + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, k
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path


def trim_by_stream_copy(source: Path, target: Path, start: float) -> Path:
    """What ``ffmpeg -ss START -i SOURCE -c copy TARGET`` writes: packets from the keyframe
    before START, timestamps shifted so START is zero, the pre-roll hidden by an edit list."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        video = inp.streams.video[0]
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        inp.seek(int(start / video.time_base), stream=video, backward=True)
        for packet in inp.demux(*[inp.streams[i] for i in copies]):
            if packet.dts is None:
                continue
            shift = round(Fraction(start) / packet.time_base)
            if packet.stream.type == "audio" and packet.pts < shift:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copies[packet.stream.index]
            out.mux(packet)
    return target


def _priors(path: Path) -> list[tuple]:
    with open_video(path) as video:
        return [(f.priors.frame_type, f.priors.ref_past, f.priors.ref_future, f.priors.mvs.tobytes(),
                 f.planes.y.tobytes()) for f in video]


def test_case01_mp4_trimmed_by_stream_copy(tmp_path: Path) -> None:
    full = _with_audio(tmp_path / "full.mp4", pan_frames(48, 96, 160))
    trimmed = trim_by_stream_copy(full, tmp_path / "trimmed.mp4", 1.4)
    with av.open(str(trimmed)) as c:  # the case: the header counts the hidden pre-roll
        announced = c.streams.video[0].frames
        hidden = sum(p.is_discard for p in c.demux(video=0))
    assert hidden > 0 and announced == 24
    report = scan_video(trimmed)
    assert report.ok, report.details()
    shown = _priors(trimmed)
    whole = _priors(full)
    assert 0 < len(shown) < announced
    # The shown frames are the full file's last ones, with the same pictures, vectors and
    # reference distances (the pre-roll is decoded so the first frames' references are right).
    assert shown == whole[-len(shown):]
    out = enhance_video(trimmed, tmp_path / "out.mp4", progress=False)
    assert out.frames == len(shown) and not out.decode_problems
    with av.open(str(out.output)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]


def _damaged_set(tmp_path: Path) -> dict[str, Path]:
    frames = pan_frames(48, 96, 160, seed=3)
    files = {}
    for ext, settings in (("mp4", EncodeSettings(codec="x264", crf=23, keyint=12, threads=1)),
                          ("mkv", EncodeSettings(codec="x264", crf=23, keyint=12, threads=1)),
                          ("ts", EncodeSettings(codec="x264", crf=23, keyint=12, threads=1)),
                          ("mpg", EncodeSettings(codec="mpeg2", crf=None, qp=8, keyint=12, threads=1)),
                          ("webm", EncodeSettings(codec="svtav1", crf=35, keyint=12, preset="12"))):
        full = tmp_path / f"full.{ext}"
        encode_frames(frames, full, settings)
        data = full.read_bytes()
        (tmp_path / f"half.{ext}").write_bytes(data[: len(data) // 2])
        middle = bytearray(data)
        m = len(data) // 2
        middle[m : m + 600] = np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8).tobytes()
        (tmp_path / f"middle.{ext}").write_bytes(bytes(middle))
        files[ext] = full
    return files


def test_case02_one_damage_policy_for_every_container(tmp_path: Path) -> None:
    files = _damaged_set(tmp_path)
    for ext in files:
        for kind in ("half", "middle"):
            bad = tmp_path / f"{kind}.{ext}"
            out = tmp_path / f"out-{kind}-{ext}.mkv"
            try:
                report = scan_video(bad)
            except NotAVideoError:  # an MP4 cut before its index: nothing to read at all
                assert ext == "mp4" and kind == "half"
                continue
            assert not report.ok, (bad, "damage went unnoticed")
            assert report.details(), bad
            assert all("frame" in line for line in report.details())
            with pytest.raises(CorruptVideoError, match="nothing was written") as err:
                enhance_video(bad, out, progress=False)  # stop is the default
            assert report.details()[0] in str(err.value)
            assert not out.exists()
            kept = enhance_video(bad, out, progress=False, on_damage="keep")
            assert kept.decode_problems and kept.frames > 0
            skipped = enhance_video(bad, out, progress=False, on_damage="skip", overwrite=True)
            assert skipped.skipped == len(report.corrupt_frames)
            assert skipped.frames == kept.frames - skipped.skipped
            assert not [p for p in tmp_path.iterdir() if "codecave-partial" in p.name]
        assert scan_video(files[ext]).ok, ext


def test_case02_gap_and_cut_name_the_times(tmp_path: Path) -> None:
    path = tmp_path / "clip.mkv"
    encode_frames(pan_frames(48, 96, 160), path, EncodeSettings(codec="x264", crf=23, keyint=12, threads=1))
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    report = scan_video(tmp_path / "cut.mkv")
    (span,) = report.spans
    assert span.cause == "cut" and span.end == pytest.approx(48 / 25)
    assert 0.5 < span.start < 1.5 and span.frames == round((span.end - span.start) * 25)


def test_case05_pipes_are_refused_not_hung(tmp_path: Path, pan_clip: Path) -> None:
    fifo = tmp_path / "named-pipe"
    os.mkfifo(fifo)
    with pytest.raises(NotSeekableError, match="pipe"):
        enhance_video(fifo, tmp_path / "out.mp4")
    read, write = os.pipe()
    try:
        with pytest.raises(NotSeekableError, match="save the stream to a file"):
            open_video(f"/dev/fd/{read}")
    finally:
        os.close(read)
        os.close(write)
    with pytest.raises(InputNotFoundError) as err:
        enhance_video(tmp_path / "missing.mp4", tmp_path / "out.mp4")
    assert isinstance(err.value, CodecaveError) and isinstance(err.value, FileNotFoundError)
