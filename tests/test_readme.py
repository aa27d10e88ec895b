"""Every Python block of the README runs as written (issue 14, case 19), on a tiny clip."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from codecave.codec.encode import EncodeSettings, encode_frames
from tests.conftest import pan_frames

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = tmp_path / "input.mp4"
    encode_frames(pan_frames(8, 96, 160), clip, EncodeSettings(codec="x264", crf=30, bframes=2, keyint=8))
    shutil.copy(clip, tmp_path / "my_video.mp4")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})  # noqa: S102 - the README is ours
