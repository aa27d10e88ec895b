"""Shared fixtures: small textured clips made here with real encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codecave.codec.encode import EncodeSettings, encode_frames


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture, ``(H, W, 3)`` uint8, rich enough for motion search."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 4 + 3, width // 4 + 3, generator=g)
    up = F.interpolate(noise, size=(height + 12, width + 12), mode="bicubic", align_corners=False)
    fine = torch.rand(1, 3, height + 12, width + 12, generator=g) * 0.15
    img = (up + fine)[0, :, 6 : 6 + height, 6 : 6 + width].permute(1, 2, 0).numpy()
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).round().astype(np.uint8)


def pan_frames(n: int, height: int, width: int, step: tuple[int, int] = (2, 1), seed: int = 0) -> list[np.ndarray]:
    """Frames of a camera panning over a texture: frame t shows the texture at offset t*step.

    frame_t(x, y) = tex(x + t*sx, y + t*sy), so pixel (x, y) of frame t is found at
    (x + sx, y + sy) in frame t-1: the design contract's ``mv_past`` is ``+step``.
    """
    sx, sy = step
    big = texture(height + abs(sy) * n + 8, width + abs(sx) * n + 8, seed)
    ox = 0 if sx >= 0 else abs(sx) * n
    oy = 0 if sy >= 0 else abs(sy) * n
    return [np.ascontiguousarray(big[oy + t * sy : oy + t * sy + height, ox + t * sx : ox + t * sx + width])
            for t in range(n)]


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def pan_clip(clip_dir: Path) -> Path:
    """x264 CRF 23, 3 B-frames with pyramid, keyint 16, 24 frames of 160x96 panning (+2, +1).

    One encoder thread, so the GOP and the vectors do not follow the machine's core count.
    """
    path = clip_dir / "pan.mp4"
    encode_frames(pan_frames(24, 96, 160), path,
                  EncodeSettings(codec="x264", crf=23, bframes=3, keyint=16, preset="medium", threads=1))
    return path


def _tiny(tmp_path_factory: pytest.TempPathFactory, domain: str) -> Path:
    from PIL import Image

    from codecave.data.prepare import PrepareSettings, prepare_dataset

    base = tmp_path_factory.mktemp(f"tiny_{domain}")
    for k in range(2):
        folder = base / "src" / f"pan{k}"
        folder.mkdir(parents=True)
        for i, f in enumerate(pan_frames(8, 64, 96, seed=k)):
            Image.fromarray(f).save(folder / f"{i:03d}.png")
    root = base / "ds"
    prepare_dataset([base / "src" / "pan0", base / "src" / "pan1"], root,
                    PrepareSettings(crfs=(0.0, 35.0), max_frames=8, preset="veryfast", bframes=2, domain=domain))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB dataset of two 8-frame 64x96 pans (+2, +1) at x264 CRF 0 and 35 (for RGB models)."""
    return _tiny(tmp_path_factory, "rgb")


@pytest.fixture(scope="session")
def tiny_yuv_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same pans prepared as YUV 4:2:0 (the default domain), for YUV models."""
    return _tiny(tmp_path_factory, "yuv420")


@pytest.fixture(scope="session")
def tiny_sr_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4x super-resolution set: two 8-frame 128x192 pans, blurred and decimated to 32x48,
    at x264 CRF 0, 15 and 35 (two B-frames)."""
    from PIL import Image

    from codecave.data.prepare import PrepareSettings, prepare_dataset

    base = tmp_path_factory.mktemp("tiny_sr")
    for k in range(2):
        folder = base / "src" / f"pan{k}"
        folder.mkdir(parents=True)
        for i, f in enumerate(pan_frames(8, 128, 192, step=(8, 4), seed=k)):
            Image.fromarray(f).save(folder / f"{i:03d}.png")
    root = base / "ds"
    prepare_dataset([base / "src" / "pan0", base / "src" / "pan1"], root,
                    PrepareSettings(crfs=(0.0, 15.0, 35.0), max_frames=8, preset="veryfast", bframes=2, scale=4,
                                    domain="rgb"))
    return root
