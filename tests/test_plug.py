"""codecave.plug: a downstream callable fed enhanced (or decoded) frames."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.errors import ConfigError
from codecave.plug import plug
from tests.conftest import pan_frames
from tests.test_enhance import yuv_identity


def test_windows_of_frames_reach_the_callable_in_order(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    encode_frames(pan_frames(6, 96, 160), clip, EncodeSettings(codec="x264", crf=30, threads=1))
    pairs = list(plug(lambda a, b: (a.shape, b.shape, a.dtype), window=2, frames="y", enhance=False)(clip))
    assert pairs == [((96, 160), (96, 160), np.dtype(np.uint8))] * 5
    # The identity model in front gives back the decoded planes, so the two agree bit for bit.
    through = list(plug(lambda y: y, yuv_identity(), frames="y")(clip))
    plain = list(plug(lambda y: y, frames="y", enhance=False)(clip))
    assert len(through) == 6 and all((a == b).all() for a, b in zip(through, plain))
    rgb = next(plug(lambda f: f, frames="rgb", enhance=False)(clip))
    assert rgb.shape == (96, 160, 3) and rgb.dtype == np.uint8
    with pytest.raises(ConfigError, match="frames 'bgr'"):
        plug(print, frames="bgr")
    with pytest.raises(ConfigError, match="window 0"):
        plug(print, window=0)


def test_the_downstream_table_measured_the_shipped_default() -> None:
    """docs/downstream.md names the SHA-256 of the weights it measured: when the shipped
    default changes, this fails until the table is rerun (python benchmarks/downstream.py)."""
    from importlib import resources

    from codecave.models.registry import DEFAULT_MODEL, default_variant, weights_manifest

    repo = Path(__file__).resolve().parents[1]
    table = (repo / "docs" / "downstream.md").read_text()

    def shipped(model: str) -> str:
        entry = weights_manifest()[f"{model}_{default_variant(model)}"]
        return hashlib.sha256((resources.files("codecave") / "weights" / str(entry["file"])).read_bytes()).hexdigest()

    measured = re.search(r"default: (\w+) ([0-9a-f]{64})", table)
    assert measured, "docs/downstream.md names no default model and weights hash"
    assert measured.group(1) == DEFAULT_MODEL, "the default model changed: rerun benchmarks/downstream.py"
    assert measured.group(2) == shipped(DEFAULT_MODEL), "the shipped default changed: rerun benchmarks/downstream.py"
    switch = weights_manifest()[f"{DEFAULT_MODEL}_{default_variant(DEFAULT_MODEL)}"].get("high_crf")
    if switch:  # its high-CRF weights enhance the clips at or above the switch point
        high = hashlib.sha256((resources.files("codecave") / "weights"
                               / str(weights_manifest()[switch["entry"]]["file"])).read_bytes()).hexdigest()
        assert f"(high-CRF weights from CRF {switch['from_crf']:g}: {high})" in table, \
            "the default's high-CRF weights changed: rerun benchmarks/downstream.py"
    cavsr = re.search(r"cavsr ([0-9a-f]{64})", table)
    assert cavsr and cavsr.group(1) == shipped("cavsr"), "CAVSR's weights changed: rerun benchmarks/downstream.py"
    # The README quotes the table: its hash prefix must be the same.
    assert f"`{shipped(DEFAULT_MODEL)[:8]}...`" in (repo / "README.md").read_text()
