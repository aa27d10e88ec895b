"""Do no harm: frames at or below a QP threshold are passed through, and the threshold
is chosen from validation scores."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from codecave.data.prepare import load_clip
from codecave.enhance import EnhanceOptions, Enhancer
from codecave.evaluate import ClipScore, EvalReport, choose_pass_through
from codecave.models import create_model


def busy_model() -> torch.nn.Module:
    """An untrained fast model that does change its input."""
    torch.manual_seed(0)
    model = create_model("pnp_vcve", weights=None, variant="fast")
    torch.nn.init.normal_(model.bae_out.weight, std=0.05)
    return model


def test_frames_at_or_below_the_threshold_are_the_input_bit_for_bit(tiny_yuv_dataset: Path) -> None:
    clip = load_clip(tiny_yuv_dataset, "pan0", "crf35")
    decoded, priors = np.asarray(clip.decoded), clip.priors
    qp = priors["qp"]
    threshold = float(np.median(qp))
    passed = qp <= threshold
    assert passed.any() and not passed.all()
    model = busy_model()

    def run(**options: object) -> np.ndarray:
        return Enhancer(model, EnhanceOptions(device="cpu", chunk=3, **options)).enhance_clip(decoded, priors, 35.0)

    gated, free = run(pass_through_qp=threshold), run(pass_through_qp=-1)
    assert not np.array_equal(free[passed], decoded[passed])  # the model does change them...
    assert np.array_equal(gated[passed], decoded[passed])  # ...but they are passed through
    assert np.array_equal(gated[~passed], free[~passed])  # the others are enhanced as without the gate
    # slice-type mode hides frame QPs: the sequence CRF decides
    hidden = Enhancer(model, EnhanceOptions(device="cpu", slice_type=True, pass_through_qp=35.0))
    assert hidden.passed_through(qp, 35.0).all() and not hidden.passed_through(qp, 36.0).any()


def test_the_models_own_threshold_applies_and_skips_the_model(tiny_yuv_dataset: Path) -> None:
    clip = load_clip(tiny_yuv_dataset, "pan1", "crf35")
    model = busy_model()
    model.pass_through_qp = 99.0
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    out = Enhancer(model, EnhanceOptions(device="cpu")).enhance_clip(np.asarray(clip.decoded), clip.priors, 35.0)
    assert np.array_equal(out, clip.decoded) and not calls
    off = Enhancer(model, EnhanceOptions(device="cpu", pass_through_qp=-1.0))
    assert off.pass_through_qp is None


def score(crf: float, qp: list[float], delta: list[float], types: str, clip: str = "c") -> ClipScore:
    n = len(qp)
    return ClipScore(clip=clip, variant=f"crf{crf:g}", crf=crf, frame_types=types, psnr_in=[30.0] * n,
                     psnr_out=[30.0 + d for d in delta], ssim_in=[0.9] * n, ssim_out=[0.9] * n, seconds=0.0,
                     frame_qp=qp)


def test_threshold_keeps_gains_and_removes_protected_losses() -> None:
    report = EvalReport(model={}, mode="frame QP", scores=[
        score(15, [13, 16, 18], [-0.02, -0.01, 0.005], "IPB"),
        score(18, [16, 19, 21], [-0.01, 0.01, 0.02], "IPB"),
        score(35, [33, 36, 38], [0.1, 0.2, 0.3], "IPB"),
    ])
    choice = choose_pass_through(report)
    # passing QP <= 16 through removes every loss; the B frame of CRF 15 (QP 18) keeps its gain
    assert choice["threshold"] == 16
    assert choice["gain_after"]["crf15"] == pytest.approx(0.005 / 3)
    assert choice["gain_after"]["crf18"] == pytest.approx(0.01)
    assert all(v >= 0 for v in choice["protected"].values())
    assert choice["by_qp"]["13"] == {"frames": 1, "delta_psnr": pytest.approx(-0.02)}


def test_each_protected_rate_point_is_kept_on_its_own() -> None:
    # pooled, CRF 15's gain would hide CRF 12's loss; each protected rate point counts alone
    report = EvalReport(model={}, mode="frame QP", scores=[
        score(12, [15, 18, 20], [-0.03, -0.02, -0.01], "IPB"),
        score(15, [18, 21, 23], [0.05, 0.05, 0.05], "IPB"),
        score(35, [33, 36, 38], [0.1, 0.2, 0.3], "IPB"),
    ])
    choice = choose_pass_through(report)
    assert choice["threshold"] == 20
    assert set(choice["protected"]) == {"crf12 I", "crf12 P", "crf12 B", "crf15 I", "crf15 P", "crf15 B"}
    assert choice["protected"]["crf12 B"] == 0 and choice["protected"]["crf15 P"] == pytest.approx(0.05)


def test_low_qp_frames_of_other_rate_points_are_protected_by_type() -> None:
    # CRF 25's I-frame sits at QP 20 and loses: the "QP<=22 I" group forces the threshold
    # up to 20, though it costs CRF 25's other low-QP frames their gain; QP 23 is not protected.
    report = EvalReport(model={}, mode="frame QP", scores=[
        score(25, [20, 21, 23], [-0.05, 0.02, -0.01], "IPB"),
        score(35, [30, 33, 36], [0.1, 0.2, 0.3], "IPB"),
    ])
    choice = choose_pass_through(report)
    assert choice["threshold"] == 20
    assert set(choice["protected"]) == {"QP<=22 I", "QP<=22 P"}
    assert choice["protected"]["QP<=22 I"] == 0 and choice["protected"]["QP<=22 P"] == pytest.approx(0.02)
    assert choice["gain_after"]["crf25"] == pytest.approx((0.02 - 0.01) / 3)


def test_per_clip_keeps_every_clip_not_worse() -> None:
    # clip b loses at CRF 12 where clip a gains more: their mean is not harmed, clip b is
    report = EvalReport(model={}, mode="frame QP", scores=[
        score(12, [14, 18], [0.0, 0.05], "IB", clip="a"),
        score(12, [14, 18], [0.0, -0.02], "IB", clip="b"),
        score(35, [33, 36], [0.1, 0.2], "IB", clip="a"),
    ])
    assert choose_pass_through(report)["threshold"] == -1
    choice = choose_pass_through(report, per_clip=True)
    assert choice["threshold"] == 18
    assert choice["protected"]["b crf12 B"] == 0 and "a crf12 I" in choice["protected"]


def test_no_threshold_when_nothing_is_harmed() -> None:
    report = EvalReport(model={}, mode="frame QP", scores=[score(15, [13, 16], [0.01, 0.02], "IP")])
    assert choose_pass_through(report)["threshold"] == -1


def test_the_shipped_default_passes_its_low_qp_frames_through_bit_for_bit(tmp_path: Path) -> None:
    """The default's threshold is the one its validation chose (CRF 10 to 38, where frames
    at or below it lost); on a CRF 12 clip those frames come out bit for bit, the others
    are enhanced."""
    from codecave.codec.encode import EncodeSettings, encode_frames
    from codecave.codec.reader import open_video
    from codecave.data.synth import load_still, synthesize_clip
    from codecave.demo import sample_photo
    from codecave.enhance import enhance_video
    from codecave.models.registry import DEFAULT_VARIANT, weights_manifest

    entry = weights_manifest()[f"pnp_vcve_{DEFAULT_VARIANT}"]
    validation = entry["validation"]["pass_through"]
    assert entry["pass_through_qp"] == pytest.approx(validation["threshold"], abs=1e-3)
    assert {"crf10", "crf12", "crf15"} <= set(validation["rate_points"])
    assert all(gain >= 0 for gain in validation["protected"].values())

    frames = list(synthesize_clip(load_still(sample_photo()), 8, (96, 160), seed=0).frames)
    src = tmp_path / "crf12.mp4"
    encode_frames(frames, src, EncodeSettings(crf=12, threads=1))
    enhancer = Enhancer(options=EnhanceOptions(device="cpu"))
    with open_video(src) as video:
        coded = list(video)
    low = np.array([f.priors.qp <= enhancer.pass_through_qp for f in coded])
    assert low.any() and not low.all()
    with open_video(src) as video:
        out = list(enhancer.stream(video, output="yuv420"))
    for f, o, keep in zip(coded, out, low):
        same = np.array_equal(f.planes.y, o.y) and np.array_equal(f.planes.u, o.u) and np.array_equal(f.planes.v, o.v)
        assert same == keep
    result = enhance_video(src, tmp_path / "out.mkv", model=enhancer,
                           encode=EncodeSettings(codec="ffv1", crf=None, preset=None, pix_fmt="source"))
    assert result.passed_through == low.sum() and result.pass_through_qp == enhancer.pass_through_qp


def test_per_stream_thresholds_count_every_frame_at_its_sequence_qp() -> None:
    # a luma model holds back whole streams: CRF 25's low-QP I-frame cannot be passed through alone
    report = EvalReport(model={}, mode="frame QP", scores=[
        score(22, [22, 25, 24], [-0.02, -0.01, 0.0], "IPP"),
        score(25, [20, 27, 28], [-0.05, 0.02, 0.06], "IPP"),
        score(37, [37, 40, 39], [0.1, 0.2, 0.3], "IPP"),
    ])
    choice = choose_pass_through(report, per_stream=True)
    assert choice["threshold"] == 22  # the QP 22 stream passes whole; CRF 25's stream is kept (net gain)
    assert choice["gain_after"]["crf22"] == 0 and choice["gain_after"]["crf25"] == pytest.approx(0.01)
    assert set(choice["by_qp"]) == {"22", "25", "37"}


def test_rate_switch_is_the_lowest_crf_from_which_the_high_weights_are_ahead_on_every_clip() -> None:
    from codecave.errors import DatasetError
    from codecave.evaluate import choose_rate_switch

    def scores(**gains: tuple[float, float]) -> dict[str, dict[str, float]]:
        return {k: {"a": a, "b": b} for k, (a, b) in gains.items()}

    low = scores(crf15=(0.01, 0.0), crf25=(0.18, 0.2), crf28=(0.17, 0.2), crf35=(0.12, 0.1), crf38=(0.1, 0.1))
    ahead = scores(crf15=(-1, -1), crf25=(0.1, 0.1), crf28=(0.3, 0.2), crf35=(0.2, 0.2), crf38=(0.2, 0.1))
    assert choose_rate_switch(low, ahead) == 28
    # ahead on the mean at 28 but behind on one clip: only 35 and up
    one_clip = scores(crf15=(-1, -1), crf25=(0.1, 0.1), crf28=(0.4, 0.19), crf35=(0.2, 0.2), crf38=(0.2, 0.1))
    assert choose_rate_switch(low, one_clip) == 35
    # ahead at 25 but behind at 28: not from 25
    assert choose_rate_switch(low, scores(crf25=(0.3, 0.3), crf28=(0.1, 0.1), crf35=(0.2, 0.2))) == 35
    assert choose_rate_switch(low, scores(crf38=(0.0, 0.2))) is None
    with pytest.raises(DatasetError):
        choose_rate_switch(low, {"ldp37": {"a": 0.1, "b": 0.1}})


def test_streams_at_or_above_the_switch_point_get_the_high_crf_weights(tiny_yuv_dataset: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing by sequence CRF, for clips and for streams: the high-CRF weights (here an
    untrained model, the identity) take whole streams at or above the switch point."""
    from codecave.codec.encode import EncodeSettings, encode_frames
    from codecave.codec.reader import open_video
    from codecave.grid import unpack_planes
    from codecave.models import registry

    identity = create_model("pnp_vcve", weights=None, variant="fast")
    monkeypatch.setattr(registry, "create_model_entry", lambda entry: identity)
    model = busy_model()
    model.high_crf = {"entry": "pnp_vcve_fast_high", "from_crf": 30.0}
    clip = load_clip(tiny_yuv_dataset, "pan0", "crf35")
    decoded = np.asarray(clip.decoded)
    enhancer = Enhancer(model, EnhanceOptions(device="cpu", pass_through_qp=-1))
    assert np.array_equal(enhancer.enhance_clip(decoded, clip.priors, 35.0), decoded)  # the high weights
    assert not np.array_equal(enhancer.enhance_clip(decoded, clip.priors, 29.0), decoded)  # the main ones
    off = Enhancer(model, EnhanceOptions(device="cpu", pass_through_qp=-1, high_crf=False))
    assert not np.array_equal(off.enhance_clip(decoded, clip.priors, 35.0), decoded)
    src = tmp_path / "switch.mp4"
    encode_frames([unpack_planes(c) for c in decoded], src, EncodeSettings(crf=35, threads=1))
    for crf, switched in ((35.0, True), (20.0, False)):
        report: dict[str, object] = {}
        with open_video(src) as video:
            coded = list(video)
        with open_video(src) as video:
            out = list(enhancer.stream(video, crf=crf, report=report, output="yuv420"))
        assert len(out) == len(coded)
        same = all(np.array_equal(f.planes.y, o.y) for f, o in zip(coded, out))
        assert same == switched and (report.get("weights") == "pnp_vcve_fast_high") == switched
    from codecave.enhance import enhance_video

    lossless = EncodeSettings(codec="ffv1", crf=None, preset=None, pix_fmt="source")
    result = enhance_video(src, tmp_path / "a.mkv", model=enhancer, encode=lossless)
    assert result.weights == "pnp_vcve_fast_high" and result.crf == 35 and result.crf_source == "encoder crf"
    assert enhance_video(src, tmp_path / "b.mkv", model=off, encode=lossless).weights is None


def test_the_shipped_default_high_crf_weights_and_their_switch_point_come_from_validation() -> None:
    import hashlib
    from importlib import resources

    from codecave.evaluate import choose_rate_switch
    from codecave.models.registry import DEFAULT_VARIANT, weights_manifest

    manifest = weights_manifest()
    low = manifest[f"pnp_vcve_{DEFAULT_VARIANT}"]
    switch = low["high_crf"]
    high = manifest[switch["entry"]]
    blob = (resources.files("codecave") / "weights" / high["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == high["sha256"]
    assert high["file"] != low["file"]
    assert not set(high["validation"]["clips"]) & set(high["training"]["data"]["clips"])
    assert high["validation"]["clips"] == low["validation"]["clips"]
    assert high["validation"]["frames"] == low["validation"]["frames"]
    table = switch["chosen_on"]  # per rate point, per clip: [main, high-CRF] ΔPSNR-Y
    assert switch["from_crf"] == choose_rate_switch({v: {c: d[0] for c, d in t.items()} for v, t in table.items()},
                                                    {v: {c: d[1] for c, d in t.items()} for v, t in table.items()})
    assert set(table["crf35"]) == set(low["validation"]["clips"])
    for v, t in table.items():  # the per-clip scores are those the two entries' means come from
        for k, entry in enumerate((low, high)):
            mean = np.mean([d[k] for d in t.values()])
            assert mean == pytest.approx(entry["validation"]["frame_qp"][v]["delta_psnr"], abs=0.02)
    from codecave.models.registry import create_model_entry

    model = create_model("pnp_vcve")
    assert model.high_crf["from_crf"] == switch["from_crf"]
    # the same network; the main weights have the shrinkage stage in front (stage 9), the high-CRF ones not
    high_config = create_model_entry(switch["entry"]).config
    assert dataclasses.replace(high_config, dct_shrink=model.config.dct_shrink) == model.config
    enhancer = Enhancer(model, EnhanceOptions(device="cpu"))
    assert enhancer.for_crf(switch["from_crf"] - 0.5) is enhancer
    high_enhancer = enhancer.for_crf(switch["from_crf"])
    assert high_enhancer.model.high_crf is None
    assert high_enhancer.pass_through_qp == enhancer.pass_through_qp  # never validated below it
