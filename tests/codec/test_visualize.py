"""Tests of codecave.codec.visualize: PNG pictures of a frame's priors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codecave.codec.priors import MV_DTYPE, CodedFrame, FramePriors, FrameType, empty_mvs
from codecave.codec.visualize import (
    _blocks_with_class,
    draw_motion_vectors,
    draw_partition_map,
    draw_qp_map,
    save_frame_figures,
)
from codecave.errors import ConfigError

H, W = 64, 96


def _frame(*, qp_map: np.ndarray | None = None, mvs: np.ndarray | None = None) -> CodedFrame:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if mvs is None:
        mvs = np.array(
            [
                (-1, 16, 16, 0, 0, 3.25, -1.5),
                (1, 16, 16, 0, 0, -2.0, 0.75),  # same block, bi-predicted
                (-1, 16, 8, 16, 0, 0.0, 0.0),
                (-1, 16, 8, 16, 8, 5.0, 4.0),
                (1, 8, 16, 32, 16, -6.5, 2.0),
                (-1, 8, 8, 48, 32, 1.0, 1.0),
                (-1, 4, 4, 56, 40, -0.25, 0.25),
            ],
            dtype=MV_DTYPE,
        )
    priors = FramePriors(
        frame_type=FrameType.B,
        key_frame=False,
        qp=27.0,
        qp_map=qp_map,
        mvs=mvs,
        ref_past=1,
        ref_future=2,
    )
    return CodedFrame(index=7, pts=7, time=0.28, packet_size=123, rgb=rgb, priors=priors)


def _qp_map() -> np.ndarray:
    return (24 + np.arange(24, dtype=np.float32).reshape(4, 6) % 7).astype(np.float32)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


def _assert_frame_sized(size: tuple[int, int]) -> None:
    """The picture keeps the frame's aspect, enlarged for readability, plus margins."""
    width, height = size
    assert 400 <= width <= 700 and 300 <= height <= 500
    assert 1.1 < width / height < 2.0


def test_partition_blocks_and_intra_macroblocks() -> None:
    blocks, classes = _blocks_with_class(_frame())
    inter = classes[:6]
    assert len(blocks) == len(classes) == 6 + 20  # bi-predicted block once; 20 macroblocks untouched
    assert sorted(inter.tolist()) == [0, 1, 1, 1, 2, 2]
    assert (classes[6:] == 3).all() and (blocks[6:, 2:] == 16).all()
    assert {(x, y) for x, y in blocks[6:, :2].tolist()}.isdisjoint({(0, 0), (16, 0), (32, 16), (48, 32)})


def test_save_frame_figures_writes_three_pngs(tmp_path: Path) -> None:
    paths = save_frame_figures(_frame(qp_map=_qp_map()), tmp_path / "viz")
    assert [p.name for p in paths] == ["00007_mv.png", "00007_partition.png", "00007_qp.png"]
    for path in paths:
        assert path.is_file()
        _assert_frame_sized(_png_size(path))


def test_pictures_show_the_priors(tmp_path: Path) -> None:
    frame = _frame(qp_map=_qp_map())
    plain = np.asarray(Image.open(draw_motion_vectors(_frame(mvs=empty_mvs()), tmp_path / "a.png")))
    arrows = np.asarray(Image.open(draw_motion_vectors(frame, tmp_path / "b.png")))
    assert plain.shape == arrows.shape
    assert np.abs(plain.astype(int) - arrows.astype(int)).sum() > 0
    assert draw_partition_map(frame, tmp_path / "p.png") == tmp_path / "p.png"
    assert draw_qp_map(frame, str(tmp_path / "q.png")) == tmp_path / "q.png"


@pytest.mark.parametrize("qp_map", [None, np.full((4, 6), np.nan, np.float32)])
def test_qp_map_missing_still_draws(tmp_path: Path, qp_map: np.ndarray | None) -> None:
    frame = _frame(qp_map=qp_map)
    frame.priors.qp = None
    path = draw_qp_map(frame, tmp_path / "sub" / "qp.png")
    _assert_frame_sized(_png_size(path))


def test_intra_frame_and_constant_qp(tmp_path: Path) -> None:
    frame = _frame(qp_map=np.full((4, 6), 30, np.float32), mvs=empty_mvs())
    frame.priors.frame_type = FrameType.I
    for path in save_frame_figures(frame, tmp_path):
        _assert_frame_sized(_png_size(path))


def test_large_frame_is_drawn_at_its_own_size(tmp_path: Path) -> None:
    small = _frame(qp_map=None)
    frame = CodedFrame(index=7, pts=7, time=0.28, packet_size=123, rgb=np.zeros((360, 640, 3), np.uint8),
                       priors=small.priors)
    width, height = _png_size(draw_partition_map(frame, tmp_path / "big.png"))
    assert width == 640 and 360 < height < 460


def test_stride_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stride=0"):
        draw_motion_vectors(_frame(), tmp_path / "x.png", stride=0)
    assert draw_motion_vectors(_frame(), tmp_path / "x.png", stride=3).is_file()


def test_no_matplotlib_at_import_and_no_pyplot_when_drawing(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "import codecave.codec.visualize as v\n"
        "from codecave.codec.priors import CodedFrame, FramePriors, FrameType, empty_mvs\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "p = FramePriors(FrameType.I, True, 30.0, None, empty_mvs())\n"
        "v.draw_qp_map(CodedFrame(0, 0, 0.0, 1, p, rgb=np.zeros((32, 32, 3), np.uint8)), sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.png")], check=True)

