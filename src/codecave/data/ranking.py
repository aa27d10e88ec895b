"""Frame pairs for training and testing CAVSR's compression ranker (paper 3.2, eq. 1).

Two kinds of pair, as the paper builds them (our sampling, SPECS 4.6 c):

* **CRF pairs**: the same clip, frame and crop at two different CRFs, kept only when
  the frame has the same type in both encodes (x264's decisions change with the CRF);
  the higher CRF is the more compressed.
* **Frame-type pairs** (I/P/B): the same clip, CRF and crop, two frames at most
  ``reach`` apart whose types differ; the compression order is I < P < B (B-frames get
  the coarsest quantisation).

Each sample holds ``frames (2, 3, S, S)`` decoded RGB crops in [0, 1], their
``frame_type (2,)``, ``order``: +1 when the first frame is the more compressed, else -1,
and ``kind``: 0 for a CRF pair, 1 for a frame-type pair. Sampling is a pure function of
``(seed, index)``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from codecave.codec.priors import MB
from codecave.data.augment import dihedral
from codecave.data.dataset import variant_crf
from codecave.data.prepare import PreparedClip, dataset_domain, dataset_variants, load_clip, load_manifest
from codecave.errors import DatasetError

#: ``kind`` of a pair.
CRF_PAIR, TYPE_PAIR = 0, 1


class RankingPairs(Dataset):
    """Random ranking pairs over the decoded frames of an RGB prepared dataset.

    Args:
        root: a prepared RGB dataset (for CAVSR, the ``--scale 4`` training set: the
            decoded frames are the low-resolution input the encoder sees).
        crop: square crop side in pixels (a multiple of 16).
        length: samples per epoch.
        seed: sampling seed.
        variants: rate points to pair (default: every CRF of the dataset, CRF 0 included).
        type_share: share of frame-type pairs; the rest are CRF pairs.
        reach: how far apart (in frames) the two frames of a frame-type pair may be.
        augment: the same random flip / rot90 on both crops.
        clips: clip names to use (default: all).

    Raises:
        DatasetError: not an RGB dataset, fewer than two CRFs, or frames smaller than ``crop``.
    """

    def __init__(self, root: str | os.PathLike[str], crop: int, length: int, seed: int = 0,
                 variants: tuple[str, ...] | None = None, type_share: float = 0.5, reach: int = 3,
                 augment: bool = True, clips: list[str] | None = None) -> None:
        manifest = load_manifest(root)
        if dataset_domain(manifest) != "rgb":
            raise DatasetError(f"{root}: ranking pairs are RGB frames; prepare with --domain rgb or --scale 4")
        have = [v for v in dataset_variants(manifest) if v.startswith("crf")]
        self.variants = tuple(variants) if variants else tuple(have)
        missing = sorted(set(self.variants) - set(have))
        if missing or len(self.variants) < 2:
            raise DatasetError(f"{root}: ranking needs two or more CRFs; has {have}, asked {list(self.variants)}")
        if crop % MB:
            raise DatasetError(f"crop {crop} must be a multiple of {MB}")
        self.root, self.crop, self.length, self.seed = root, crop, length, seed
        self.type_share, self.reach, self.augment = type_share, reach, augment
        self.clips = sorted(clips if clips is not None else manifest["clips"])
        if not self.clips:
            raise DatasetError(f"{root}: no clips")
        self._cache: dict[tuple[str, str], PreparedClip] = {}

    def __len__(self) -> int:
        return self.length

    def _clip(self, name: str, variant: str) -> PreparedClip:
        if (name, variant) not in self._cache:
            clip = load_clip(self.root, name, variant)
            h, w = clip.decoded.shape[1:3]
            if h < self.crop or w < self.crop:
                raise DatasetError(f"{name}: decoded {w}x{h} is smaller than the {self.crop}px ranking crop")
            self._cache[name, variant] = clip
        return self._cache[name, variant]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        name = self.clips[rng.integers(len(self.clips))]
        kind = TYPE_PAIR if rng.random() < self.type_share else CRF_PAIR
        pair = self._type_pair(rng, name) if kind == TYPE_PAIR else None
        if pair is None:  # no two frame types near each other (or a CRF pair was drawn)
            kind, pair = CRF_PAIR, self._crf_pair(rng, name)
        (clip_i, frame_i, q_i), (clip_j, frame_j, q_j) = pair
        h, w = clip_i.decoded.shape[1:3]
        y = MB * int(rng.integers((h - self.crop) // MB + 1))
        x = MB * int(rng.integers((w - self.crop) // MB + 1))

        def crop(clip: PreparedClip, t: int) -> torch.Tensor:
            a = np.ascontiguousarray(clip.decoded[t, y : y + self.crop, x : x + self.crop])
            return torch.from_numpy(a).permute(2, 0, 1).float() / 255

        sample = {"frames": torch.stack([crop(clip_i, frame_i), crop(clip_j, frame_j)])}
        if self.augment:
            sample = dihedral(sample, int(rng.integers(8)))
        types = [int(clip_i.priors["frame_type"][frame_i]), int(clip_j.priors["frame_type"][frame_j])]
        sample["frame_type"] = torch.tensor(types, dtype=torch.int64)
        sample["order"] = torch.tensor(1.0 if q_i > q_j else -1.0)
        sample["kind"] = torch.tensor(kind)
        return sample

    def _crf_pair(self, rng: np.random.Generator, name: str
                  ) -> tuple[tuple[PreparedClip, int, float], tuple[PreparedClip, int, float]]:
        """The same frame at two CRFs, of the same type in both encodes (any frame if no frame is)."""
        a, b = rng.choice(len(self.variants), size=2, replace=False)
        clip_a, clip_b = self._clip(name, self.variants[a]), self._clip(name, self.variants[b])
        n = clip_a.decoded.shape[0]
        same = np.flatnonzero(clip_a.priors["frame_type"] == clip_b.priors["frame_type"])
        t = int(rng.choice(same)) if same.size else int(rng.integers(n))
        return ((clip_a, t, variant_crf(clip_a.info, clip_a.variant)),
                (clip_b, t, variant_crf(clip_b.info, clip_b.variant)))

    def _type_pair(self, rng: np.random.Generator, name: str
                   ) -> tuple[tuple[PreparedClip, int, float], tuple[PreparedClip, int, float]] | None:
        """Two frames of different types at most ``reach`` apart, at one CRF; None if the
        clip has no such frames at that CRF."""
        clip = self._clip(name, self.variants[rng.integers(len(self.variants))])
        types = np.asarray(clip.priors["frame_type"])
        n = len(types)
        t = int(rng.integers(n))
        near = [u for u in range(max(0, t - self.reach), min(n, t + self.reach + 1)) if types[u] != types[t]]
        if not near:
            return None
        u = int(rng.choice(near))
        return (clip, t, float(types[t])), (clip, u, float(types[u]))


class CompressionViews(RankingPairs):
    """Two crops at different places of one decoded frame at one CRF: the positive pair of a
    contrastive loss over compression representations (DASR's degradation-aware
    contrastive learning, moved to CAVSR's encoder: paper Table 3's "CL" rows).

    Samples hold ``frames (2, 3, S, S)``, ``frame_type (2,)`` (the same type twice) and
    ``level``: the index of the CRF in ``variants``. Arguments as :class:`RankingPairs`.
    """

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        name = self.clips[rng.integers(len(self.clips))]
        level = int(rng.integers(len(self.variants)))
        clip = self._clip(name, self.variants[level])
        n, h, w = clip.decoded.shape[:3]
        t = int(rng.integers(n))
        views = []
        for _ in range(2):
            y = MB * int(rng.integers((h - self.crop) // MB + 1))
            x = MB * int(rng.integers((w - self.crop) // MB + 1))
            a = np.ascontiguousarray(clip.decoded[t, y : y + self.crop, x : x + self.crop])
            view = {"frames": torch.from_numpy(a).permute(2, 0, 1).float()[None] / 255}
            if self.augment:
                view = dihedral(view, int(rng.integers(8)))
            views.append(view["frames"][0])
        kind = int(clip.priors["frame_type"][t])
        return {"frames": torch.stack(views), "frame_type": torch.tensor([kind, kind]),
                "level": torch.tensor(level)}


__all__ = ["CRF_PAIR", "TYPE_PAIR", "CompressionViews", "RankingPairs"]
