"""``codecave demo``: the main job on a built-in default, with no files from the user.

A photo that an installed package ships (matplotlib's sample Grace Hopper portrait)
becomes a short clip by synthetic camera motion, converted once to YUV 4:2:0 (the
ground truth); the clip is compressed with x264 at a strong CRF, enhanced with the
default model through :func:`enhance_video` (the same path as ``codecave enhance``),
and both are scored against the original on the Y plane of the YUV files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codecave.codec.convert import planes_to_rgb, rgb_to_planes
from codecave.codec.encode import EncodeSettings, encode_frames
from codecave.codec.priors import YUVPlanes
from codecave.codec.reader import open_video
from codecave.data.synth import load_still, synthesize_clip
from codecave.enhance import EnhanceOptions, Enhancer, enhance_video
from codecave.errors import DatasetError
from codecave.metrics.figures import comparison_figure
from codecave.metrics.quality import psnr_plane, ssim_plane

log = logging.getLogger(__name__)

#: Lossless encoding for the original and the enhanced video, in the source's 4:2:0 planes.
LOSSLESS = EncodeSettings(codec="ffv1", crf=None, preset=None, pix_fmt="source")


def sample_photo() -> Path:
    """The photo the demo animates: matplotlib's bundled ``grace_hopper.jpg``."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise DatasetError(f"{path}: matplotlib's sample photo is missing; pass a photo with --photo")
    return path


@dataclass
class DemoResult:
    """Scores and files of a demo run.

    Attributes:
        scores: ``{"compressed": {...}, "enhanced": {...}}`` with mean ``psnr`` and ``ssim`` on
            the Y plane of the YUV 4:2:0 files.
        files: what was written, by role.
        crf: x264 CRF of the compressed clip.
        frames: clip length.
    """

    scores: dict[str, dict[str, float]]
    files: dict[str, Path]
    crf: float
    frames: int

    def table(self) -> str:
        """A Markdown table of before / after."""
        c, e = self.scores["compressed"], self.scores["enhanced"]
        return "\n".join([
            f"| {self.frames} frames, x264 CRF {self.crf:g} | PSNR-Y (dB) | SSIM-Y |",
            "|---|---|---|",
            f"| compressed (input) | {c['psnr']:.3f} | {c['ssim']:.4f} |",
            f"| enhanced (codecave) | {e['psnr']:.3f} | {e['ssim']:.4f} |",
            f"| gain | {e['psnr'] - c['psnr']:+.3f} | {e['ssim'] - c['ssim']:+.4f} |",
        ])


def _decode(path: Path) -> list[YUVPlanes]:
    with open_video(path, priors=False) as video:
        return [f.planes for f in video]


def _scores(frames: list[YUVPlanes], reference: torch.Tensor) -> dict[str, float]:
    """Mean PSNR and SSIM of the Y planes of ``frames`` against ``reference (T, H, W)``."""
    y = torch.from_numpy(np.stack([f.y for f in frames])).double()
    return {"psnr": float(psnr_plane(y, reference).mean()), "ssim": float(ssim_plane(y, reference).mean())}


def run_demo(out: str | os.PathLike[str] = "codecave-demo", *, crf: float = 35.0, frames: int = 16,
             size: tuple[int, int] = (256, 320), photo: str | os.PathLike[str] | None = None,
             model: Enhancer | str | None = None, seed: int = 0, progress: bool = False) -> DemoResult:
    """Build a clip from a photo, compress it, enhance it and score both.

    Args:
        out: folder for ``original.mkv`` (lossless), ``compressed.mp4``, ``enhanced.mkv``
            (lossless) and ``side_by_side.png`` (the middle frame: original, input and
            output; their Y error maps on one scale; the crop of largest gain,
            :func:`codecave.metrics.figures.comparison_figure`).
        crf: x264 CRF of the compressed clip.
        frames: clip length.
        size: ``(H, W)`` of the clip.
        photo: photo to animate (default :func:`sample_photo`).
        model: enhancer or registered model name (default: the shipped PnP-VCVE).
        seed: camera-motion seed.
        progress: progress bar while enhancing.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clip = synthesize_clip(load_still(photo or sample_photo()), frames, size, seed=seed)
    files = {
        "original": out / "original.mkv",
        "compressed": out / "compressed.mp4",
        "enhanced": out / "enhanced.mkv",
        "side_by_side": out / "side_by_side.png",
    }
    original = [rgb_to_planes(f) for f in clip.frames]
    encode_frames(original, files["original"], LOSSLESS.with_(pix_fmt="yuv420p"))
    # one encoder thread, so the compressed clip does not follow the machine's core count
    encode_frames(original, files["compressed"], EncodeSettings(crf=crf, threads=1))
    enhancer = model if isinstance(model, Enhancer) else Enhancer(model, EnhanceOptions())
    enhance_video(files["compressed"], files["enhanced"], model=enhancer, encode=LOSSLESS, overwrite=True,
                  progress=progress)
    reference = torch.from_numpy(np.stack([p.y for p in original])).double()
    compressed, enhanced = _decode(files["compressed"]), _decode(files["enhanced"])
    scores = {"compressed": _scores(compressed, reference), "enhanced": _scores(enhanced, reference)}
    mid = frames // 2
    comparison_figure(files["side_by_side"], reference_y=original[mid].y, compressed_y=compressed[mid].y,
                      enhanced_y=enhanced[mid].y, reference_rgb=planes_to_rgb(original[mid]),
                      compressed_rgb=planes_to_rgb(compressed[mid]), enhanced_rgb=planes_to_rgb(enhanced[mid]),
                      title=f"codecave demo, frame {mid} of {frames}, x264 CRF {crf:g} (clip means: "
                            f"{scores['compressed']['psnr']:.2f} -> {scores['enhanced']['psnr']:.2f} dB)")
    return DemoResult(scores, files, crf, frames)
