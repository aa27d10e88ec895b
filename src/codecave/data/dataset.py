"""Training windows over a prepared dataset (see :mod:`codecave.data.prepare`).

Each sample is a random window of ``T`` frames of one clip at one rate point,
cropped on the 16x16 macroblock grid (so it is on the 4x4 prior grid too) and
flipped/rotated with its priors. RGB datasets give pictures with dense priors; YUV
4:2:0 datasets give packed planes with priors on the 4x4 grid, sliced straight from
the memory-mapped arrays (no decoding and no painting per sample). Compressed vs
"uncompressed" inputs are drawn as in PnP-VCVE's reference code: with probability
``lossless_prob`` the input is x264 at CRF 0 (lossless, so its priors exist),
otherwise one of the compressed rate points, uniformly.

Sampling is a pure function of ``(seed, index)``, so a resumed run draws the same
samples as an uninterrupted one whatever the number of loader workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from codecave.codec.priors import GRID, MB
from codecave.codec.rasterize import crop_compact, dense_priors, grid_priors
from codecave.data.augment import dihedral
from codecave.data.prepare import (
    PreparedClip,
    dataset_domain,
    dataset_scale,
    dataset_variants,
    load_clip,
    load_manifest,
)
from codecave.errors import DatasetError
from codecave.grid import peak


@dataclass(frozen=True)
class WindowSpec:
    """How training windows are drawn.

    Attributes:
        frames: window length ``T``.
        crop: square crop side in pixels (a multiple of 16).
        compressed: compressed rate points to draw from, uniformly.
        lossless: the lossless rate point (x264 CRF 0), or "" for none.
        lossless_prob: probability of drawing the lossless input.
        qp_dropout: probability of hiding frame QPs (slice-type mode).
        augment: random flips and rot90.
    """

    frames: int = 3
    crop: int = 64
    compressed: tuple[str, ...] = ("crf15", "crf25", "crf35")
    lossless: str = "crf0"
    lossless_prob: float = 0.2
    qp_dropout: float = 0.25
    augment: bool = True

    def __post_init__(self) -> None:
        if self.crop % MB:
            raise DatasetError(f"crop {self.crop} must be a multiple of {MB}")
        if self.frames < 1:
            raise DatasetError(f"frames {self.frames} must be at least 1")


def check_scale(root: str | os.PathLike[str], manifest: dict[str, object], scale: int) -> None:
    """Refuse to mix super-resolution and enhancement data: the dataset must have been
    prepared for ``scale`` (``codecave prepare --scale``).

    Raises:
        DatasetError: naming both scales and what to do.
    """
    have = dataset_scale(manifest)
    if have != scale:
        def kind(k: int) -> str:
            return f"{k}x super-resolution" if k > 1 else "enhancement (scale 1)"

        raise DatasetError(f"{root} is a {kind(have)} set (prepared with --scale {have}) but the model does "
                           f"{kind(scale)}; use a set prepared with --scale {scale}")


def variant_crf(info: dict[str, object], variant: str) -> float:
    """The sequence CRF of a prepared variant, on x264's scale (x265 and SVT-AV1 CRFs
    mapped by :func:`~codecave.codec.priors.x264_equivalent_crf`), else its fixed qp."""
    v = info["variants"][variant]
    for key in ("x264_crf", "encoder_crf", "encoder_qp"):
        if v.get(key) is not None:
            return float(v[key])
    raise DatasetError(f"{info['name']}/{variant}: no crf or qp recorded")


def crop_sample(clip: PreparedClip, start: int, frames: int, y: int, x: int, size: int) -> dict[str, torch.Tensor]:
    """Frames, ground truth and dense priors of one window and crop.

    Args:
        clip: a prepared clip variant.
        start, frames: window in time.
        y, x: top-left corner, multiples of 16.
        size: crop side, a multiple of 16.

    Returns:
        ``crf`` scalar, and for an RGB dataset ``frames`` / ``gt`` ``(T, 3, S, S)`` float
        in [0, 1] with the dense priors of :func:`~codecave.codec.rasterize.dense_priors`;
        for a ``yuv420`` dataset ``frames`` / ``gt`` packed ``(T, 24, S/4, S/4)`` in [0, 1]
        with the grid priors of :func:`~codecave.codec.rasterize.grid_priors`. In a
        super-resolution set (RGB, ``scale`` > 1) ``y``, ``x`` and ``size`` are on the
        low-resolution input and ``gt`` is the matching ``(T, 3, scale S, scale S)`` crop.
    """
    t = slice(start, start + frames)
    window = {k: v[t] for k, v in clip.priors.items() if k in ("mv", "mv_valid", "partition", "qp_map",
                                                                  "frame_type", "qp")}
    stacked = crop_compact(window, y, x, size, size)
    if clip.domain == "yuv420":
        sample = grid_priors(stacked)
        cells = (slice(y // GRID, (y + size) // GRID), slice(x // GRID, (x + size) // GRID))

        def packed(a: np.ndarray) -> torch.Tensor:
            crop = np.ascontiguousarray(a[t, :, cells[0], cells[1]])
            return torch.from_numpy(crop.astype(np.float32)) / peak(clip.bit_depth)

        sample["frames"] = packed(clip.decoded)
        sample["gt"] = packed(clip.gt)
        sample["crf"] = torch.tensor(variant_crf(clip.info, clip.variant))
        return sample
    sample = dense_priors(stacked, size, size)

    def pixels(a: np.ndarray) -> torch.Tensor:
        crop = np.ascontiguousarray(a[t, y : y + size, x : x + size])
        return torch.from_numpy(crop).permute(0, 3, 1, 2).float() / 255

    s = clip.scale
    sample["frames"] = pixels(clip.decoded)
    sample["gt"] = torch.from_numpy(np.ascontiguousarray(
        clip.gt[t, s * y : s * (y + size), s * x : s * (x + size)])).permute(0, 3, 1, 2).float() / 255
    sample["crf"] = torch.tensor(variant_crf(clip.info, clip.variant))
    return sample


class PreparedWindows(Dataset):
    """Random windows over every clip of a prepared dataset.

    Args:
        root: prepared dataset folder.
        spec: window settings.
        length: number of samples (an epoch).
        seed: sampling seed.
        clips: clip names to use (default: all).
        scale: what the model makes of its input: 1 for enhancement, 4 for 4x
            super-resolution; the dataset must have been prepared for it (``--scale``).

    Raises:
        DatasetError: no clips, missing rate points, or a dataset prepared for another scale.
    """

    def __init__(self, root: str | os.PathLike[str], spec: WindowSpec, length: int, seed: int = 0,
                 clips: list[str] | None = None, scale: int = 1) -> None:
        manifest = load_manifest(root)
        check_scale(root, manifest, scale)
        self.scale = scale
        self.root = root
        self.spec = spec
        self.length = length
        self.seed = seed
        self.clips = sorted(clips if clips is not None else manifest["clips"])
        if not self.clips:
            raise DatasetError(f"{root}: no clips")
        variants = set(dataset_variants(manifest))
        wanted = set(spec.compressed) | ({spec.lossless} if spec.lossless else set())
        if not wanted <= variants:
            raise DatasetError(f"{root}: has rate points {sorted(variants)}, needs {sorted(wanted)}")
        self._cache: dict[tuple[str, str], PreparedClip] = {}
        #: ``"yuv420"`` or ``"rgb"``: what the samples hold (the dataset's domain).
        self.domain = dataset_domain(manifest)

    def __len__(self) -> int:
        return self.length

    def _clip(self, name: str, variant: str) -> PreparedClip:
        key = (name, variant)
        if key not in self._cache:
            clip = load_clip(self.root, name, variant)
            if clip.scale != self.scale:
                raise DatasetError(f"{self.root}/{name}: ground truth {clip.gt.shape} is {clip.scale}x the decoded "
                                   f"{clip.decoded.shape}; these windows are for scale {self.scale}")
            clip.flow = None  # not used for training; do not keep it in memory
            self._cache[key] = clip
        return self._cache[key]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        spec = self.spec
        name = self.clips[rng.integers(len(self.clips))]
        if spec.lossless and rng.random() < spec.lossless_prob:
            variant = spec.lossless
        else:
            variant = spec.compressed[rng.integers(len(spec.compressed))]
        clip = self._clip(name, variant)
        n = clip.decoded.shape[0]
        h, w = ((clip.decoded.shape[2] * GRID, clip.decoded.shape[3] * GRID) if clip.domain == "yuv420"
                else clip.decoded.shape[1:3])
        if n < spec.frames or h < spec.crop or w < spec.crop:
            raise DatasetError(f"{name}: {n} frames of {w}x{h} is smaller than a "
                               f"{spec.frames}-frame {spec.crop}px window")
        start = int(rng.integers(n - spec.frames + 1))
        y = MB * int(rng.integers((h - spec.crop) // MB + 1))
        x = MB * int(rng.integers((w - spec.crop) // MB + 1))
        sample = crop_sample(clip, start, spec.frames, y, x, spec.crop)
        if rng.random() < spec.qp_dropout:
            sample["qp"] = torch.full_like(sample["qp"], float("nan"))
        if spec.augment:
            sample = dihedral(sample, int(rng.integers(8)), packed=clip.domain == "yuv420")
        return sample
