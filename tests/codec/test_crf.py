"""The sequence CRF a model is conditioned on: from the SEI, else estimated from QPs."""

from __future__ import annotations

from pathlib import Path

from codecave.codec.priors import EncoderSettings, estimate_crf, sequence_crf
from codecave.codec.reader import open_video


def test_sei_crf_wins_and_qp_estimate_is_close(pan_clip: Path) -> None:
    with open_video(pan_clip) as video:
        encoder = video.info.encoder
        frames = list(video)
    qps = [f.priors.qp for f in frames]
    types = [int(f.priors.frame_type) for f in frames]
    assert sequence_crf(encoder, qps, types) == (23.0, "encoder crf")
    crf, source = sequence_crf(None, qps, types)
    assert source == "estimated from frame QP" and abs(crf - 23) < 4


def test_fallbacks() -> None:
    assert sequence_crf(EncoderSettings(encoder="x264", qp=30.0), [], []) == (30.0, "encoder qp")
    assert sequence_crf(None, [None, float("nan")], [0, 1]) == (23.0, "default (no QP in the file)")
    assert estimate_crf([10.0], [0]) is not None and estimate_crf([10.0], [0]) < 10
