"""`codecave demo` builds, compresses, enhances and scores a clip from a bundled photo."""

from __future__ import annotations

from pathlib import Path

from codecave.demo import run_demo, sample_photo


def test_demo_runs_on_the_bundled_photo_and_gains(tmp_path: Path) -> None:
    assert sample_photo().is_file()
    result = run_demo(tmp_path / "demo", frames=6, size=(96, 128))
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {
        "original.mkv", "compressed.mp4", "enhanced.mkv", "side_by_side.png"}
    assert result.scores["enhanced"]["psnr"] > result.scores["compressed"]["psnr"]
    table = result.table()
    assert "compressed (input)" in table and "gain" in table
