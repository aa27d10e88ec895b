"""Prepare compressed datasets with real encoders, and read them back.

For each ground-truth clip and each rate point (CRF or fixed QP), the clip is
encoded with a real encoder, decoded again by :mod:`codecave.codec.reader`, and
cached as NumPy arrays with compact priors (4x4 grid, QP per macroblock):

```
OUT/manifest.json                       settings (domain among them), versions, one entry per clip
OUT/clips/NAME/gt_yuv.npy               yuv420: (T, 24, H/4, W/4) packed ground-truth planes
OUT/clips/NAME/VARIANT/decoded_yuv.npy  yuv420: (T, 24, H/4, W/4) packed decoded planes
OUT/clips/NAME/gt.npy                   rgb: (T, H, W, 3) uint8 ground truth
OUT/clips/NAME/VARIANT/decoded.npy      rgb: (T, h, w, 3) uint8 decoded frames
OUT/clips/NAME/flow.npz                 flow_past / flow_future (T, 2, H, W), stills only
OUT/clips/NAME/VARIANT/video.EXT        the real bitstream (VARIANT: crf25, qp30...)
OUT/clips/NAME/VARIANT/priors.npz       compact priors (see codec.rasterize.stack_compact)
OUT/clips/NAME/info.json                per clip: source, hash, sizes, bytes per variant
```

Datasets hold one of two domains (``PrepareSettings.domain``, recorded in the
manifest). ``yuv420`` (the default) stores the exact 4:2:0 planes that were fed to
the encoder as ground truth and the decoder's own planes, packed on the 4x4 grid
(:func:`codecave.grid.pack_planes`; integer codes, uint8 for 8-bit): no colour
conversion sits between a target and its input. Sources that are already 4:2:0 keep
their planes; RGB sources are converted once, as
:data:`codecave.codec.convert.RGB_TO_YUV420` states (BT.601, limited range), and the
manifest says so. ``rgb`` keeps the RGB layout for RGB models (and super-resolution
sets). Manifests written before domains existed are ``rgb``.

Each clip is built in a temporary folder and renamed when complete, so an
interrupted run resumes where it stopped. A folder is bound to one set of
settings: preparing into it with different settings is refused, with one exception:
rate points may be added (the same settings with more CRFs, QPs or low-delay P QPs).
Complete clips then gain only the new variants, encoded from their ground truth made
again from the source and checked equal, sample for sample, to the stored one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

import codecave
from codecave.codec.priors import YUVPlanes, x264_equivalent_crf
from codecave.codec.rasterize import compact_priors, stack_compact
from codecave.data.sources import Source, discover_sources, file_hash, read_frames
from codecave.errors import DatasetError
from codecave.grid import crop_yuv, luma, pack_planes

if TYPE_CHECKING:
    from codecave.codec.encode import EncodeSettings

# The encoding side (codecave.codec.encode / convert) imports PyAV, and is imported where it
# is used: reading a prepared dataset back (load_manifest, load_clip) needs no PyAV, so
# training can run where PyAV is not installed (scripts/gpu_train.py).

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: What a dataset can hold (design section 3).
DOMAINS = ("yuv420", "rgb")
_CONTAINER = {"libx264": ".mp4", "libx265": ".mp4", "libsvtav1": ".mkv", "mpeg2video": ".mpg",
              "mpeg4": ".avi", "ffv1": ".mkv"}


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that decides what a prepared dataset contains.

    Attributes:
        codec: encoder (``x264``, ``x265``, ``svtav1``...).
        crfs: CRF rate points; one variant each (``crf25``). CRF 0 is x264 lossless.
        qps: fixed-QP rate points; one variant each (``qp30``).
        ldp_qps: HEVC low-delay P rate points, as the VIG and CRDS papers made their data
            with HM (``encoder_lowdelay_P_main.cfg``): x265, one intra frame then P frames
            at HM's QP cascade around the base QP (:func:`codecave.codec.encode.low_delay_p_qps`),
            checked frame by frame in x265's own log; one variant each (``ldp37``), whatever
            ``codec`` says.
        preset, bframes, keyint, ref, tune: encoder settings (``None``: its default).
        max_frames: frames taken from each source (from its start).
        crop_multiple: frames are cropped (top-left kept) so both sides are multiples
            of this, after any downscale (16 keeps whole macroblocks).
        scale: 4 blurs (Gaussian, ``blur_sigma``) and downsamples the ground truth 4x
            before encoding, for compressed super-resolution sets; 1 encodes as is.
        blur_sigma: Gaussian sigma of the blur before downsampling.
        decimation: where the low-resolution samples sit: ``centred`` (where bicubic
            up-sampling expects them; :func:`blur_downsample`). Recorded for ``scale`` > 1,
            so that a set made before it (pixels 0, 4, 8...) is not resumed as if it were one.
        still_frames: clip length made from each still photo.
        still_size: ``(height, width)`` of clips made from stills.
        yuv_size: ``(width, height)`` of raw ``.yuv`` sources.
        yuv_format: pixel format of raw ``.yuv`` sources.
        seed: seed of the synthetic camera motion of stills.
        domain: ``yuv420`` (4:2:0 planes on the packed grid) or ``rgb``.
    """

    codec: str = "x264"
    crfs: tuple[float, ...] = (15.0, 25.0, 35.0)
    qps: tuple[float, ...] = ()
    ldp_qps: tuple[int, ...] = ()
    preset: str = "medium"
    bframes: int | None = None
    keyint: int | None = None
    ref: int | None = None
    tune: str | None = None
    max_frames: int = 32
    crop_multiple: int = 16
    scale: int = 1
    blur_sigma: float = 1.5
    decimation: str = "centred"
    still_frames: int = 7
    still_size: tuple[int, int] = (256, 448)
    yuv_size: tuple[int, int] | None = None
    yuv_format: str = "yuv420p"
    seed: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    domain: str = "yuv420"

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise DatasetError(f"domain {self.domain!r}: use one of {', '.join(DOMAINS)}")
        if self.domain == "yuv420" and self.scale != 1:
            raise DatasetError("super-resolution sets (scale > 1) are RGB: use domain rgb (--domain rgb)")
        if not self.crfs and not self.qps and not self.ldp_qps:
            raise DatasetError("give at least one CRF, QP or low-delay P rate point")
        if not all(0 <= q <= 48 for q in self.ldp_qps):
            raise DatasetError(f"low-delay P base QPs {list(self.ldp_qps)}: use 0..48 (the cascade adds up to 3)")
        if self.decimation != "centred":
            raise DatasetError(f"decimation {self.decimation!r}: only 'centred' is made")
        if self.scale not in (1, 2, 4):
            raise DatasetError(f"scale {self.scale}: use 1 (no downscale), 2 or 4")
        if self.max_frames < 1 or self.still_frames < 2:
            raise DatasetError(f"max_frames {self.max_frames} / still_frames {self.still_frames} too small")
        if self.crop_multiple < 4 or self.crop_multiple % 4:
            raise DatasetError(f"crop_multiple {self.crop_multiple}: use a multiple of 4 (the prior grid)")
        from codecave.codec.encode import EncodeSettings

        EncodeSettings(codec=self.codec).encoder  # validates the codec name

    def variants(self) -> dict[str, EncodeSettings]:
        """Encoder settings of every rate point, by variant name."""
        from codecave.codec.encode import EncodeSettings, low_delay_p_qps

        base = EncodeSettings(codec=self.codec, crf=None, preset=self.preset, bframes=self.bframes,
                              keyint=self.keyint, ref=self.ref, tune=self.tune, params=dict(self.extra))
        out = {f"crf{c:g}": base.with_(crf=float(c)) for c in self.crfs}
        out.update({f"qp{q:g}": base.with_(qp=float(q)) for q in self.qps})
        frames = max(self.max_frames, self.still_frames)
        out.update({f"ldp{q}": EncodeSettings(codec="x265", crf=None, preset=self.preset, params=dict(self.extra),
                                              frame_qps=low_delay_p_qps(int(q), frames)) for q in self.ldp_qps})
        return out

    def to_json(self) -> dict[str, object]:
        """Settings as stored in the manifest."""
        d = asdict(self)
        d["crfs"], d["qps"], d["ldp_qps"] = list(self.crfs), list(self.qps), list(self.ldp_qps)
        if self.scale == 1:
            d.pop("decimation")  # enhancement sets: nothing is decimated
        d["still_size"] = list(self.still_size)
        d["yuv_size"] = None if self.yuv_size is None else list(self.yuv_size)
        return d


@dataclass(frozen=True)
class PrepareResult:
    """What a preparation run did.

    Attributes:
        root: the dataset folder.
        prepared: clips built in this run.
        skipped: clips already complete (resumed).
        failed: clip name -> error message.
        seconds: wall time.
        extended: clips that were complete and gained the rate points added to the folder's
            settings in this run (also counted in ``prepared``).
    """

    root: Path
    prepared: list[str]
    skipped: list[str]
    failed: dict[str, str]
    seconds: float
    extended: list[str] = field(default_factory=list)


def _crop(frames: np.ndarray, multiple: int) -> np.ndarray:
    h = frames.shape[1] // multiple * multiple
    w = frames.shape[2] // multiple * multiple
    if h == 0 or w == 0:
        raise DatasetError(f"frames of {frames.shape[2]}x{frames.shape[1]} are smaller than {multiple} pixels")
    return frames[:, :h, :w]


def blur_downsample(frames: np.ndarray, scale: int, sigma: float) -> np.ndarray:
    """Gaussian blur then keep every ``scale``-th pixel (the BD degradation of VSR papers).

    The samples are centred as every up-sampler with aligned pixel centres (bicubic in
    PyTorch, OpenCV, MATLAB) expects them: low-resolution pixel ``i`` is the blurred
    picture at high-resolution position ``scale * i + (scale - 1) / 2`` (a Gaussian
    centred between two pixels for even scales). Keeping pixels ``0, scale, 2 scale...``
    instead puts every sample ``(scale - 1) / 2`` pixels off the up-sampler's grid (1.5
    pixels at 4x), which costs bicubic 2.4 dB on Temple.

    Args:
        frames: ``(T, H, W, 3)`` uint8 with ``H`` and ``W`` multiples of ``scale``.
        scale: downsampling factor.
        sigma: Gaussian sigma in high-resolution pixels.

    Returns:
        ``(T, H / scale, W / scale, 3)`` uint8.
    """
    import torch
    import torch.nn.functional as F

    radius = max(1, int(np.ceil(3 * sigma)))
    centre = (scale - 1) / 2  # where sample 0 sits, in high-resolution pixels
    first = int(np.floor(centre))  # the pixel the kernel is anchored at
    x = torch.arange(-radius, radius + 2, dtype=torch.float32) - (centre - first)
    k1 = torch.exp(-(x**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    t = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    c = t.shape[1]
    t = F.pad(t, (radius, radius + 1, radius, radius + 1), mode="reflect")
    t = F.conv2d(t, k1.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(t, k1.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    t = t[:, :, first::scale, first::scale]
    return t.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()


def _ground_truth(source: Source, s: PrepareSettings, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Load (or synthesise) a clip's ground truth, cropped; flows for stills."""
    multiple = s.crop_multiple * s.scale
    if source.kind == "still":
        from codecave.data.synth import load_still, synthesize_clip

        clip = synthesize_clip(load_still(source.path), s.still_frames, s.still_size, seed=s.seed + index)
        gt = _crop(clip.frames, multiple)
        h, w = gt.shape[1:3]
        flows = {"flow_past": clip.flow_past[:, :, :h, :w], "flow_future": clip.flow_future[:, :, :h, :w]}
        return gt, flows
    frames = list(read_frames(source, max_frames=s.max_frames, yuv_size=s.yuv_size, yuv_format=s.yuv_format))
    if not frames:
        raise DatasetError(f"{source.path}: no frames")
    return _crop(np.stack(frames), multiple), {}


def _crop_planes(planes: list[YUVPlanes], multiple: int) -> list[YUVPlanes]:
    h = planes[0].height // multiple * multiple
    w = planes[0].width // multiple * multiple
    if h == 0 or w == 0:
        raise DatasetError(f"frames of {planes[0].width}x{planes[0].height} are smaller than {multiple} pixels")
    return [crop_yuv(p, h, w) for p in planes]


def _ground_truth_planes(source: Source, s: PrepareSettings, index: int
                         ) -> tuple[list[YUVPlanes], dict[str, np.ndarray]]:
    """A clip's ground truth as 4:2:0 planes, cropped: a 4:2:0 source's own planes,
    anything else converted once (:func:`~codecave.codec.convert.rgb_to_planes`)."""
    from codecave.codec.convert import rgb_to_planes

    if source.kind == "still":
        gt, flows = _ground_truth(source, s, index)
        return [rgb_to_planes(f) for f in gt], flows
    planes = list(read_frames(source, max_frames=s.max_frames, yuv_size=s.yuv_size, yuv_format=s.yuv_format,
                              planes=True))
    if not planes:
        raise DatasetError(f"{source.path}: no frames")
    return _crop_planes(planes, s.crop_multiple), {}


def _encode_variant(gt_input: np.ndarray | list[YUVPlanes], folder: Path, settings: EncodeSettings
                    ) -> dict[str, object]:
    """Encode, decode back, and store one variant; return its summary."""
    from codecave.codec.convert import planar_format
    from codecave.codec.encode import encode_frames
    from codecave.codec.reader import open_video

    folder.mkdir(parents=True)
    video = folder / f"video{_CONTAINER.get(settings.encoder, '.mkv')}"
    yuv = isinstance(gt_input, list)
    if yuv and gt_input[0].bit_depth > 8:
        settings = settings.with_(pix_fmt=planar_format(gt_input[0].bit_depth))
    result = encode_frames(iter(gt_input), video, settings)
    decoded, compact, kinds = [], [], []
    with open_video(video) as reader:
        for frame in reader:
            decoded.append(pack_planes(frame.planes) if yuv else frame.rgb)
            compact.append(compact_priors(frame.priors, frame.height, frame.width))
            kinds.append(frame.priors.frame_type.name)
        reader.check()
        source = reader.info.prior_source
        encoder = reader.info.encoder
    if len(decoded) != len(gt_input):
        raise DatasetError(f"{video}: {len(gt_input)} frames encoded but {len(decoded)} decoded")
    np.save(folder / ("decoded_yuv.npy" if yuv else "decoded.npy"), np.stack(decoded))
    stacked = stack_compact(compact)
    np.savez(folder / "priors.npz", **stacked)
    qps = stacked["qp"][np.isfinite(stacked["qp"])]
    pixels = len(gt_input) * result.width * result.height
    summary = {
        "file": video.name,
        "bytes": result.bytes,
        "bits_per_pixel": 8 * result.bytes / pixels,
        "frame_types": "".join(k[0] for k in kinds),
        "mean_qp": float(qps.mean()) if qps.size else None,
        "prior_source": source,
        "encoder_crf": encoder.crf if encoder is not None else settings.crf if settings.qp is None else None,
        "encoder_qp": encoder.qp if encoder is not None else settings.qp,
        "codec": settings.codec,
        # The value models are conditioned on: x264's CRF scale (x265 and SVT-AV1 mapped).
        "x264_crf": None if settings.qp is not None or settings.crf is None
        else x264_equivalent_crf(settings.codec, encoder.crf if encoder is not None and encoder.crf is not None
                                 else settings.crf),
    }
    if settings.frame_qps:  # low-delay P: the QPs are x265's log (the HEVC decoder exports none)
        logged = [q for _, _, q in result.frame_log]
        summary.update(structure="low-delay P (HM cascade)", mean_qp=float(np.mean(logged)), encoder_frame_qps=logged,
                       encoder_qp=float(settings.frame_qps[0]))  # asked, and checked in the log
    return summary


@dataclass
class _ClipInput:
    """A clip's ground truth as stored (``file``, ``gt``) and what the encoder is given."""

    file: str
    gt: np.ndarray
    net_input: np.ndarray | list[YUVPlanes]
    flows: dict[str, np.ndarray]
    depth: int
    input_size: tuple[int, int]


def _clip_input(source: Source, s: PrepareSettings, index: int) -> _ClipInput:
    if s.domain == "yuv420":
        planes, flows = _ground_truth_planes(source, s, index)
        return _ClipInput("gt_yuv.npy", np.stack([pack_planes(p) for p in planes]), planes, flows,
                          planes[0].bit_depth, tuple(planes[0].y.shape))
    gt, flows = _ground_truth(source, s, index)
    net_input = blur_downsample(gt, s.scale, s.blur_sigma) if s.scale > 1 else gt
    return _ClipInput("gt.npy", gt, net_input, flows, 8, tuple(net_input.shape[1:3]))


def _encode_settings(enc: EncodeSettings, threads: int | None) -> EncodeSettings:
    return enc.with_(threads=threads) if threads and enc.threads is None else enc


def _extend_clip(source: Source, root: Path, s: PrepareSettings, index: int, threads: int | None
                 ) -> dict[str, object]:
    """Add the variants a complete clip lacks (rate points added to the folder's settings).

    The ground truth is made again from the source and must equal the stored one sample for
    sample (same source file, same place among the sources for photos, whose camera motion
    is seeded by it); each new variant is built in a temporary folder and renamed, and
    ``info.json`` is rewritten after each, so an interrupted run resumes.

    Raises:
        DatasetError: the source changed, or its ground truth differs from the stored one.
    """
    final = root / "clips" / source.name
    info = json.loads((final / "info.json").read_text())
    missing = {n: e for n, e in s.variants().items() if n not in info["variants"]}
    if not missing:
        return info
    if info.get("sha256") != file_hash(source.path):
        raise DatasetError(f"{source.path} changed since {final} was prepared: prepare it into another folder")
    made = _clip_input(source, s, index)
    stored = np.load(final / made.file, mmap_mode="r")
    if stored.shape != made.gt.shape or not np.array_equal(stored, made.gt):
        raise DatasetError(f"{source.name}: its ground truth made again differs from {final / made.file} "
                           "(photos: give the sources in the order they were first prepared)")
    for name, enc in missing.items():
        tmp = final / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final / name, ignore_errors=True)  # left by an interrupted run: not in info.json
        try:
            info["variants"][name] = _encode_variant(made.net_input, tmp, _encode_settings(enc, threads))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, final / name)
        _write_json(final / "info.json", info)
    return info


def prepare_clip(source: Source, root: Path, s: PrepareSettings, index: int = 0,
                 threads: int | None = None) -> dict[str, object]:
    """Build one clip of a dataset (all its variants) atomically; ``threads``: encoder
    threads (None: the encoder's choice, which follows the machine's cores). A clip that
    is already complete only gains the variants it lacks (rate points added to the
    folder's settings; see the module docstring).

    Returns:
        The clip's ``info.json`` content.

    Raises:
        DatasetError: unreadable source, or (adding rate points) a ground truth that no
            longer matches the stored one.
    """
    import torch

    torch.set_num_threads(1)
    final = root / "clips" / source.name
    if (final / "info.json").exists():
        return _extend_clip(source, root, s, index, threads)
    tmp = root / "clips" / f".{source.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        made = _clip_input(source, s, index)
        np.save(tmp / made.file, made.gt)
        net_input, flows, depth, input_size = made.net_input, made.flows, made.depth, made.input_size
        frames, (height, width) = len(made.gt), ((made.gt.shape[2] * 4, made.gt.shape[3] * 4)
                                                 if s.domain == "yuv420" else made.gt.shape[1:3])
        if flows:
            np.savez(tmp / "flow.npz", **flows)
        variants = {name: _encode_variant(net_input, tmp / name, _encode_settings(enc, threads))
                    for name, enc in s.variants().items()}
        info = {
            "name": source.name,
            "source": str(source.path),
            "kind": source.kind,
            "sha256": file_hash(source.path),
            "domain": s.domain,
            "bit_depth": depth,
            "frames": int(frames),
            "height": int(height),
            "width": int(width),
            "input_height": int(input_size[0]),
            "input_width": int(input_size[1]),
            "has_flow": bool(flows),
            "variants": variants,
        }
        _write_json(tmp / "info.json", info)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return info
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


#: Settings that list rate points: a folder's lists may grow (new variants are added).
RATE_POINT_KEYS = ("crfs", "qps", "ldp_qps")


def _check_settings(root: Path, s: PrepareSettings) -> dict[str, object]:
    """Load the manifest, refusing a folder prepared with other settings (more rate points
    in :data:`RATE_POINT_KEYS` are allowed)."""
    path = root / MANIFEST
    if not path.exists():
        if root.exists() and any(p.name != "clips" for p in root.iterdir()):
            raise DatasetError(f"{root}: folder is not empty and has no {MANIFEST}; choose an empty folder")
        return {}
    manifest = json.loads(path.read_text())
    old = manifest.get("settings", {})
    new = json.loads(json.dumps(s.to_json()))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    added = set(changed) <= set(RATE_POINT_KEYS) and all(
        set(old.get(k) or ()) <= set(new.get(k) or ()) for k in changed)
    if changed and not added:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise DatasetError(f"{root} was prepared with other settings ({diff}); use another folder "
                           "(rate points may only be added: give the old ones too)")
    if changed:
        log.info("%s: adding rate points (%s) to its clips", root,
                 ", ".join(f"{k} {sorted(set(new[k]) - set(old.get(k) or ()))}" for k in changed))
    return manifest


def prepare_dataset(
    inputs: Sequence[str | os.PathLike[str]],
    root: str | os.PathLike[str],
    settings: PrepareSettings | None = None,
    *,
    workers: int = 1,
    stills: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    exclude: Sequence[str] = (),
    ray: str | None = None,
    threads: int | None = None,
) -> PrepareResult:
    """Encode ground-truth clips at every rate point and cache frames and priors.

    Args:
        inputs: files and folders of sources (see :func:`~codecave.data.sources.discover_sources`).
        root: dataset folder (created; resumed if it holds a run with the same settings).
        settings: what to prepare (default: x264 CRF 15/25/35, medium).
        workers: clips prepared in parallel processes (:func:`codecave.fleet.run_jobs`: a
            clip that fails, or whose worker dies, is reported and the rest go on).
        stills: treat images inside folders as photos to animate, not as frames.
        progress: called as ``progress(done, total, clip_name)`` after each clip.
        exclude: clip names to leave out (a validation split's, :func:`held_out_names`).
        ray: prepare each clip as a Ray task instead (``"auto"``, an address or ``"local"``;
            see :func:`codecave.fleet.run_jobs`); sources and ``root`` on storage every node sees.
        threads: encoder threads per worker or Ray task (default: the cores divided among
            the local workers; 1 per Ray task, which is also its CPU request).

    Returns:
        What was prepared, skipped and failed.

    Raises:
        DatasetError: bad inputs, or ``root`` holds a dataset with other settings.
    """
    from codecave.codec.convert import RGB_TO_YUV420
    from codecave.codec.encode import library_versions

    s = settings or PrepareSettings()
    root = Path(root)
    start = time.perf_counter()
    sources = [src for src in discover_sources(inputs, stills=stills) if src.name not in set(exclude)]
    if not sources:
        raise DatasetError(f"no sources left in {', '.join(map(str, inputs))} after leaving out {len(exclude)} names")
    manifest = _check_settings(root, s)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    clips: dict[str, object] = dict(manifest.get("clips", {}))  # type: ignore[arg-type]
    wanted = set(s.variants())

    def complete(src: Source) -> bool:  # built, with every rate point of the settings
        info = root / "clips" / src.name / "info.json"
        return info.exists() and wanted <= set(json.loads(info.read_text())["variants"])

    todo = [(i, src) for i, src in enumerate(sources) if not complete(src)]
    skipped = [src.name for src in sources if complete(src)]
    extending = {src.name for _, src in todo if (root / "clips" / src.name / "info.json").exists()}
    for name in skipped:
        clips[name] = json.loads((root / "clips" / name / "info.json").read_text())

    def holds_all() -> bool:
        return all(wanted <= set(c["variants"]) for c in clips.values())  # type: ignore[index]

    # Rate points being added: the manifest keeps the old settings (the rate points every
    # clip holds) until every clip holds the new ones too.
    old_settings = manifest.get("settings")
    manifest = {
        "codecave": codecave.__version__,
        "versions": library_versions(),
        "settings": s.to_json() if not old_settings or holds_all() else old_settings,
        "domain": s.domain,
        "clips": clips,
    }
    if s.domain == "yuv420":
        manifest["rgb_to_yuv420"] = RGB_TO_YUV420
    _write_json(root / MANIFEST, manifest)
    prepared: list[str] = []
    failed: dict[str, str] = {}

    def record(name: str, info: dict[str, object] | None, error: str | None) -> None:
        if error is not None:
            failed[name] = error
            log.error("%s: %s", name, failed[name])
        else:
            clips[name] = info
            prepared.append(name)
            _write_json(root / MANIFEST, manifest)
        if progress is not None:
            progress(len(skipped) + len(prepared) + len(failed), len(sources), name)

    if progress is not None:  # inputs and settings are checked: show the work ahead
        progress(len(skipped), len(sources), "")
    from codecave.fleet import run_jobs, threads_per_worker

    if ray:  # Ray's workers start in their own folders: absolute paths
        root = root.absolute()
        todo = [(i, replace(src, path=src.path.absolute())) for i, src in todo]
    per_worker = threads_per_worker(1, threads or 1) if ray else threads_per_worker(workers, threads)
    jobs = [(src.name, (src, root, s, i, per_worker)) for i, src in todo]
    # fork, as before: sources are read with no PyTorch threads running, and scripts that
    # call prepare_dataset need no `if __name__ == "__main__"` guard.
    for name, info, error in run_jobs(prepare_clip, jobs, workers=min(workers, max(1, len(todo))), ray=ray,
                                      threads=per_worker, start_method="fork" if os.name == "posix" else "spawn"):
        record(name, info, error)
    if manifest["settings"] != s.to_json() and holds_all():
        manifest["settings"] = s.to_json()  # every clip now holds every rate point
        _write_json(root / MANIFEST, manifest)
    return PrepareResult(root, prepared, skipped, failed, time.perf_counter() - start,
                         extended=[n for n in prepared if n in extending])


def held_out_names(split: str | os.PathLike[str]) -> list[str]:
    """Clip names a validation split file lists (its ``sequences`` and ``stills``, by file stem).

    Raises:
        DatasetError: the file is missing or lists nothing.
    """
    import yaml

    path = Path(split)
    if not path.is_file():
        raise DatasetError(f"{path}: no such validation split file")
    data = yaml.safe_load(path.read_text()) or {}
    names = [Path(str(p)).stem for key in ("sequences", "stills") for p in data.get(key) or ()]
    if not names:
        raise DatasetError(f"{path}: lists no sequences or stills")
    return names


@dataclass
class PreparedClip:
    """One clip of a prepared dataset, one variant, loaded back.

    Attributes:
        name: clip name.
        variant: rate point (``crf25``...).
        gt: ground truth: ``(T, 24, H/4, W/4)`` packed 4:2:0 codes (domain ``yuv420``)
            or ``(T, H, W, 3)`` uint8 RGB (domain ``rgb``).
        decoded: decoded frames in the same layout (``(T, h, w, 3)``, ``h = H / scale``, for rgb).
        priors: compact priors arrays (see :func:`~codecave.codec.rasterize.stack_compact`).
        flow: ground-truth ``flow_past`` / ``flow_future`` for clips made from stills.
        info: the clip's ``info.json``.
    """

    name: str
    variant: str
    gt: np.ndarray
    decoded: np.ndarray
    priors: dict[str, np.ndarray]
    flow: dict[str, np.ndarray] | None
    info: dict[str, object]
    domain: str = "rgb"

    def luma_planes(self, frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The Y planes of the original and the decoded frames, ``(T, H, W)`` float64 code values,
        of the first ``frames`` frames (all when None), for scoring on the Y plane.

        Raises:
            DatasetError: not a ``yuv420`` clip.
        """
        if self.domain != "yuv420":
            raise DatasetError(f"{self.name}: Y planes need a yuv420 dataset, not {self.domain}")
        n = len(self.gt) if frames is None else min(frames, len(self.gt))
        return tuple(luma(torch.from_numpy(np.asarray(a[:n]).astype(np.float64))) for a in (self.gt, self.decoded))

    @property
    def scale(self) -> int:
        """How much larger the ground truth is than the decoded frames (1 unless super-resolution)."""
        if self.domain == "yuv420":
            return 1
        return self.gt.shape[1] // self.decoded.shape[1]

    @property
    def bit_depth(self) -> int:
        """Bits per sample of the stored codes."""
        return int(self.info.get("bit_depth", 8))


def dataset_variants(manifest: dict[str, object]) -> list[str]:
    """The rate points a dataset holds, by variant name (``crf25``, ``qp30``, ``ldp37``)."""
    settings = manifest["settings"]
    return ([f"crf{c:g}" for c in settings.get("crfs") or ()] + [f"qp{q:g}" for q in settings.get("qps") or ()]
            + [f"ldp{q}" for q in settings.get("ldp_qps") or ()])


def dataset_scale(manifest: dict[str, object]) -> int:
    """How much larger the ground truth is than the encoded input (``--scale``; 1: enhancement)."""
    return int(manifest.get("settings", {}).get("scale", 1))


def dataset_domain(manifest: dict[str, object]) -> str:
    """``"yuv420"`` or ``"rgb"``; manifests from before domains existed are RGB."""
    return str(manifest.get("domain", "rgb"))


def load_manifest(root: str | os.PathLike[str]) -> dict[str, object]:
    """Read a dataset's manifest.

    Raises:
        DatasetError: the folder holds no prepared dataset.
    """
    path = Path(root) / MANIFEST
    if not path.exists():
        raise DatasetError(f"{root}: no {MANIFEST}; prepare it with `codecave prepare`")
    return json.loads(path.read_text())


def load_clip(root: str | os.PathLike[str], name: str, variant: str, *, mmap: bool = True) -> PreparedClip:
    """Load one clip variant of a prepared dataset (memory-mapped by default)."""
    folder = Path(root) / "clips" / name
    info_path = folder / "info.json"
    if not info_path.exists():
        raise DatasetError(f"{root}: no complete clip {name!r}")
    info = json.loads(info_path.read_text())
    if variant not in info["variants"]:
        raise DatasetError(f"{name}: no variant {variant!r}; has {sorted(info['variants'])}")
    mode = "r" if mmap else None
    with np.load(folder / variant / "priors.npz") as z:
        priors = {k: z[k] for k in z.files}
    flow = None
    if info.get("has_flow"):
        with np.load(folder / "flow.npz") as z:
            flow = {k: z[k] for k in z.files}
    domain = str(info.get("domain", "rgb"))
    suffix = "_yuv" if domain == "yuv420" else ""
    return PreparedClip(
        name=name,
        variant=variant,
        gt=np.load(folder / f"gt{suffix}.npy", mmap_mode=mode),
        decoded=np.load(folder / variant / f"decoded{suffix}.npy", mmap_mode=mode),
        priors=priors,
        flow=flow,
        info=info,
        domain=domain,
    )
