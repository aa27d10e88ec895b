"""Comparison pictures: the crop they zoom on is where the gain is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codecave.metrics.figures import comparison_figure, largest_gain_crop


def test_largest_gain_crop_finds_the_repaired_block(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (96, 128)).astype(np.uint8)
    compressed = np.clip(reference + rng.normal(0, 6, reference.shape), 0, 255).astype(np.uint8)
    enhanced = compressed.copy()
    enhanced[48:72, 80:104] = reference[48:72, 80:104]  # repaired here only
    y, x = largest_gain_crop(reference, compressed, enhanced, 24)  # windows every 12 pixels
    assert abs(y - 48) < 12 and abs(x - 80) < 12
    rgb = np.repeat(reference[..., None], 3, axis=2)
    path = comparison_figure(tmp_path / "c.png", reference_y=reference, compressed_y=compressed, enhanced_y=enhanced,
                             reference_rgb=rgb, compressed_rgb=rgb, enhanced_rgb=rgb, title="t")
    assert path.stat().st_size > 10_000
