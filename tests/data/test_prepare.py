"""Dataset preparation: lossless ground truth survives, variants and priors are cached, resume, refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codecave.codec.convert import rgb_to_planes
from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.reader import open_video
from codecave.data.prepare import PrepareSettings, held_out_names, load_clip, prepare_dataset
from codecave.data.sources import discover_sources, read_frames
from codecave.errors import DatasetError
from codecave.grid import pack_planes
from tests.conftest import pan_frames, texture


@pytest.fixture()
def lossless(tmp_path: Path) -> tuple[Path, np.ndarray]:
    frames = pan_frames(6, 64, 96)
    path = tmp_path / "src" / "pan.mkv"
    path.parent.mkdir()
    encode_frames(frames, path, EncodeSettings(codec="ffv1", pix_fmt="bgr0"))
    return path, np.stack(frames)


SMALL = PrepareSettings(crfs=(25.0, 35.0), max_frames=6, preset="veryfast", domain="rgb")


def test_lossless_source_gives_identical_ground_truth(tmp_path: Path, lossless: tuple[Path, np.ndarray]) -> None:
    path, frames = lossless
    result = prepare_dataset([path], tmp_path / "ds", SMALL)
    assert result.prepared == ["pan"] and not result.failed
    clip = load_clip(tmp_path / "ds", "pan", "crf35")
    assert np.array_equal(clip.gt, frames)
    assert clip.decoded.shape == frames.shape and not np.array_equal(clip.decoded, frames)
    assert clip.priors["mv"].shape == (6, 2, 2, 16, 24) and clip.priors["qp_map"].shape == (6, 4, 6)
    info = clip.info["variants"]
    assert info["crf25"]["bytes"] > info["crf35"]["bytes"]
    assert info["crf35"]["encoder_crf"] == 35
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["settings"]["crfs"] == [25.0, 35.0] and "pyav" in manifest["versions"]
    assert manifest["clips"]["pan"]["sha256"] == clip.info["sha256"]


def test_resume_skips_done_clips_and_refuses_other_settings(tmp_path: Path, lossless: tuple[Path, np.ndarray]) -> None:
    path, _ = lossless
    prepare_dataset([path], tmp_path / "ds", SMALL)
    again = prepare_dataset([path], tmp_path / "ds", SMALL)
    assert again.prepared == [] and again.skipped == ["pan"]
    with pytest.raises(DatasetError, match="other settings"):
        prepare_dataset([path], tmp_path / "ds", PrepareSettings(crfs=(20.0,), max_frames=6, domain="rgb"))


def test_rate_points_can_be_added_to_a_prepared_folder(tmp_path: Path, lossless: tuple[Path, np.ndarray],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """More CRFs on the same folder: only the new variants are encoded, the old ones are left
    untouched, and a fresh folder with all rate points holds the same ground truth; dropping
    a rate point or changing the ground truth is refused."""
    from PIL import Image

    import codecave.data.prepare as prep

    path, _ = lossless
    stills = tmp_path / "stills"
    stills.mkdir()
    Image.fromarray(texture(96, 128, seed=3)).save(stills / "photo.png")
    base: dict = {"max_frames": 6, "still_frames": 3, "still_size": (64, 96), "preset": "veryfast"}
    first = prepare_dataset([path, stills], tmp_path / "ds", PrepareSettings(crfs=(25.0,), **base), stills=True)
    assert sorted(first.prepared) == ["pan", "photo"]
    old_video = (tmp_path / "ds" / "clips" / "pan" / "crf25" / "video.mp4").read_bytes()
    encoded: list[str] = []
    real = prep._encode_variant
    monkeypatch.setattr(prep, "_encode_variant", lambda gt, folder, enc: encoded.append(folder.name) or real(gt, folder, enc))
    more = PrepareSettings(crfs=(25.0, 40.0), **base)
    second = prepare_dataset([path, stills], tmp_path / "ds", more, stills=True)
    assert sorted(second.extended) == ["pan", "photo"] and second.skipped == [] and not second.failed
    assert sorted(encoded) == [".crf40.tmp", ".crf40.tmp"]  # the new rate point only, built aside
    assert (tmp_path / "ds" / "clips" / "pan" / "crf25" / "video.mp4").read_bytes() == old_video
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["settings"]["crfs"] == [25.0, 40.0]
    for name in ("pan", "photo"):
        assert set(manifest["clips"][name]["variants"]) == {"crf25", "crf40"}
        clip = load_clip(tmp_path / "ds", name, "crf40")
        assert clip.info["variants"]["crf40"]["encoder_crf"] == 40
        assert not list((tmp_path / "ds" / "clips" / name).glob(".*"))
    prepare_dataset([path, stills], tmp_path / "fresh", more, stills=True)
    for name in ("pan", "photo"):
        a, b = load_clip(tmp_path / "ds", name, "crf40"), load_clip(tmp_path / "fresh", name, "crf40")
        assert np.array_equal(a.gt, b.gt) and a.decoded.shape == b.decoded.shape
    assert prepare_dataset([path, stills], tmp_path / "ds", more, stills=True).skipped == ["pan", "photo"]
    with pytest.raises(DatasetError, match="may only be added"):
        prepare_dataset([path], tmp_path / "ds", PrepareSettings(crfs=(40.0,), **base))
    # a photo whose camera motion is seeded differently (another place among the sources)
    monkeypatch.setattr(prep, "_encode_variant", real)
    result = prepare_dataset([stills], tmp_path / "ds", PrepareSettings(crfs=(25.0, 40.0, 45.0), **base), stills=True)
    assert result.extended == [] and "differs" in result.failed["photo"]
    # the folder still says what every clip holds: not CRF 45 (pan was not given, photo failed)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["settings"]["crfs"] == [25.0, 40.0]
    assert prepare_dataset([path, stills], tmp_path / "ds", more, stills=True).skipped == ["pan", "photo"]
    # given in the first order, both gain CRF 45, and then the folder lists it
    done = prepare_dataset([path, stills], tmp_path / "ds", PrepareSettings(crfs=(25.0, 40.0, 45.0), **base),
                           stills=True)
    assert sorted(done.extended) == ["pan", "photo"] and not done.failed
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["settings"]["crfs"] == [25.0, 40.0, 45.0]


def test_interrupted_clip_leaves_no_partial_folder(tmp_path: Path, lossless: tuple[Path, np.ndarray],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = lossless
    import codecave.data.prepare as prep

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "_encode_variant", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset([path], tmp_path / "ds", SMALL)
    assert list((tmp_path / "ds" / "clips").iterdir()) == []


def test_stills_become_clips_with_flow_and_sr_downscale(tmp_path: Path) -> None:
    from PIL import Image

    stills = tmp_path / "stills"
    stills.mkdir()
    Image.fromarray(texture(300, 400, seed=5)).save(stills / "photo.png")
    s = PrepareSettings(crfs=(30.0,), still_frames=4, still_size=(128, 192), scale=4, preset="veryfast", domain="rgb")
    prepare_dataset([stills], tmp_path / "ds", s, stills=True)
    clip = load_clip(tmp_path / "ds", "photo", "crf30")
    assert clip.gt.shape == (4, 128, 192, 3) and clip.decoded.shape == (4, 32, 48, 3)
    assert clip.flow is not None and clip.flow["flow_past"].shape == (4, 2, 128, 192)


def test_png_folder_y4m_and_yuv_sources(tmp_path: Path) -> None:
    from PIL import Image

    frames = pan_frames(3, 32, 48)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    (src,) = discover_sources([folder])
    assert src.kind == "frames"
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(src), frames))
    raw = tmp_path / "clip.yuv"
    raw.write_bytes(np.full((3, 32 * 48 * 3 // 2), 128, np.uint8).tobytes())
    (yuv,) = discover_sources([raw])
    with pytest.raises(DatasetError, match="yuv-size"):
        list(read_frames(yuv))
    got = list(read_frames(yuv, yuv_size=(48, 32)))
    assert len(got) == 3 and got[0].shape == (32, 48, 3)
    assert abs(int(got[0].mean()) - 128) <= 2


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such"):
        prepare_dataset([tmp_path / "missing"], tmp_path / "ds", SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no video"):
        prepare_dataset([tmp_path / "empty"], tmp_path / "ds", SMALL)


def test_yuv_dataset_ground_truth_is_the_encoders_input(tmp_path: Path, lossless: tuple[Path, np.ndarray]) -> None:
    """RGB source: ground truth is the stated BT.601 conversion, and x264 lossless
    (CRF 0) decodes back to exactly those planes, so they are what the encoder took."""
    path, frames = lossless
    prepare_dataset([path], tmp_path / "ds", PrepareSettings(crfs=(0.0, 35.0), max_frames=6, preset="veryfast"))
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["domain"] == "yuv420" and manifest["rgb_to_yuv420"]["matrix"] == "bt601"
    lossless_clip = load_clip(tmp_path / "ds", "pan", "crf0")
    assert lossless_clip.domain == "yuv420" and lossless_clip.gt.shape == (6, 24, 16, 24)
    expected = np.stack([pack_planes(rgb_to_planes(f)) for f in frames])
    assert np.array_equal(lossless_clip.gt, expected)
    assert np.array_equal(lossless_clip.decoded, lossless_clip.gt)
    compressed = load_clip(tmp_path / "ds", "pan", "crf35")
    assert compressed.decoded.shape == expected.shape and not np.array_equal(compressed.decoded, expected)


def test_yuv420_source_keeps_its_own_planes(tmp_path: Path) -> None:
    """A 4:2:0 source (no RGB anywhere) gives its decoder's planes as ground truth, bit for bit."""
    frames = pan_frames(5, 64, 96)
    src = tmp_path / "src" / "yuv.mkv"
    src.parent.mkdir()
    encode_frames(frames, src, EncodeSettings(codec="ffv1", crf=None, preset=None, pix_fmt="yuv420p"))
    with open_video(src, priors=False) as video:
        planes = [f.planes for f in video]
    prepare_dataset([src], tmp_path / "ds", PrepareSettings(crfs=(30.0,), max_frames=5, preset="veryfast"))
    clip = load_clip(tmp_path / "ds", "yuv", "crf30")
    assert np.array_equal(clip.gt, np.stack([pack_planes(p) for p in planes]))


def test_validation_split_is_left_out_of_training_sets(tmp_path: Path, lossless: tuple[Path, np.ndarray]) -> None:
    path, _ = lossless
    other = tmp_path / "src" / "other.mkv"
    encode_frames(pan_frames(4, 64, 96, seed=3), other, EncodeSettings(codec="ffv1", pix_fmt="bgr0"))
    split = tmp_path / "split.yaml"
    split.write_text(f"sequences:\n  - {path}\nstills:\n  - somewhere/kodim23.png\n")
    assert held_out_names(split) == ["pan", "kodim23"]
    result = prepare_dataset([path.parent], tmp_path / "ds", SMALL, exclude=held_out_names(split))
    assert result.prepared == ["other"]
    with pytest.raises(DatasetError, match="no sources left"):
        prepare_dataset([path], tmp_path / "ds2", SMALL, exclude=["pan"])
    with pytest.raises(DatasetError, match="no such validation split"):
        held_out_names(tmp_path / "missing.yaml")


def test_the_repositorys_split_names_the_validation_clip() -> None:
    split = Path(__file__).resolve().parents[2] / "configs" / "validation_split.yaml"
    names = held_out_names(split)
    assert "temple" in names and len(names) == len(set(names)) >= 4


def test_low_delay_p_cascade_is_hms_and_what_x265_coded() -> None:
    from codecave.codec.encode import low_delay_p_qps

    assert low_delay_p_qps(37, 9) == (37, 40, 39, 40, 38, 40, 39, 40, 38)
    assert low_delay_p_qps(22, 5) == (22, 25, 24, 25, 23)


def test_x265_low_delay_p_mode_yields_i_then_p_at_the_asked_qps(tmp_path: Path,
                                                                 lossless: tuple[Path, np.ndarray]) -> None:
    path, _ = lossless
    settings = PrepareSettings(crfs=(35.0,), ldp_qps=(27, 37), max_frames=6, preset="veryfast")
    assert set(settings.variants()) == {"crf35", "ldp27", "ldp37"}
    result = prepare_dataset([path], tmp_path / "ds", settings)
    assert result.prepared == ["pan"], result.failed
    clip = load_clip(tmp_path / "ds", "pan", "ldp37")
    v = clip.info["variants"]["ldp37"]
    # the decoder: one intra picture then P pictures; x265's own log: HM's QPs, frame by frame
    assert v["frame_types"] == "IPPPPP" and v["file"].endswith(".mp4")
    assert v["encoder_frame_qps"] == [37.0, 40.0, 39.0, 40.0, 38.0, 40.0]
    assert v["encoder_qp"] == 37 and v["encoder_crf"] is None and v["x264_crf"] is None
    assert clip.info["variants"]["ldp27"]["encoder_frame_qps"][:2] == [27.0, 30.0]
    assert clip.info["variants"]["ldp27"]["bytes"] > v["bytes"]
    with open_video(tmp_path / "ds" / "clips" / "pan" / "ldp37" / v["file"]) as reader:
        assert reader.info.codec == "hevc" and reader.info.encoder.bframes == 0
        # the zones' stream reads back as constant QP at its base (what enhance conditions on)
        assert reader.info.encoder.qp == 37 and reader.info.encoder.crf is None
    from codecave.data.dataset import variant_crf

    assert variant_crf(clip.info, "ldp37") == 37 and variant_crf(clip.info, "crf35") == 35
    from codecave.data.prepare import dataset_variants, load_manifest

    assert dataset_variants(load_manifest(tmp_path / "ds")) == ["crf35", "ldp27", "ldp37"]


def test_per_frame_qps_are_refused_where_they_cannot_be_honoured(tmp_path: Path) -> None:
    from codecave.codec.encode import low_delay_p_qps
    from codecave.errors import EncoderError

    frames = pan_frames(4, 64, 96)
    with pytest.raises(EncoderError, match="need x265"):
        encode_frames(frames, tmp_path / "a.mp4", EncodeSettings(codec="x264", frame_qps=(30, 33, 32, 33)))
    with pytest.raises(EncoderError, match="lowest"):
        encode_frames(frames, tmp_path / "b.mp4", EncodeSettings(codec="x265", frame_qps=(35, 30, 31, 32)))
    with pytest.raises(EncoderError, match="has more"):
        encode_frames(frames, tmp_path / "c.mp4", EncodeSettings(codec="x265", frame_qps=low_delay_p_qps(30, 3)))
