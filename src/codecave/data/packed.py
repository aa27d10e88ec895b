"""Training windows packed into one compressed file, served as whole batches on any device.

A prepared ``yuv420`` dataset (:mod:`codecave.data.prepare`) is gigabytes of
memory-mapped arrays plus PyAV to make more. :func:`pack_dataset` cuts it into
*tiles* (``tile`` x ``tile`` pixels, ``frames`` frames, every rate point a recipe
trains on) and stores them in one ``.npz`` of integer arrays that fits a size budget:

* ``gt``: ``(N, F, 24, s, s)`` packed 4:2:0 codes (:func:`codecave.grid.pack_planes`),
  ``s = tile / 4``;
* ``residual``: ``(N, V, F, 24, s, s)`` decoded minus ground truth modulo
  ``2^bits``: exact, and mostly zeros and small values, so it compresses well;
* the grid priors of every variant: ``mv`` ``(N, V, F, 2, 2, s, s)`` float16 in
  pixels per frame step (past / future, dx / dy; as prepared), ``mv_valid`` ``(N, V, F, 2, s, s)``,
  ``partition`` ``(N, V, F, s, s)`` class index, ``qp`` and ``frame_type``
  ``(N, V, F)``, ``crf`` ``(N, V)``.

:class:`PackedWindows` loads a pack onto a device once and draws whole batches there
by tensor indexing (tile, rate point, first frame, crop corner, flip/rotation and QP
dropout for every sample at once), in the layout :class:`codecave.data.dataset.PreparedWindows`
gives: no per-sample Python, no decoding, no PyAV. This is what a GPU needs to stay
busy (``scripts/gpu_train.py``).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codecave.codec.priors import GRID, MB
from codecave.codec.rasterize import PARTITION_CLASSES
from codecave.data.augment import dihedral
from codecave.data.dataset import WindowSpec, variant_crf
from codecave.data.prepare import PreparedClip, dataset_domain, load_clip, load_manifest
from codecave.errors import DatasetError
from codecave.grid import peak

log = logging.getLogger(__name__)

#: Format version written into every pack.
PACK_VERSION = 1


@dataclass
class PackInfo:
    """What :func:`pack_dataset` wrote.

    Attributes:
        path: the ``.npz`` file.
        bytes: its size.
        tiles: tiles stored (``N``).
        clips: clips they were cut from.
        raw_bytes: size of the arrays before compression.
    """

    path: Path
    bytes: int
    tiles: int
    clips: int
    raw_bytes: int


def _variants(spec: WindowSpec) -> list[str]:
    return list(spec.compressed) + ([spec.lossless] if spec.lossless else [])


def _tile(clips: dict[str, PreparedClip], variants: list[str], start: int, frames: int, y: int, x: int,
          size: int) -> dict[str, np.ndarray]:
    """One tile's arrays (no leading ``N`` axis) from one clip's loaded variants."""
    g = (slice(y // GRID, (y + size) // GRID), slice(x // GRID, (x + size) // GRID))
    t = slice(start, start + frames)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("residual", "mv", "mv_valid", "partition", "qp",
                                                        "frame_type", "crf")}
    gt = None
    for variant in variants:
        clip = clips[variant]
        if gt is None:
            gt = np.ascontiguousarray(clip.gt[t, :, g[0], g[1]])
        decoded = np.ascontiguousarray(clip.decoded[t, :, g[0], g[1]])
        out["residual"].append(decoded - gt)  # unsigned: wraps modulo 2^bits, exactly invertible
        p = clip.priors
        out["mv"].append(np.asarray(p["mv"][t, ..., g[0], g[1]], np.float16))
        out["mv_valid"].append(np.asarray(p["mv_valid"][t, ..., g[0], g[1]], bool))
        out["partition"].append(np.asarray(p["partition"][t, g[0], g[1]], np.uint8))
        out["qp"].append(np.asarray(p["qp"][t], np.float32))
        out["frame_type"].append(np.asarray(p["frame_type"][t], np.int8))
        out["crf"].append(np.float32(variant_crf(clip.info, variant)))
    arrays = {k: np.stack(v) for k, v in out.items()}
    arrays["gt"] = gt
    return arrays


def _compressed_size(arrays: dict[str, np.ndarray]) -> int:
    return sum(len(zlib.compress(a.tobytes(), 6)) for a in arrays.values())


def pack_dataset(root: str | os.PathLike[str], out: str | os.PathLike[str], spec: WindowSpec,
                 budget_mib: float = 60, tile: int = 128, frames: int = 7, seed: int = 0,
                 clips: list[str] | None = None, compress: bool = True) -> PackInfo:
    """Cut a prepared ``yuv420`` dataset into tiles that fit ``budget_mib`` once compressed.

    Tiles are taken in rounds, one per clip per round (clips in a seeded random
    order, a random corner on the macroblock grid and a random first frame each),
    until the next tile would not fit, so every clip is represented before any clip
    twice.

    Args:
        root: prepared dataset (``codecave prepare``, domain ``yuv420``).
        out: ``.npz`` file to write.
        spec: the recipe's windows: its rate points are packed, and ``frames`` and
            ``crop`` must fit in a tile.
        budget_mib: size limit of the file in MiB.
        tile: tile side in pixels (a multiple of 16, at least ``spec.crop``).
        frames: frames per tile (at least ``spec.frames``); shorter clips are skipped.
        seed: selection seed.
        clips: clip names (default: all of the dataset).
        compress: deflate the arrays (for a pack that must travel); False writes them
            as they are, faster, with the budget on their raw size (a pack for this machine).

    Returns:
        A :class:`PackInfo`.

    Raises:
        DatasetError: an RGB dataset, missing rate points, a tile that cannot hold a
            window, or not even one tile within the budget.
    """
    manifest = load_manifest(root)
    if dataset_domain(manifest) != "yuv420":
        raise DatasetError(f"{root}: packs are made of yuv420 datasets; prepare with --domain yuv420")
    if tile % MB or tile < spec.crop:
        raise DatasetError(f"tile {tile} must be a multiple of {MB} and at least the crop ({spec.crop})")
    if frames < spec.frames:
        raise DatasetError(f"{frames} frames per tile cannot hold a {spec.frames}-frame window")
    variants = _variants(spec)
    names = sorted(clips if clips is not None else manifest["clips"])
    rng = np.random.default_rng(seed)
    usable, bit_depth = [], None
    for name in names:
        clip = load_clip(root, name, variants[0])
        n, _, gh, gw = clip.decoded.shape
        missing = [v for v in variants if v not in clip.info["variants"]]
        if missing:
            raise DatasetError(f"{root}/{name}: no rate point(s) {missing}")
        if n < frames or gh * GRID < tile or gw * GRID < tile:
            log.warning("%s: %d frames of %dx%d is smaller than a %d-frame %dpx tile; skipped",
                        name, n, gw * GRID, gh * GRID, frames, tile)
            continue
        if bit_depth not in (None, clip.bit_depth):
            raise DatasetError(f"{root}: clips of {bit_depth} and {clip.bit_depth} bits; pack one bit depth")
        bit_depth = clip.bit_depth
        usable.append((name, n, gh * GRID, gw * GRID))
    if not usable:
        raise DatasetError(f"{root}: no clip holds a {frames}-frame {tile}px tile")
    budget = int(budget_mib * 2**20)
    tiles: list[dict[str, np.ndarray]] = []
    index: list[tuple[int, int, int, int]] = []
    loaded: dict[str, dict[str, PreparedClip]] = {}
    used = 4096  # zip directory and the metadata
    full = False
    while not full:
        for k in rng.permutation(len(usable)):
            name, n, h, w = usable[k]
            start = int(rng.integers(n - frames + 1))
            y = MB * int(rng.integers((h - tile) // MB + 1))
            x = MB * int(rng.integers((w - tile) // MB + 1))
            if name not in loaded:  # priors are read once per clip, not once per tile
                loaded[name] = {v: load_clip(root, name, v) for v in variants}
            arrays = _tile(loaded[name], variants, start, frames, y, x, tile)
            size = _compressed_size(arrays) if compress else sum(a.nbytes for a in arrays.values())
            if used + size > budget:
                full = True
                break
            used += size
            tiles.append(arrays)
            index.append((names.index(name), start, y, x))
    if not tiles:
        raise DatasetError(f"not one {tile}px tile fits in {budget_mib} MiB")
    meta = {"version": PACK_VERSION, "variants": variants, "lossless": spec.lossless, "clips": names,
            "bit_depth": bit_depth, "tile": tile, "frames": frames, "source": str(root)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:  # the per-tile estimate can miss by a little: drop tiles from the end until it fits
        stacked = {k: np.stack([t[k] for t in tiles]) for k in tiles[0]}
        (np.savez_compressed if compress else np.savez)(out, **stacked, origin=np.asarray(index[: len(tiles)], np.int32),
                            meta=np.asarray(json.dumps(meta)))
        size = out.stat().st_size
        if size <= budget:
            break
        keep = min(len(tiles) - 1, int(len(tiles) * budget / size * 0.99))
        if keep < 1:
            out.unlink()
            raise DatasetError(f"not one {tile}px tile fits in {budget_mib} MiB")
        tiles = tiles[:keep]
    index = index[: len(tiles)]
    raw = sum(a.nbytes for a in stacked.values())
    return PackInfo(out, size, len(tiles), len({i[0] for i in index}), raw)


class PackedWindows:
    """Batches of training windows drawn from a pack, on a device.

    Samples follow :class:`~codecave.data.dataset.WindowSpec` like
    :class:`~codecave.data.dataset.PreparedWindows` (the lossless rate point with
    probability ``lossless_prob``, else a compressed one uniformly; a crop on the
    macroblock grid; one of 8 flips / rotations; QP hidden with probability
    ``qp_dropout``), inside the pack's tiles instead of whole clips.

    Args:
        path: a pack from :func:`pack_dataset`.
        spec: window settings; its rate points must be in the pack.
        device: where the pack and the batches live.
        seed: sampling seed; batch ``i`` is a pure function of ``(seed, i)``.

    Raises:
        DatasetError: an unknown format, missing rate points, or windows larger than the tiles.
    """

    def __init__(self, path: str | os.PathLike[str], spec: WindowSpec, device: torch.device | str = "cpu",
                 seed: int = 0) -> None:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != PACK_VERSION:
                raise DatasetError(f"{path}: pack format {meta.get('version')}, expected {PACK_VERSION}")
            arrays = {k: z[k] for k in z.files if k != "meta"}
        self.meta, self.spec, self.seed = meta, spec, seed
        self.device = torch.device(device)
        names = meta["variants"]
        missing = [v for v in _variants(spec) if v not in names]
        if missing:
            raise DatasetError(f"{path}: holds rate points {names}, the recipe needs {missing}")
        if spec.crop > meta["tile"] or spec.frames > meta["frames"]:
            raise DatasetError(f"{path}: {meta['frames']}-frame {meta['tile']}px tiles cannot hold "
                               f"{spec.frames}-frame {spec.crop}px windows")
        self._compressed = np.array([names.index(v) for v in spec.compressed], np.int64)
        self._lossless = names.index(spec.lossless) if spec.lossless else -1
        bits = int(meta["bit_depth"])
        self.peak = peak(bits)

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device)

        gt = arrays["gt"].astype(np.int32)
        decoded = (gt[:, None] + arrays["residual"].astype(np.int32)) % (1 << bits)
        self.gt, self.decoded = put(gt.astype(np.int16 if bits < 16 else np.int32)), put(
            decoded.astype(np.int16 if bits < 16 else np.int32))
        self.mv, self.mv_valid = put(arrays["mv"]), put(arrays["mv_valid"])
        self.partition = put(arrays["partition"].astype(np.int64))
        self.qp, self.frame_type = put(arrays["qp"]), put(arrays["frame_type"].astype(np.int64))
        self.crf = put(arrays["crf"])
        #: Tiles in the pack.
        self.tiles = int(self.gt.shape[0])

    def batch(self, index: int, size: int) -> dict[str, torch.Tensor]:
        """Batch number ``index`` of ``size`` windows, on the pack's device.

        Returns:
            ``frames`` / ``gt`` ``(B, T, 24, c, c)`` in [0, 1] (``c = crop / 4``), grid priors
            ``mv_past`` / ``mv_future`` ``(B, T, 2, c, c)`` in grid units, ``mv_valid``
            ``(B, T, 2, c, c)`` bool, ``partition`` ``(B, T, 4, c, c)`` one-hot, ``qp``
            ``(B, T)`` (NaN where hidden), ``frame_type`` ``(B, T)``, ``crf`` ``(B,)``.
        """
        spec, meta = self.spec, self.meta
        rng = np.random.default_rng([self.seed, index])
        tile = rng.integers(self.tiles, size=size)
        lossless = rng.random(size) < (spec.lossless_prob if spec.lossless else 0.0)
        pick = (self._compressed[rng.integers(len(spec.compressed), size=size)] if spec.compressed
                else np.zeros(size, np.int64))
        variant = np.where(lossless, self._lossless, pick)
        start = rng.integers(meta["frames"] - spec.frames + 1, size=size)
        corners = (meta["tile"] - spec.crop) // MB + 1
        y = rng.integers(corners, size=size) * (MB // GRID)
        x = rng.integers(corners, size=size) * (MB // GRID)
        code = rng.integers(8, size=size) if spec.augment else np.zeros(size, np.int64)
        hide = rng.random(size) < spec.qp_dropout
        return self._gather(tile, variant, start, y, x, code, hide)

    def _gather(self, tile: np.ndarray, variant: np.ndarray, start: np.ndarray, y: np.ndarray, x: np.ndarray,
                code: np.ndarray, hide: np.ndarray) -> dict[str, torch.Tensor]:
        """Windows at given tiles / variants / first frames / grid corners, then flipped by ``code``."""
        def dev(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, np.int64), device=self.device)

        spec, c = self.spec, self.spec.crop // GRID
        ar_t, ar_c = torch.arange(spec.frames, device=self.device), torch.arange(c, device=self.device)
        n, v = dev(tile), dev(variant)
        t = dev(start)[:, None] + ar_t
        i4, v4, t4 = n[:, None, None, None], v[:, None, None, None], t[:, :, None, None]
        r = (dev(y)[:, None] + ar_c)[:, None, :, None]
        q = (dev(x)[:, None] + ar_c)[:, None, None, :]
        # advanced indices around a slice put their (B, T, c, c) axes first
        gt = self.gt[i4, t4, :, r, q].permute(0, 1, 4, 2, 3)
        frames = self.decoded[i4, v4, t4, :, r, q].permute(0, 1, 4, 2, 3)
        mv = self.mv[i4, v4, t4, :, :, r, q].permute(0, 1, 4, 5, 2, 3).float() / GRID
        valid = self.mv_valid[i4, v4, t4, :, r, q].permute(0, 1, 4, 2, 3)
        part = F.one_hot(self.partition[i4, v4, t4, r, q], len(PARTITION_CLASSES)).permute(0, 1, 4, 2, 3).float()
        n2, v2 = n[:, None], v[:, None]
        qp = self.qp[n2, v2, t].clone()
        qp[dev(hide).bool()] = float("nan")
        sample = {
            "frames": frames.float() / self.peak, "gt": gt.float() / self.peak,
            "mv_past": mv[:, :, 0], "mv_future": mv[:, :, 1], "mv_valid": valid, "partition": part,
            "qp": qp, "frame_type": self.frame_type[n2, v2, t], "crf": self.crf[n, v],
        }
        codes = dev(code)
        for k in torch.unique(codes).tolist():
            if k == 0:
                continue
            rows = (codes == k).nonzero()[:, 0]
            turned = dihedral({key: value[rows] for key, value in sample.items()}, k, packed=True)
            for key, value in turned.items():
                sample[key][rows] = value
        return {k: v.contiguous() for k, v in sample.items()}
