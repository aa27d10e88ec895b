"""Real files, real faults: trimmed, damaged and unusual inputs (issue 14, one test per case).

Every input is made here with the encoders PyAV bundles; the case numbers are the issue's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
    EncoderError,
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


def _mutations(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation: a cut, random bytes, bit flips, an insertion or a zeroed run."""
    b = bytearray(data)
    kind = rng.integers(0, 5)
    pos = int(rng.integers(0, len(b)))
    if kind == 0:
        return bytes(b[: int(len(b) * rng.uniform(0.02, 0.98))])
    if kind == 1:
        n = int(rng.integers(1, 64))
        b[pos : pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 2:
        for _ in range(int(rng.integers(1, 20))):
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
    elif kind == 3:
        b[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    else:
        n = min(int(rng.integers(1, 400)), len(b) - pos)
        b[pos : pos + n] = bytes(n)
    return bytes(b)


def _faststart(source: Path, target: Path) -> Path:
    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


def _only_named_codecave_errors(path: Path, run: object) -> None:
    try:
        run(path)  # type: ignore[operator]
    except CodecaveError as exc:
        assert str(path) in str(exc), f"{path}: the message does not name the file: {exc}"


def test_case03_named_recipes_are_codecave_errors(tmp_path: Path) -> None:
    mp4 = tmp_path / "clip.mp4"
    encode_frames(pan_frames(16, 64, 96), mp4, EncodeSettings(codec="x264", crf=23, keyint=8, threads=1))
    fast = _faststart(mp4, tmp_path / "fast.mp4").read_bytes()
    cut = tmp_path / "faststart-cut.mp4"
    cut.write_bytes(fast[: len(fast) // 10])  # was: ValueError: not a pixel format: 'unknown'
    with pytest.raises(CodecaveError, match="faststart-cut.mp4"):
        scan_video(cut)
    fourcc = tmp_path / "fourcc.mp4"
    fourcc.write_bytes(mp4.read_bytes().replace(b"avc1", b"zzz9"))  # was: AttributeError on None
    with pytest.raises(CodecaveError, match="fourcc.mp4: its video stream's codec"):
        open_video(fourcc)
    titled = tmp_path / "titled.mkv"
    with av.open(str(mp4)) as inp, av.open(str(titled), "w") as out:
        out.metadata["title"] = "Caf\u00e9 au lait"
        stream = out.add_stream_from_template(inp.streams.video[0])
        stream.metadata["title"] = "Caf\u00e9 au lait"
        for packet in inp.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    latin1 = tmp_path / "latin1.mkv"  # the same length: "\u00e9" in Latin-1 is one byte, plus a space
    latin1.write_bytes(titled.read_bytes().replace("Caf\u00e9".encode(), b"Caf\xe9 "))
    assert b"Caf\xe9 " in latin1.read_bytes()
    assert scan_video(latin1).ok  # was: UnicodeDecodeError
    out = enhance_video(latin1, tmp_path / "out.mkv", progress=False)
    assert out.frames == 16


def test_case03_fuzz_only_codecave_errors_that_name_the_file(tmp_path: Path) -> None:
    """Seeded mutations of a small H.264 MP4 (index at the end and at the front) and of its
    raw stream: reading may fail only with a codecave error naming the file; enhancing
    (every decodable frame kept) too, and it leaves no partial file behind."""
    from codecave.enhance import Enhancer
    from codecave.probe import probe_video

    mp4 = tmp_path / "seed.mp4"
    raw = tmp_path / "seed.264"
    settings = EncodeSettings(codec="x264", crf=23, keyint=8, threads=1)
    encode_frames(pan_frames(16, 64, 96), mp4, settings)
    encode_frames(pan_frames(16, 64, 96), raw, settings)
    seeds = [(".mp4", mp4.read_bytes()), (".264", raw.read_bytes()),
             (".mp4", _faststart(mp4, tmp_path / "fast.mp4").read_bytes())]
    rng = np.random.default_rng(2026)
    enhancer = Enhancer()
    for i in range(360):
        suffix, data = seeds[i % len(seeds)]
        path = tmp_path / f"mutant{i}{suffix}"
        path.write_bytes(_mutations(data, rng))

        def read(p: Path) -> None:
            scan_video(p)
            with open_video(p) as video:
                for _ in video:
                    pass

        _only_named_codecave_errors(path, read)
        if i % 9 == 0:
            out = tmp_path / f"out{i}.mkv"
            _only_named_codecave_errors(
                path, lambda p, out=out: (probe_video(p), enhance_video(p, out, model=enhancer, on_damage="keep")))
        path.unlink()
    assert not [p for p in tmp_path.iterdir() if "codecave-partial" in p.name]


def _remux_shifted(source: Path, target: Path, offset: float) -> Path:
    """Every stream of ``source`` moved ``offset`` seconds later (as broadcast captures start)."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        copies = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            shift = round(Fraction(offset) / packet.time_base)
            packet.pts += shift
            packet.dts += shift
            packet.stream = copies[packet.stream.index]
            out.mux(packet)
    return target


def _starts(path: Path) -> dict[str, float]:
    """First presentation time (seconds) of each stream, from its decoded frames."""
    out = {}
    with av.open(str(path)) as c:
        for s in c.streams:
            first = next(iter(c.decode(s)), None)
            out[s.type] = float(first.time) if first is not None else None
            c.seek(0)
    return out


def test_case04_outputs_start_at_zero_keeping_the_streams_offsets(tmp_path: Path) -> None:
    source = _with_audio(tmp_path / "src.mp4", pan_frames(24, 96, 160), keyint=12)
    ts = _remux_shifted(source, tmp_path / "late.ts", 10.0)
    before = _starts(ts)
    assert before["video"] > 9.9
    out = enhance_video(ts, tmp_path / "late.mp4", progress=False).output
    after = _starts(out)
    assert min(after.values()) == pytest.approx(0.0, abs=1e-3)
    assert after["video"] - after["audio"] == pytest.approx(before["video"] - before["audio"], abs=2e-3)
    for name, settings in (("ps.mpg", EncodeSettings(codec="mpeg2", crf=None, qp=5, bframes=2, keyint=12)),
                           ("part2.avi", EncodeSettings(codec="mpeg4", crf=None, qp=5, bframes=2, keyint=12))):
        src = tmp_path / name
        encode_frames(pan_frames(12, 96, 160), src, settings)
        result = enhance_video(src, tmp_path / f"{name}.mp4", progress=False)
        assert _starts(result.output)["video"] == pytest.approx(0.0, abs=1e-3), name


def test_case12_sigterm_leaves_no_partial_file_and_stale_ones_are_removed(tmp_path: Path) -> None:
    source = tmp_path / "long.mp4"
    encode_frames(pan_frames(60, 96, 160), source, EncodeSettings(codec="x264", crf=30, threads=1))
    out = tmp_path / "out.mp4"
    # SIGTERM arrives while frames are being written (sent by the process to itself, so the
    # moment does not depend on how busy the machine is).
    code = ("import os, signal\n"
            "from codecave.codec.writer import VideoWriter\n"
            "write = VideoWriter.write\n"
            "def write_then_term(self, *args, **kwargs):\n"
            "    write(self, *args, **kwargs)\n"
            "    if self.frames == 30:\n"
            "        assert self.path.exists() and 'codecave-partial' in self.path.name\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "VideoWriter.write = write_then_term\n"
            "from codecave.cli.main import main\n"
            f"raise SystemExit(main(['enhance', {str(source)!r}, {str(out)!r}, '--no-progress', "
            "'--codec', 'x264-lossless']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert not list(tmp_path.glob(".*codecave-partial*")) and not out.exists()
    # A partial file of a run that died without cleaning up (SIGKILL) is removed by the next run.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    from codecave.enhance import _HOST

    stale = tmp_path / f".out.codecave-partial-{_HOST}-{gone.pid}.mp4"
    stale.write_bytes(b"half a video")
    elsewhere = tmp_path / f".out.codecave-partial-otherhost-{gone.pid}.mp4"  # a shared folder: not ours
    elsewhere.write_bytes(b"another machine's run")
    short = tmp_path / "short.mp4"
    encode_frames(pan_frames(4, 96, 160), short, EncodeSettings(codec="x264", crf=30))
    enhance_video(short, out, progress=False)
    assert out.exists() and not stale.exists() and elsewhere.exists()


def test_case13_unwritable_folder_fails_first_and_a_full_disk_names_out(tmp_path: Path, pan_clip: Path) -> None:
    if os.geteuid() == 0:
        folder = Path("/sys")  # refuses new files even to root
    else:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    target = folder / "codecave-out.mp4"
    started = time.perf_counter()
    with pytest.raises(EncoderError, match=f"{target}: cannot write in {folder}"):
        enhance_video(pan_clip, target)
    assert time.perf_counter() - started < 5  # before any frame is enhanced
    # A disk that fills up while writing: the file-size limit makes writes fail as ENOSPC would.
    out = tmp_path / "full.mp4"
    code = ("import resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))\n"
            "from codecave.cli.main import main\n"
            f"raise SystemExit(main(['enhance', {str(pan_clip)!r}, {str(out)!r}, '--no-progress', "
            "'--codec', 'x264-lossless']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr  # a codecave error, not a crash
    assert "Traceback" not in done.stderr
    assert f"{out}: writing failed" in done.stderr and "codecave-partial" not in done.stderr
    assert not list(tmp_path.glob(".*codecave-partial*")) and not out.exists()


def test_case14_messages_name_out_and_the_codecs_its_container_carries(tmp_path: Path, pan_clip: Path) -> None:
    for name, message in (("out.png", "out.png: .png is a picture format"),
                          ("out.xyz", "out.xyz: FFmpeg has no video container for '.xyz'")):
        with pytest.raises(EncoderError, match=message):
            enhance_video(pan_clip, tmp_path / name)
    started = time.perf_counter()
    with pytest.raises(EncoderError, match="out.y4m: yuv4mpegpipe cannot take libx264 video"):
        enhance_video(pan_clip, tmp_path / "out.y4m")  # a muxer that lists no codecs: the header is tried
    assert time.perf_counter() - started < 5
    with pytest.raises(EncoderError, match="webm cannot carry h264 .--codec x264.: use --codec svtav1"):
        enhance_video(pan_clip, tmp_path / "out.webm", encode=EncodeSettings(codec="x264"))
    result = enhance_video(pan_clip, tmp_path / "out.webm", progress=False)  # no codec chosen: one WebM carries
    with av.open(str(result.output)) as c:
        assert c.streams.video[0].codec_context.name in ("libdav1d", "av1", "libaom-av1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_case15_small_ones_are_one_line_errors(tmp_path: Path, pan_clip: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from codecave.cli.main import main

    # `codecave probe X --json | head`: the reader goes away; no BrokenPipeError traceback.
    long = tmp_path / "long.mp4"  # its JSON (about 120 kB) does not fit in a pipe's buffer
    encode_frames(pan_frames(400, 64, 96), long, EncodeSettings(codec="x264", crf=30, preset="ultrafast"))
    code = (f"import sys\nfrom codecave.cli.main import main\nsys.exit(main(['probe', {str(long)!r}, '--json']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(20)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in stderr, stderr
    cases = [
        (["probe", str(pan_clip), "--viz", str(tmp_path / "viz"), "--viz-frames", "x:y"], "--viz-frames 'x:y'"),
        (["enhance", str(pan_clip), str(tmp_path / "o.mp4"), "--device", "cuda"], "cannot use CUDA")
        if not __import__("torch").cuda.is_available() else None,
        (["enhance", str(pan_clip), str(tmp_path / "o.mp4"), "--model", "foo"], "unknown model 'foo'; choose one of cavsr, crds, neural_wrapper, pnp_vcve, vig"),
        (["enhance", str(pan_clip), str(tmp_path / "o.mp4"), "--variant", "huge"], "unknown variant 'huge'; choose one of"),
        (["prepare", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "set")], "no video, frame folder or still"),
    ]
    (tmp_path / "nothing-here").mkdir()
    for argv, message in filter(None, cases):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert message in err and "Traceback" not in err, (argv, err)
        assert err.startswith("codecave ") and "clip/s" not in err, err  # no progress bar before the error
    with pytest.raises(SystemExit) as exit_:
        main(["probe", str(pan_clip), "--frames", "-5"])
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


class _Payload:
    """Anything a pickle can name: loading it with weights_only=False would run its __reduce__."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_case16_checkpoints_load_without_executing_code(tmp_path: Path) -> None:
    import random

    import torch

    from codecave.engine.checkpoint import (
        CHECKPOINT,
        load_checkpoint,
        rng_state,
        save_checkpoint,
        set_rng_state,
    )
    from codecave.errors import CheckpointError

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path, model, optimizer, 7, {"seconds": 1.5}, {"name": "linear"})
    state = load_checkpoint(tmp_path)  # weights_only=True inside
    assert state["step"] == 7 and state["extra"] == {"seconds": 1.5}
    # RNG states round-trip through tensors and plain values.
    saved = rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(saved)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    torch.save({**state, "extra": _Payload()}, tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointError, match="Python objects .* does not load it"):
        load_checkpoint(tmp_path)


def test_case07_mkv_attachments_are_kept(tmp_path: Path, pan_clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    styled = tmp_path / "styled.mkv"
    font = b"\x00\x01\x00\x00" + bytes(range(256)) * 8  # a TrueType header and some payload
    with av.open(str(pan_clip)) as inp, av.open(str(styled), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        out.add_attachment("DejaVuSans.ttf", "font/ttf", font)
        for packet in inp.demux(video=0):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)
    result = enhance_video(styled, tmp_path / "out.mkv", progress=False)
    with av.open(str(result.output)) as c:
        (kept,) = [s for s in c.streams if s.type == "attachment"]
        assert (kept.name, kept.mimetype, bytes(kept.data)) == ("DejaVuSans.ttf", "font/ttf", font)
    with caplog.at_level("WARNING"):
        enhance_video(styled, tmp_path / "out.mp4", progress=False)
    assert "cannot carry the source's 1 attachment(s) (DejaVuSans.ttf)" in caplog.text


def test_case11_mpeg_quantisers_are_on_the_h264_qp_scale(tmp_path: Path) -> None:
    from codecave.codec.priors import mpeg_quantiser_to_qp, sequence_crf

    assert mpeg_quantiser_to_qp(10.0) == pytest.approx(12 + 6 * np.log2(5 / 0.85))  # x264's qscale2qp
    for codec in ("mpeg4", "mpeg2"):
        path = tmp_path / f"q5-{codec}.avi"  # Xvid-like `-q:v 5`: qscale 5 everywhere
        encode_frames(pan_frames(12, 96, 160), path,
                      EncodeSettings(codec=codec, crf=None, qp=5, bframes=2, keyint=12))
        with open_video(path) as video:
            frames = [f for f in video if f.priors.qp is not None]
        assert len(frames) >= 10
        assert all(f.priors.codec_qp == pytest.approx(10.0) for f in frames), codec  # the codec's own value
        assert all(f.priors.qp == pytest.approx(27.3, abs=0.05) for f in frames), codec
        assert np.allclose(frames[0].priors.qp_map, 27.3, atol=0.05)
        crf, source = sequence_crf(None, [f.priors.qp for f in frames], [int(f.priors.frame_type) for f in frames])
        assert source == "estimated from frame QP" and crf > 20, (codec, crf)  # was "CRF 5.4", near lossless


def test_case11_x265_and_svtav1_crfs_reach_the_model_on_x264s_scale(tmp_path: Path) -> None:
    from codecave.codec.priors import sequence_crf, x264_equivalent_crf
    from codecave.codec.reader import read_info
    from codecave.data.dataset import variant_crf
    from codecave.data.prepare import PrepareSettings, load_manifest, prepare_dataset

    assert x264_equivalent_crf("x264", 28) == 28
    assert x264_equivalent_crf("x265", 30) == pytest.approx(27.5)
    assert x264_equivalent_crf("svtav1", 40) == pytest.approx(22.4)
    hevc = tmp_path / "x265.mkv"
    encode_frames(pan_frames(8, 96, 160), hevc, EncodeSettings(codec="x265", crf=30))
    crf, source = sequence_crf(read_info(hevc).encoder, [], [])
    assert crf == pytest.approx(27.5) and source == "encoder crf (x265 CRF 30)"
    clip = tmp_path / "src" / "pan.mkv"
    clip.parent.mkdir()
    encode_frames(pan_frames(8, 64, 96), clip, EncodeSettings(codec="ffv1", crf=None))
    root = tmp_path / "av1set"
    prepare_dataset([clip.parent], root, PrepareSettings(codec="svtav1", crfs=(40,), max_frames=8))
    (info,) = load_manifest(root)["clips"].values()
    assert info["variants"]["crf40"]["encoder_crf"] == 40 and info["variants"]["crf40"]["codec"] == "svtav1"
    assert variant_crf(info, "crf40") == pytest.approx(22.4)  # was: no crf recorded (DatasetError)


def _mpeg4(path: Path, frames: list[np.ndarray], qpel: bool) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25, options={"qmin": "4", "qmax": "4", **({"flags": "+qpel"} if qpel else {})})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.codec_context.max_b_frames, s.codec_context.gop_size = 2, 12
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_case09_mpeg4_b_frames_get_estimated_vectors_not_phantom_zeros(tmp_path: Path) -> None:
    step = (2, 1)  # the pan: the past picture's content sits at (+2, +1) per frame
    for qpel in (False, True):
        path = _mpeg4(tmp_path / f"part2-qpel{int(qpel)}.avi", pan_frames(12, 96, 160, step=step), qpel)
        with av.open(str(path)) as c:  # the case: FFmpeg exports B vectors as (0, 0)
            c.streams.video[0].codec_context.options = {"flags2": "+export_mvs"}
            raw = [f for f in c.decode(video=0) if int(f.pict_type) == 3]
            exported = np.concatenate([s.to_ndarray() for f in raw for s in f.side_data
                                       if type(s).__name__ == "MotionVectors"])
            assert len(raw) >= 4 and not exported["motion_x"].any() and not exported["motion_y"].any()
        with open_video(path) as video:
            frames = list(video)
        bs = [f for f in frames if f.priors.frame_type.name == "B"]
        assert bs and all(f.priors.source == "estimated" for f in bs), qpel
        assert all(f.priors.source == "bitstream" for f in frames if f.priors.frame_type.name != "B")
        for f in bs:
            m = f.priors.mvs
            past, future = m[m["direction"] < 0], m[m["direction"] > 0]
            assert f.priors.ref_past == 1 and f.priors.ref_future == 1
            assert np.median(past["dx"]) == step[0] and np.median(past["dy"]) == step[1]
            assert np.median(future["dx"]) == -step[0] and np.median(future["dy"]) == -step[1]


def _box_over_moving_background(n: int = 24, height: int = 160, width: int = 256) -> tuple[list, list]:
    """A textured box moving (-2, +2) px per frame over a textured background panning (-3, -1)."""
    from tests.conftest import texture

    background = texture(height + 4 * n + 8, width + 4 * n + 8, seed=1)
    box = texture(48, 64, seed=2)
    frames, corners = [], []
    for t in range(n):
        f = background[t : t + height, 3 * t : 3 * t + width].copy()
        x, y = 88 - 2 * t, 16 + 2 * t
        f[y : y + 48, x : x + 64] = box
        frames.append(f)
        corners.append((x, y))
    return frames, corners


def test_case08_no_phantom_zero_vectors_in_split_b_macroblocks(tmp_path: Path) -> None:
    frames, corners = _box_over_moving_background()
    path = tmp_path / "box.mp4"
    encode_frames(frames, path, EncodeSettings(codec="x264", crf=23, bframes=3, keyint=24, threads=1))
    with av.open(str(path)) as c:  # the case: FFmpeg's own export has them
        c.streams.video[0].codec_context.options = {"flags2": "+export_mvs"}
        raw = np.concatenate([s.to_ndarray() for f in c.decode(video=0) if int(f.pict_type) == 3
                              for s in f.side_data if type(s).__name__ == "MotionVectors"])
        assert ((raw["motion_x"] == 0) & (raw["motion_y"] == 0)).sum() > 50
    checked = matched = 0
    with open_video(path) as video:
        for f in video:
            if f.priors.frame_type.name != "B":
                continue
            m = f.priors.mvs
            inner = m[(m["x"] >= 16) & (m["y"] >= 16) & (m["x"] + m["w"] <= 240) & (m["y"] + m["h"] <= 144)]
            assert not ((inner["dx"] == 0) & (inner["dy"] == 0)).any(), f.index  # nothing here is still
            bx, by = corners[f.index]
            for v in inner:
                in_box = bx + 4 <= v["x"] and v["x"] + v["w"] <= bx + 60 and by + 4 <= v["y"] and v["y"] + v["h"] <= by + 44
                off_box = (v["x"] + v["w"] <= bx - 8 or v["x"] >= bx + 72 or v["y"] + v["h"] <= by - 8
                           or v["y"] >= by + 56)
                if not (in_box or off_box):
                    continue
                d = f.priors.ref_past if v["direction"] < 0 else -f.priors.ref_future
                want = (2 * d, -2 * d) if in_box else (3 * d, d)
                checked += 1
                matched += abs(v["dx"] - want[0]) <= 1 and abs(v["dy"] - want[1]) <= 1
    assert checked > 500 and matched / checked > 0.9, (matched, checked)


def test_case10_interlaced_h264_vectors_are_estimated_at_frame_scale(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import texture

    step = (2, 4)  # per frame; the two fields of a frame are sampled half a frame apart
    height, width, n = 96, 160, 12
    big = texture(height + 8 * n + 16, width + 4 * n + 16, seed=5)

    def at(half: int) -> np.ndarray:
        return big[half * step[1] // 2 : half * step[1] // 2 + height, half * step[0] // 2 : half * step[0] // 2 + width]

    frames = []
    for t in range(n):
        woven = at(2 * t).copy()
        woven[1::2] = at(2 * t + 1)[1::2]  # bottom field half a frame later
        frames.append(woven)
    path = tmp_path / "mbaff.mp4"
    encode_frames(frames, path, EncodeSettings(codec="x264", crf=20, bframes=2, keyint=12, threads=1,
                                               params={"interlaced": "1", "tff": "1"}))
    with av.open(str(path)) as c:  # the case: FFmpeg's export gives field lines, half the vertical motion
        c.streams.video[0].codec_context.options = {"flags2": "+export_mvs"}
        first_p = next(f for f in c.decode(video=0) if int(f.pict_type) == 2)
        raw = next(s for s in first_p.side_data if type(s).__name__ == "MotionVectors").to_ndarray()
        assert first_p.interlaced_frame
        assert np.median(raw["motion_y"] / raw["motion_scale"]) == step[1] // 2
    with caplog.at_level("WARNING"), open_video(path) as video:
        read = list(video)
    assert "interlaced picture(s)" in caplog.text  # said so
    for f in read[1:]:
        m = f.priors.mvs
        past = m[m["direction"] < 0]
        assert f.priors.source == "estimated" and f.priors.ref_past == 1, f.index
        assert np.median(past["dx"]) == step[0] and np.median(past["dy"]) == step[1], f.index


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_case02_a_variable_frame_rate_is_not_damage(tmp_path: Path, ext: str) -> None:
    """A phone drops frames in low light: a gap in otherwise even timestamps, nothing broken."""
    path = tmp_path / f"phone.{ext}"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30, options={"crf": "23", "threads": "1"})
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.time_base = Fraction(1, 30)
        for i, f in enumerate(pan_frames(20, 96, 160)):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i + (2 if i >= 10 else 0), Fraction(1, 30)  # two frames dropped
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    report = scan_video(path)
    assert report.ok and len(report.timestamp_gaps) == 1 and report.timestamp_gaps[0].frames == 2
    assert enhance_video(path, tmp_path / "out.mp4", progress=False).frames == 20


def test_case02_lost_frames_are_counted_once_and_a_long_last_frame_is_no_cut(tmp_path: Path) -> None:
    path = tmp_path / "part2.mp4"
    encode_frames(pan_frames(48, 96, 160), path, EncodeSettings(codec="mpeg4", crf=None, qp=5, keyint=12))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = np.random.default_rng(4).integers(0, 256, 200, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    report = scan_video(bad)
    assert not report.ok and not report.truncated, report.details()  # the end is there
    assert not any(sp.cause == "cut" for sp in report.spans), report.details()
    with av.open(str(bad)) as c:
        shown = sum(1 for _ in c.decode(video=0))
    lost = sum(sp.frames or 0 for sp in report.spans if sp.cause != "concealed")
    assert lost <= 48 - shown + len(report.corrupt_frames), report.details()
    # An intact MP4 whose last frame lasts longer (screen and phone recordings): not a cut.
    long_last = tmp_path / "long-last.mp4"
    with av.open(str(long_last), "w") as out:
        s = out.add_stream("libx264", rate=30, options={"crf": "23", "threads": "1", "bf": "0"})
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        for i, f in enumerate(pan_frames(20, 96, 160)):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            frame.duration = 3 if i == 19 else 1
            for p in s.encode(frame):
                if p.pts == 19:
                    p.duration = 3
                out.mux(p)
        for p in s.encode():
            if p.pts == 19:
                p.duration = 3
            out.mux(p)
    assert scan_video(long_last).ok, scan_video(long_last).details()


def test_case02_excerpts_judge_only_their_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.264"
    encode_frames(pan_frames(48, 64, 96), path, EncodeSettings(codec="x264", crf=18, keyint=8, bframes=0))
    data = bytearray(path.read_bytes())
    at = len(data) * 3 // 4
    data[at : at + 300] = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes()
    bad = tmp_path / "late-damage.264"
    bad.write_bytes(bytes(data))
    report = scan_video(bad)
    damaged = sorted(report.corrupt_frames)
    assert damaged and damaged[0] > 12, report.details()
    assert report.within(0, 8).ok and not report.within(damaged[0], damaged[0] + 1).ok
    out = enhance_video(bad, tmp_path / "early.mkv", frames=(0, 8), progress=False)  # stop: not touched
    assert out.frames == 8 and not out.decode_problems
    with pytest.raises(CorruptVideoError):
        enhance_video(bad, tmp_path / "late.mkv", frames=(damaged[0] - 2, damaged[0] + 2), progress=False)
