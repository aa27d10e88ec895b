"""Enhance decoded frames with their codec priors: the plug-and-play API.

:class:`Enhancer` takes decoded frames and their compact priors (as the codec
reader or a prepared dataset gives them) and returns enhanced frames, in the
model's own domain: YUV 4:2:0 planes for ``yuv420`` models, RGB for ``rgb`` ones.
It works in temporal chunks with the model's context on each side (PnP-VCVE looks
one frame back and one ahead), so the result equals processing the whole clip at
once while memory stays bounded; large frames can also be split into overlapping
tiles. Recurrent luma models (``domain == "y"``, VIG) are streamed instead: each
frame's Y plane goes in once, the hidden state is carried, chroma is kept as decoded.

:func:`enhance_video` does the same for a whole file: it streams frames from the
codec reader through the model into a new file that keeps the source's timing,
metadata, audio and subtitles, written to a temporary name and renamed only
when complete.
"""

from __future__ import annotations

import dataclasses
import glob
import inspect
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codecave.codec.convert import planes_to_rgb, rgb_to_yuv420_like_encoder
from codecave.codec.priors import GRID, MB, CodedFrame, YUVPlanes, sequence_crf
from codecave.codec.rasterize import (
    CompactPriors,
    compact_priors,
    crop_compact,
    dense_priors,
    grid_priors,
    stack_compact,
)
from codecave.engine.distributed import pick_device
from codecave.errors import ConfigError, CorruptVideoError, EncoderError, OutputExistsError
from codecave.grid import crop_yuv, pack_planes, pad_planes, padded_size, to_codes, to_unit, unpack_planes

log = logging.getLogger(__name__)


def _libc_trim() -> object | None:
    """glibc's ``malloc_trim``, or None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim() if os.name == "posix" else None


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim(0)``; nothing elsewhere).

    A model call at 1280x720 allocates and frees hundreds of MB of activations; glibc keeps
    most of it in its heaps, and across calls a stream's resident memory grew from about
    350 to 1100 MB where trimming after each call keeps it near 600 (README, "Enhance speed
    and memory")."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)

#: Frames of context the default model needs on each side.
DEFAULT_RADIUS = 1
#: Frames enhanced per model call unless the options or the model say otherwise.
DEFAULT_CHUNK = 4


@dataclass(frozen=True)
class EnhanceOptions:
    """How an :class:`Enhancer` runs.

    Attributes:
        chunk: frames enhanced per model call (memory grows with it); None takes the
            model's own (``model.stream_chunk``, else 4): CAVSR's windows carry 4 frames
            of context on each side, so it streams 16 at a time.
        tile: tile side in pixels (a multiple of 16), 0 for whole frames.
        tile_overlap: context in pixels added around each tile (a multiple of 16).
        device: ``auto``, ``cpu`` or ``cuda``.
        slice_type: hide frame QPs so the model is conditioned on slice types only.
        pass_through_qp: frames whose QP is at or below this are passed through
            unchanged (the sequence CRF stands in where the QP is unknown or hidden);
            None takes the model's own threshold (``model.pass_through_qp``, measured on
            validation and listed with its shipped weights), a negative value turns it off.
            Luma models (VIG, CRDS) take no frame QPs and hold back per stream: the whole
            stream passes through when its sequence QP/CRF is at or below the threshold.
        precision: ``fp32``, ``bf16`` (the model under bfloat16 autocast; inputs, outputs
            and the residual addition stay float32), or None for the model's own choice
            (``model.inference_precision``, else fp32): PnP-VCVE ``fast`` (the default), VIG,
            CAVSR and CRDS run in bf16, each measured against fp32 on validation (README).
        high_crf: streams whose sequence CRF is at or above the switch point listed with
            the shipped ``pnp_vcve`` ``fast`` weights (``model.high_crf``, chosen on validation)
            are enhanced with their high-CRF weights (same architecture, trained further on
            the high rate points); False keeps one set of weights for every stream. The
            sequence CRF is the one the model is conditioned on: x264's, x265's and
            SVT-AV1's mapped to x264's scale, estimated from the frame QPs when unknown.
    """

    chunk: int | None = None
    tile: int = 0
    tile_overlap: int = 64
    device: str = "auto"
    slice_type: bool = False
    pass_through_qp: float | None = None
    precision: str | None = None
    high_crf: bool = True

    def __post_init__(self) -> None:
        if self.precision not in (None, "fp32", "bf16"):
            raise ConfigError(f"precision {self.precision!r}: use fp32 or bf16")
        if self.chunk is not None and self.chunk < 1:
            raise ConfigError(f"chunk {self.chunk} must be at least 1")
        if self.tile % MB or self.tile_overlap % MB or self.tile < 0 or self.tile_overlap < 0:
            raise ConfigError(f"tile {self.tile} and tile overlap {self.tile_overlap} must be multiples of {MB}")


def _tiles(size: int, tile: int) -> list[tuple[int, int]]:
    if tile <= 0 or tile >= size:
        return [(0, size)]
    return [(a, min(a + tile, size)) for a in range(0, size, tile)]


class Enhancer:
    """Run an enhancement model over decoded frames and their priors, in its own domain.

    YUV 4:2:0 models (``model.domain == "yuv420"``, e.g. PnP-VCVE ``fast``) get the
    decoder's planes, padded by edge replication to whole macroblocks and packed on
    the 4x4 grid (:mod:`codecave.grid`) with their priors on the same grid, and give
    planes back at the input's bit depth: no RGB anywhere. RGB models get RGB frames
    with dense priors. Frames are enhanced in chunks with the model's temporal
    context on each side; context frames are not enhanced (a ``targets`` window is
    passed to models that take one), so each frame's output is computed once.

    Args:
        model: a model from :func:`codecave.models.create_model`, or a registered
            name (loaded with its shipped weights), or None for the default model.
        options: chunking, tiling and device.

    Example::

        enhancer = Enhancer()                      # shipped default model
        with open_video("in.mp4") as video:
            for enhanced in enhancer.stream(video):
                ...                                # (H, W, 3) uint8 RGB
    """

    def __init__(self, model: nn.Module | str | None = None, options: EnhanceOptions = EnhanceOptions()) -> None:
        from codecave.models.registry import DEFAULT_MODEL, create_model

        if model is None or isinstance(model, str):
            model = create_model(model or DEFAULT_MODEL)  # default variant, with its fallback
        self.options = options
        self.device = pick_device(options.device)
        self.model = model.to(self.device).eval()
        self.radius = int(getattr(model, "temporal_radius", DEFAULT_RADIUS))
        #: Frames enhanced per model call (at most: see :meth:`chunk_for`).
        self.chunk = int(options.chunk or getattr(model, "stream_chunk", DEFAULT_CHUNK))
        #: ``"yuv420"`` or ``"rgb"``: what the model takes.
        self.domain = str(getattr(model, "domain", "rgb"))
        self._targets = "targets" in inspect.signature(model.forward).parameters
        #: Whether the model's shrinkage can run once per frame of a stream (:meth:`_prefiltered_window`).
        self._prefilters = ("prefiltered" in inspect.signature(model.forward).parameters
                            and getattr(model, "shrink", None) is not None)
        #: How many times larger the output is than the input (4 for CAVSR).
        self.scale = int(getattr(model, "scale", 1))
        if self.scale > 1 and self.domain != "rgb":
            raise ConfigError(f"{type(model).__name__}: super-resolution models take RGB frames")
        threshold = options.pass_through_qp
        if threshold is None:
            threshold = getattr(model, "pass_through_qp", None)
        if self.scale > 1:
            threshold = None  # a super-resolved frame cannot be the input passed through
        #: Frames at or below this QP are passed through unchanged (None: none are).
        self.pass_through_qp = None if threshold is None or threshold < 0 else float(threshold)
        self._fallback: Enhancer | None = None
        #: ``{"entry": manifest entry, "from_crf": CRF}`` of the weights for high-CRF streams, or None.
        self.high_crf = getattr(model, "high_crf", None) if options.high_crf else None
        self._high: Enhancer | None = None
        #: ``fp32`` or ``bf16``: how the model runs.
        self.precision = options.precision or str(getattr(model, "inference_precision", "fp32"))
        if self.domain == "y" and not hasattr(model, "streamer"):
            raise ConfigError(f"{type(model).__name__} works on luma but has no streamer()")

    def fallback(self) -> Enhancer:
        """The enhancer for input this model cannot take (not 4:2:0), with the same options.

        Only when the variant was left to the default (``model.fallback_variant``, see
        :func:`codecave.models.create_model`); built on first use.

        Raises:
            UnsupportedVideoError: the model was chosen explicitly and has no fallback.
        """
        from codecave.errors import UnsupportedVideoError
        from codecave.models.registry import DEFAULT_MODEL, create_model

        variant = getattr(self.model, "fallback_variant", None)
        if variant is None:
            raise UnsupportedVideoError(f"{getattr(self.model, 'variant', 'this model')} takes only YUV 4:2:0 input")
        if self._fallback is None:
            self._fallback = Enhancer(create_model(DEFAULT_MODEL, variant=variant), self.options)
        return self._fallback

    def for_crf(self, crf: float) -> Enhancer:
        """The enhancer for a stream of this sequence CRF: the one with the high-CRF weights
        (``self.high_crf``; built on first use, same options) at or above their switch
        point, else this one. Where the high-CRF weights have no pass-through QP of their
        own, frames at or below the main weights' threshold are passed through there too
        (they were never validated at such QPs)."""
        from codecave.models.registry import create_model_entry

        if self.high_crf is None or crf < float(self.high_crf["from_crf"]):
            return self
        if self._high is None:
            model = create_model_entry(str(self.high_crf["entry"]))
            if model.pass_through_qp is None:
                model.pass_through_qp = getattr(self.model, "pass_through_qp", None)
            model.fallback_variant = getattr(self.model, "fallback_variant", None)
            self._high = Enhancer(model, self.options)
        return self._high

    def for_input(self, is_420: bool) -> Enhancer:
        """The enhancer that takes this input: :meth:`fallback` when this is a YUV model
        left to the default and the input is not 4:2:0, else this one."""
        if self.domain in ("yuv420", "y") and not is_420 and getattr(self.model, "fallback_variant", None):
            return self.fallback()
        return self

    def passed_through(self, qp: np.ndarray, crf: float) -> np.ndarray:
        """Which frames are passed through unchanged (see ``EnhanceOptions.pass_through_qp``).

        Args:
            qp: ``(n,)`` frame QPs (NaN where unknown).
            crf: the sequence CRF, used where a QP is unknown or hidden (slice-type mode).

        Returns:
            ``(n,)`` bool.
        """
        qp = np.asarray(qp, dtype=np.float64)
        if self.pass_through_qp is None:
            return np.zeros(qp.shape, bool)
        if self.options.slice_type:
            qp = np.full(qp.shape, np.nan)
        return np.where(np.isnan(qp), float(crf), qp) <= self.pass_through_qp

    def holds_back(self, crf: float) -> bool:
        """Whether a luma model (``domain == "y"``) passes a whole stream through: its
        sequence QP/CRF is at or below ``pass_through_qp``. Luma models take no frame QPs
        (HEVC and AV1 files export none), so they hold back per sequence, not per frame."""
        return self.domain == "y" and self.pass_through_qp is not None and crf <= self.pass_through_qp

    # -- in-memory clips -------------------------------------------------------------------

    def enhance_clip(self, frames: np.ndarray, priors: dict[str, np.ndarray], crf: float,
                     bit_depth: int = 8) -> np.ndarray:
        """Enhance a whole decoded clip held in memory, in the model's domain.

        Args:
            frames: for RGB models ``(T, H, W, 3)`` uint8 RGB; for YUV models
                ``(T, 24, H/4, W/4)`` packed 4:2:0 codes (a prepared ``yuv420`` dataset's
                ``decoded``, :func:`codecave.grid.pack_planes`).
            priors: stacked compact priors of the same frames
                (:func:`~codecave.codec.rasterize.stack_compact`).
            crf: sequence CRF (see :func:`~codecave.codec.priors.sequence_crf`).
            bit_depth: bits per sample of packed codes.

        Returns:
            Enhanced frames, same shape and dtype as ``frames``.

        Raises:
            ConfigError: ``frames`` are not laid out as the model's domain wants (RGB frames
                for a YUV model or packed codes for an RGB one).
        """
        packed = frames.ndim == 4 and frames.shape[1] == 24
        rgb = frames.ndim == 4 and frames.shape[-1] == 3
        if (self.domain in ("yuv420", "y") and not packed) or (self.domain == "rgb" and not rgb):
            want = "(T, 24, H/4, W/4) packed 4:2:0 codes" if self.domain != "rgb" else "(T, H, W, 3) RGB"
            raise ConfigError(f"frames of shape {tuple(frames.shape)}: {getattr(self.model, 'variant', 'the model')} "
                              f"takes {want}")
        if self.domain == "y":
            return self._luma_clip(frames, crf, bit_depth)
        other = self.for_crf(crf)
        if other is not self:
            return other.enhance_clip(frames, priors, crf, bit_depth)
        n = len(frames)
        s = self.scale
        out = np.empty((n, s * frames.shape[1], s * frames.shape[2], 3), frames.dtype) if s > 1 else np.empty_like(frames)
        sequence = self._adapt(crf)
        chunk = self.chunk_for(*((GRID * frames.shape[2], GRID * frames.shape[3]) if packed else frames.shape[1:3]))
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            lo, hi = max(0, a - self.radius), min(n, b + self.radius)
            passed = self.passed_through(priors["qp"][a:b], crf)
            if s == 1:
                out[a:b] = frames[a:b]
            if passed.all():
                continue
            window = {k: v[lo:hi] for k, v in priors.items()}
            clip = np.asarray(frames[lo:hi])
            if self.domain == "yuv420":
                enhanced = self._run_packed(clip, window, crf, sequence, (a - lo, b - lo), bit_depth)
            else:
                enhanced = self._run(clip, window, crf, sequence, (a - lo, b - lo))
            out[a:b][~passed] = enhanced[~passed]
        return out

    def chunk_for(self, height: int, width: int) -> int:
        """Frames per model call for pictures of ``height x width`` luma pixels: ``chunk``, or
        fewer where the model bounds the pixels of a call (``model.stream_pixels``: PnP-VCVE
        ``fast`` takes 8 frames of 640x360, 4 of 1280x720; README, "Enhance speed and memory")."""
        pixels = getattr(self.model, "stream_pixels", None)
        if self.options.chunk or not pixels:
            return self.chunk
        return max(1, min(self.chunk, int(pixels) // max(1, height * width)))

    # -- streams ---------------------------------------------------------------------------

    def stream(self, frames: Iterable[CodedFrame], crf: float | None = None,
               encoder: object | None = None, report: dict[str, object] | None = None,
               output: str = "rgb", crf_source: str = "given") -> Iterator[np.ndarray] | Iterator[YUVPlanes]:
        """Enhance frames as they are decoded, with bounded memory.

        Args:
            frames: coded frames in display order (e.g. a :class:`~codecave.codec.reader.VideoReader`).
            crf: sequence CRF; when None it comes from ``encoder`` (the stream's
                encoder settings) or is estimated from the frame QPs of the first chunk.
            encoder: :class:`~codecave.codec.priors.EncoderSettings` of the stream, if known.
            report: if given, receives ``crf`` and its ``source``, ``passed_through``:
                how many frames were passed through unchanged (``EnhanceOptions.pass_through_qp``),
                ``variant``: the model variant that ran, ``pass_through_qp``: its threshold,
                and ``weights``: the manifest entry of other weights that took the stream
                (the default's high-CRF weights, :meth:`for_crf`), when they did.
            output: ``"rgb"`` yields ``(H, W, 3)`` uint8 RGB (what downstream vision
                models want); ``"yuv420"`` yields :class:`~codecave.codec.priors.YUVPlanes`
                at the input's bit depth (what an encoder wants).
            crf_source: what ``report`` says a given ``crf`` came from.

        Yields:
            One enhanced picture per input frame, in order.

        Frames that are not 4:2:0 go to :meth:`fallback` (PnP-VCVE ``small``, an RGB
        model) when the variant was left to the default.

        Raises:
            UnsupportedVideoError: a YUV model chosen explicitly meets frames that are
                not 4:2:0. (RGB models, the fallback included, give ``output="yuv420"``
                as 8-bit 4:2:0 planes converted as the writer converts RGB.)
        """
        if output not in ("rgb", "yuv420"):
            raise ConfigError(f"output {output!r}: use rgb or yuv420")
        it = iter(frames)
        head = next(it, None)
        if head is None:
            return
        it = chain([head], it)
        if report is not None:
            report.update(variant=getattr(self.model, "variant", None), pass_through_qp=self.pass_through_qp)
        fallback = self.for_input(head.has_planes)
        if fallback is not self:
            log.warning("pixel format %s is not YUV 4:2:0: enhancing with PnP-VCVE %s instead of %s",
                        head.pix_fmt, fallback.model.variant, self.model.variant)
            yield from fallback.stream(it, crf, encoder, report, output)
            return
        if self.domain == "y":
            yield from self._stream_luma(it, crf, encoder, report, output)
            return
        buffer: deque[tuple[CodedFrame, CompactPriors]] = deque()
        chunk = self.chunk_for(head.height, head.width)
        kept: dict[int, torch.Tensor] = {}  # this stream's prefiltered frames by index
        done = 0          # frames already yielded
        first = 0         # index of buffer[0] in the stream
        sequence = None
        adapted = False
        exhausted = False
        while not exhausted or done < first + len(buffer):
            while not exhausted and len(buffer) < done - first + chunk + self.radius:
                try:
                    frame = next(it)
                except StopIteration:
                    exhausted = True
                    break
                buffer.append((frame, compact_priors(frame.priors, frame.height, frame.width)))
            if not adapted:
                adapted = True
                source = crf_source
                if crf is None:
                    crf, source = sequence_crf(encoder, [c.qp for _, c in buffer], [c.frame_type for _, c in buffer])
                    log.info("sequence CRF %.1f (%s)", crf, source)
                if report is not None:
                    report.update(crf=crf, source=source)
                other = self.for_crf(crf)
                if other is not self:  # nothing yielded yet: the other weights take the whole stream
                    log.info("sequence CRF %.1f >= %g: enhancing with the high-CRF weights (%s)", crf,
                             float(self.high_crf["from_crf"]), self.high_crf["entry"])
                    if report is not None:
                        report["weights"] = self.high_crf["entry"]
                    yield from other.stream(chain([f for f, _ in buffer], it), crf, encoder, report, output,
                                            crf_source=source)
                    return
                sequence = self._adapt(crf)
            end = min(done + chunk, first + len(buffer))
            if end <= done:
                break
            items = list(buffer)
            stacked = stack_compact([c for _, c in items])
            targets = (done - first, end - first)
            if report is not None:
                passed = self.passed_through(stacked["qp"][targets[0] : targets[1]], crf)
                report["passed_through"] = int(report.get("passed_through", 0)) + int(passed.sum())
            pictures = self._enhance_items([f for f, _ in items], stacked, crf, sequence, targets, output,
                                           (kept, first))
            release_memory()
            yield from pictures
            done = end
            while first < done - self.radius:
                buffer.popleft()
                first += 1

    def _enhance_items(self, frames: list[CodedFrame], stacked: dict[str, np.ndarray], crf: float,
                       sequence: object, targets: tuple[int, int], output: str,
                       kept: tuple[dict[int, torch.Tensor], int] | None = None) -> list[np.ndarray] | list[YUVPlanes]:
        """Enhance ``frames[targets[0]:targets[1]]`` with the others as context (``kept``: the
        stream's prefiltered frames and the stream index of ``frames[0]``, for
        :meth:`_prefiltered_window`)."""
        lo, hi = targets
        passed = self.passed_through(stacked["qp"][lo:hi], crf)
        if self.domain == "yuv420":
            planes = [f.planes for f in frames]
            out = list(planes[lo:hi])
            if not passed.all():
                depth = planes[0].bit_depth
                h, w = planes[0].height, planes[0].width
                packed = np.stack([pack_planes(_pad(p)) for p in planes])
                codes = self._run_packed(packed, stacked, crf, sequence, targets, depth, kept)
                tags = {"color_range": planes[0].color_range, "color_space": planes[0].color_space}
                out = [p if keep else crop_yuv(unpack_planes(c, depth, **tags), h, w)
                       for p, c, keep in zip(out, codes, passed)]
            return [planes_to_rgb(p) for p in out] if output == "rgb" else out
        rgb = np.stack([f.rgb for f in frames])
        enhanced = list(rgb[lo:hi])
        if not passed.all():
            enhanced = [e if keep else r for e, r, keep in
                        zip(enhanced, self._run(rgb, stacked, crf, sequence, targets), passed)]
        if output == "yuv420":
            space = frames[0].planes.color_space if frames[0].has_planes else None
            return [f.planes if keep and f.has_planes else rgb_to_yuv420_like_encoder(e, space)
                    for f, e, keep in zip(frames[lo:hi], enhanced, passed)]
        return enhanced

    @torch.inference_mode()
    def _adapt(self, crf: float) -> object | None:
        adapt = getattr(self.model, "adapt", None)
        if adapt is None:
            return None
        return adapt(torch.tensor([float(crf)], device=self.device))

    # -- YUV 4:2:0 models ------------------------------------------------------------------

    def _run_packed(self, codes: np.ndarray, stacked: dict[str, np.ndarray], crf: float, sequence: object,
                    targets: tuple[int, int], bit_depth: int,
                    kept: tuple[dict[int, torch.Tensor], int] | None = None) -> np.ndarray:
        """Enhance packed codes ``(n, 24, h, w)``; returns the codes of the target frames, tile by tile
        (``kept``: see :meth:`_enhance_items`; whole frames only)."""
        lo, hi = targets
        gh, gw = codes.shape[-2:]
        out = np.empty((hi - lo, *codes.shape[1:]), dtype=codes.dtype)
        cell = GRID
        tile, ov = self.options.tile // cell, self.options.tile_overlap // cell
        for y0, y1 in _tiles(gh, tile):
            for x0, x1 in _tiles(gw, tile):
                ya, xa = (max(0, y0 - ov), max(0, x0 - ov)) if tile else (0, 0)
                yb, xb = (min(gh, y1 + ov), min(gw, x1 + ov)) if tile else (gh, gw)
                window = crop_compact(stacked, ya * cell, xa * cell, (yb - ya) * cell, (xb - xa) * cell)
                result = self._packed_call(codes[:, :, ya:yb, xa:xb], window, crf, sequence, targets, bit_depth,
                                           None if tile else kept)
                out[:, :, y0:y1, x0:x1] = result[:, :, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
        return out

    @torch.inference_mode()
    def _packed_call(self, codes: np.ndarray, stacked: dict[str, np.ndarray], crf: float, sequence: object,
                     targets: tuple[int, int], bit_depth: int,
                     kept: tuple[dict[int, torch.Tensor], int] | None = None) -> np.ndarray:
        gh, gw = codes.shape[-2:]
        priors = {k: v.unsqueeze(0).to(self.device) for k, v in grid_priors(stacked, gh, gw).items()}
        if self.options.slice_type:
            priors["qp"] = torch.full_like(priors["qp"], float("nan"))
        priors["crf"] = torch.tensor([float(crf)], device=self.device)
        x = to_unit(torch.from_numpy(np.array(codes)).to(self.device), bit_depth)
        kwargs: dict[str, object] = {"sequence": sequence} if sequence is not None else {}
        if kept is not None and self._prefilters:
            x = self._prefiltered_window(x, priors, *kept)
            kwargs["prefiltered"] = True
        with self._autocast():
            if self._targets:
                y = self.model(x.unsqueeze(0), priors, targets=targets, **kwargs)[0]
            else:
                y = self.model(x.unsqueeze(0), priors, **kwargs)[0, targets[0] : targets[1]]
        return to_codes(y.float(), bit_depth).cpu().numpy().astype(codes.dtype)

    def _prefiltered_window(self, x: torch.Tensor, priors: dict[str, torch.Tensor], cache: dict[int, torch.Tensor],
                            start: int) -> torch.Tensor:
        """``x`` ``(n, 24, h, w)``, frames ``start..start+n-1`` of a stream, through the model's
        ``prefilter`` (PnP-VCVE's shrinkage stage), each frame once per stream: the context
        frames a call shares with the previous one come from ``cache`` (the stream's own; it keeps
        copies of the last ``2 x radius`` frames only, the ones the next call can share)."""
        n = len(x)
        missing = [i for i in range(n) if start + i not in cache]
        window = x  # this call's own tensor: filled in place
        if missing:
            index = torch.tensor(missing, device=x.device)
            picked = {k: priors[k][:, index] for k in ("qp", "frame_type")}
            window[index] = self.model.prefilter(x[index].unsqueeze(0), {**picked, "crf": priors["crf"]})[0]
        for i in range(n):
            if start + i in cache:
                window[i] = cache[start + i]
        cache.clear()
        cache.update({start + i: window[i].clone() for i in range(max(0, n - 2 * self.radius), n)})
        return window

    # -- recurrent luma models (VIG) ---------------------------------------------------------

    def _autocast(self) -> object:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _luma_stream(self, crf: float) -> object:
        return self.model.streamer(torch.tensor([float(crf)], device=self.device))

    @torch.inference_mode()
    def _luma_clip(self, codes: np.ndarray, crf: float, bit_depth: int) -> np.ndarray:
        """Packed codes ``(T, 24, h, w)`` with the Y plane enhanced frame by frame (recurrent)."""
        from codecave.grid import pack, unpack

        if self.holds_back(crf):
            return np.array(codes)
        x = to_unit(torch.from_numpy(np.array(codes)).to(self.device), bit_depth)
        y, u, v = unpack(x)
        stream, out = self._luma_stream(crf), []
        with self._autocast():
            for t in range(len(codes)):
                ready = stream.push(y[t][None, None])
                if ready is not None:
                    out.append(ready[0, 0].float())
            out += [r[0, 0].float() for r in stream.flush()]
        return to_codes(pack(torch.stack(out), u, v), bit_depth).cpu().numpy().astype(codes.dtype)

    def _stream_luma(self, it: Iterator[CodedFrame], crf: float | None, encoder: object | None,
                     report: dict[str, object] | None, output: str) -> Iterator[np.ndarray] | Iterator[YUVPlanes]:
        """Stream a luma model: each frame's Y plane once, chroma as decoded (every frame as
        decoded when the model holds back, :meth:`holds_back`)."""
        from codecave.errors import UnsupportedVideoError

        head: list[CodedFrame] = []
        for frame in it:
            head.append(frame)
            if len(head) == self.chunk:
                break
        source = "given"
        if crf is None:
            compact = [compact_priors(f.priors, f.height, f.width) for f in head]
            crf, source = sequence_crf(encoder, [c.qp for c in compact], [c.frame_type for c in compact])
            log.info("sequence QP/CRF %.1f (%s)", crf, source)
        if report is not None:
            report.update(crf=crf, source=source, passed_through=0)
        hold = self.holds_back(crf) and not source.startswith("default")  # 23 is a guess, not a measured QP
        if hold:
            log.info("sequence QP/CRF %.1f is at or below %.1f: passing the stream through", crf, self.pass_through_qp)
        stream = None if hold else self._luma_stream(crf)
        pending: deque[YUVPlanes] = deque()

        def emit(y: torch.Tensor) -> np.ndarray | YUVPlanes:
            planes = pending.popleft()
            peak = (1 << planes.bit_depth) - 1
            luma = y[0, 0, : planes.height, : planes.width].clamp(0, 1).mul(peak).round()
            dtype = planes.y.dtype
            out = dataclasses.replace(planes, y=luma.to(torch.int32).cpu().numpy().astype(dtype))
            return planes_to_rgb(out) if output == "rgb" else out

        for frame in chain(head, it):
            if not frame.has_planes:
                raise UnsupportedVideoError(f"{getattr(self.model, 'variant', 'this model')} takes only "
                                            f"YUV 4:2:0 input, not {frame.pix_fmt}")
            if stream is None:  # held back: the decoder's frame as it is
                if report is not None:
                    report["passed_through"] = int(report["passed_through"]) + 1
                yield planes_to_rgb(frame.planes) if output == "rgb" else frame.planes
                continue
            pending.append(frame.planes)
            ready = self._push_luma(stream, frame.planes)
            if ready is not None:
                yield emit(ready)
        for ready in [] if stream is None else self._flush_luma(stream):
            yield emit(ready)

    @torch.inference_mode()
    def _push_luma(self, stream: object, planes: YUVPlanes) -> torch.Tensor | None:
        """One frame's Y plane into a luma stream, padded to multiples of 4 by edge replication
        (cropped back on the way out); the frame it completes, if any."""
        peak = (1 << planes.bit_depth) - 1
        y = torch.from_numpy(planes.y.astype(np.float32)).to(self.device).div(peak)[None, None]
        ph, pw = -(-planes.height // 4) * 4, -(-planes.width // 4) * 4
        if (ph, pw) != (planes.height, planes.width):
            y = torch.nn.functional.pad(y, (0, pw - planes.width, 0, ph - planes.height), mode="replicate")
        with self._autocast():
            out = stream.push(y)
        return None if out is None else out.float()

    @torch.inference_mode()
    def _flush_luma(self, stream: object) -> list[torch.Tensor]:
        with self._autocast():
            return [y.float() for y in stream.flush()]

    # -- RGB models --------------------------------------------------------------------------

    def _run(self, frames: np.ndarray, stacked: dict[str, np.ndarray], crf: float, sequence: object,
             targets: tuple[int, int]) -> np.ndarray:
        """One model call per tile on ``(n, H, W, 3)`` frames, the others context; returns the
        uint8 frames ``targets[0]:targets[1]`` (``scale`` times larger for super-resolution)."""
        h, w = frames.shape[1:3]
        s = self.scale
        out = np.empty((targets[1] - targets[0], s * h, s * w, 3), frames.dtype)
        ov = self.options.tile_overlap
        for y0, y1 in _tiles(h, self.options.tile):
            for x0, x1 in _tiles(w, self.options.tile):
                ya, xa = (max(0, y0 - ov), max(0, x0 - ov)) if self.options.tile else (0, 0)
                yb, xb = (min(h, y1 + ov), min(w, x1 + ov)) if self.options.tile else (h, w)
                tile = self._model_call(frames[:, ya:yb, xa:xb], crop_compact(stacked, ya, xa, yb - ya, xb - xa),
                                        crf, sequence, targets)
                out[:, s * y0 : s * y1, s * x0 : s * x1] = tile[:, s * (y0 - ya) : s * (y1 - ya),
                                                                s * (x0 - xa) : s * (x1 - xa)]
        return out

    @torch.inference_mode()
    def _model_call(self, frames: np.ndarray, stacked: dict[str, np.ndarray], crf: float,
                    sequence: object, targets: tuple[int, int]) -> np.ndarray:
        h, w = frames.shape[1:3]
        priors = {k: v.unsqueeze(0).to(self.device) for k, v in dense_priors(stacked, h, w).items()}
        if self.options.slice_type:
            priors["qp"] = torch.full_like(priors["qp"], float("nan"))
        priors["crf"] = torch.tensor([float(crf)], device=self.device)
        x = torch.from_numpy(np.array(frames)).to(self.device).permute(0, 3, 1, 2).float().div(255)
        kwargs: dict[str, object] = {"sequence": sequence} if sequence is not None else {}
        with self._autocast():
            if self._targets:
                y = self.model(x.unsqueeze(0), priors, targets=targets, **kwargs)[0].float()
            else:
                y = self.model(x.unsqueeze(0), priors, **kwargs)[0, targets[0] : targets[1]].float()
        return y.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _pad(planes: YUVPlanes) -> YUVPlanes:
    """Edge-replicate planes to whole macroblocks (the one padding rule of :mod:`codecave.grid`);
    :func:`codecave.grid.crop_yuv` undoes it."""
    ph, pw = padded_size(planes.height, planes.width)
    if (ph, pw) == (planes.height, planes.width):
        return planes
    y, u, v = (torch.from_numpy(p.astype(np.int32)) for p in (planes.y, planes.u, planes.v))
    y, u, v = pad_planes(y, u, v)
    dtype = planes.y.dtype
    return dataclasses.replace(planes, y=y.numpy().astype(dtype), u=u.numpy().astype(dtype),
                               v=v.numpy().astype(dtype))


#: Output encoding when none is given: visually lossless x264 in the source's pixel format.
DEFAULT_OUTPUT = {"codec": "x264", "crf": 14.0, "preset": "medium", "pix_fmt": "source"}


@dataclass
class EnhanceResult:
    """What :func:`enhance_video` wrote.

    Attributes:
        output: the finished file.
        frames: frames enhanced and written.
        seconds: wall time.
        crf: sequence CRF the model was conditioned on, and ``crf_source`` where it came from.
        decode_problems: when the input did not decode cleanly (``on_damage`` keep or
            skip), a summary line and one line per damaged span (frames and times).
        passed_through: frames passed through unchanged (their QP at or below
            ``pass_through_qp``, where the model was measured not to help).
        pass_through_qp: the threshold in force (None: none).
        variant: the model variant that ran (PnP-VCVE ``small`` when the default ``fast``
            met input that is not 4:2:0).
        skipped: damaged frames left out (``on_damage="skip"``).
        weights: the manifest entry of other weights that took the stream (the default's
            high-CRF weights, ``pnp_vcve_fast_high``, at or above their switch point), else None.
    """

    output: Path
    frames: int
    seconds: float
    crf: float
    crf_source: str
    decode_problems: list[str] = field(default_factory=list)
    passed_through: int = 0
    pass_through_qp: float | None = None
    variant: str | None = None
    skipped: int = 0
    weights: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def _temporary_path(output: Path) -> Path:
    """Hidden, beside OUT, named after this host and process (folders may be shared)."""
    return output.with_name(f".{output.stem}.codecave-partial-{_HOST}-{os.getpid()}{output.suffix}")


_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def _remove_stale_partials(output: Path) -> None:
    """Remove the partial files of ``output`` left by runs of this host that no longer
    exist (killed with SIGKILL or by a power cut); those of running processes, and all
    of other hosts (a shared folder), are left alone."""
    prefix = f".{output.stem}.codecave-partial-{_HOST}-"
    for path in output.parent.glob(f"{glob.escape(prefix)}*{glob.escape(output.suffix)}"):
        pid = path.name[len(prefix):len(path.name) - len(output.suffix)]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            log.info("%s: removing a partial file of an interrupted run", path)
            path.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


@contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Within, SIGTERM (what ``timeout``, ``docker stop`` and batch schedulers send) ends
    the run like Ctrl-C does: the partial output is removed, then the process exits with
    status 143. Only the main thread can take signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _check_paths(source: Path, output: Path, overwrite: bool) -> None:
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if output.exists() and os.path.samefile(source, output) or output.resolve() == source.resolve():
        raise OutputExistsError(f"{output}: the output is the input; choose another file name")
    if output.is_dir():
        raise OutputExistsError(f"{output}: is a folder; give a file name")
    if output.exists() and not overwrite:
        raise OutputExistsError(f"{output}: exists; pass --overwrite (overwrite=True) to replace it")
    if not output.parent.exists():
        raise FileNotFoundError(f"{output.parent}: no such folder")


def enhance_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: nn.Module | str | None = None,
    options: EnhanceOptions = EnhanceOptions(),
    encode: object | None = None,
    frames: tuple[int, int | None] | None = None,
    crf: float | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_damage: str = "stop",
) -> EnhanceResult:
    """Enhance every frame of a video file into a new file.

    Args:
        source: any video the codec reader supports.
        output: file to write (container from the extension). Never the source.
        model: model or registered name (default: the shipped PnP-VCVE).
        options: chunking, tiling, device.
        encode: :class:`~codecave.codec.encode.EncodeSettings` for the output
            (default :data:`DEFAULT_OUTPUT`).
        frames: ``(start, end)`` display indices to enhance (end exclusive, None = to the end).
        crf: sequence CRF to condition on (default: from the file, see
            :func:`~codecave.codec.priors.sequence_crf`).
        overwrite: replace an existing output.
        progress: show a progress bar with frames per second and time left.
        on_damage: what to do when the source is damaged (see
            :class:`~codecave.codec.reader.DecodeReport`: frames missing, undecodable or
            concealed by the decoder), which a full decode finds before anything is
            enhanced: ``"stop"`` (default) writes nothing and raises, naming the lost frames
            and time ranges; ``"keep"`` enhances every frame that decodes (concealed ones
            too) and reports the damage; ``"skip"`` also leaves out the concealed frames,
            keeping the other frames' timestamps.

    Returns:
        An :class:`EnhanceResult`.

    Raises:
        OutputExistsError: output exists (without ``overwrite``) or is the source.
        VideoError: the source is not a readable video (:class:`CorruptVideoError`: it is
            damaged and ``on_damage`` is ``"stop"``).
        EncoderError: the output cannot be written.
    """
    from codecave.codec.convert import is_420
    from codecave.codec.encode import EncodeSettings
    from codecave.codec.reader import check_input_file, open_video, read_info, scan_video
    from codecave.codec.writer import VideoWriter, choose_codec, trial_write

    if on_damage not in DAMAGE_POLICIES:
        raise ConfigError(f"on_damage {on_damage!r}: expected one of {', '.join(DAMAGE_POLICIES)}")
    source, output = Path(source), Path(output)
    check_input_file(source)
    _check_paths(source, output, overwrite)
    # Everything that can be known before the first frame is checked before it: the
    # output's container, codec and folder, and the source's damage.
    source_info = read_info(source)  # a file that is not a video is named as such here (NotAVideoError)
    if encode is None:
        settings = EncodeSettings(**{**DEFAULT_OUTPUT, "codec": choose_codec(output, None, source_info.hdr)})
    else:
        choose_codec(output, encode.codec)
        settings = encode
    _remove_stale_partials(output)
    enhancer = model if isinstance(model, Enhancer) else Enhancer(model, options)
    trial_write(output, source, settings, enhancer.scale)
    first, last = frames if frames else (0, None)
    damage = scan_video(source).within(first, last)
    if not damage.ok and on_damage == "stop":
        raise CorruptVideoError(damage_message(source, damage))
    skipped = 0
    start_time = time.perf_counter()
    tmp = _temporary_path(output)
    writer: object | None = None
    with _terminate_cleanly():
        try:
            with open_video(source) as video:
                info = video.info
                # (pts, time, kept) per frame handed to the enhancer; excerpts get one frame of
                # context on each side so their edge frames see the neighbours a full run sees.
                timing: deque[tuple[int | None, float | None, bool]] = deque()
                lo = max(0, first - enhancer.radius)
                hi = None if last is None else last + enhancer.radius

                def selected() -> Iterator[CodedFrame]:
                    nonlocal skipped
                    for f in video:
                        if f.index < lo:
                            continue
                        kept = f.index >= first and (last is None or f.index < last)
                        if on_damage == "skip" and f.corrupt:  # the reading that is enhanced decides
                            skipped += kept
                            continue
                        if hi is not None and f.index >= hi:
                            break
                        timing.append((f.pts, f.time, kept))
                        yield f

                writer = None
                bar = _bar(info.frames, first, last) if progress else None
                crf_info: dict[str, object] = {}
                try:
                    # YUV models write the planes they enhanced; RGB models write RGB, converted once by the writer.
                    planes = is_420(info.pix_fmt) and enhancer.domain == "yuv420"
                    for out in enhancer.stream(selected(), crf=crf, encoder=info.encoder, report=crf_info,
                                               output="yuv420" if planes else "rgb"):
                        pts, t, kept = timing.popleft()
                        if not kept:
                            continue
                        if writer is None:
                            writer = VideoWriter(tmp, source, settings, rotation=info.rotation, name=output,
                                                 start=(t or 0.0) if frames else None, planes=planes, hdr=info.hdr,
                                                 first_time=t, scale=enhancer.scale)
                        writer.write(out, pts, t)
                        if bar is not None:
                            bar.update(1)
                finally:
                    if bar is not None:
                        bar.close()
                report = video.report.within(first, last)
                if not report.ok and on_damage == "stop":  # damage the first decode did not show
                    raise CorruptVideoError(damage_message(source, report))
                if writer is None:
                    raise CorruptVideoError(f"{source}: no frames in the range {first}:{'' if last is None else last}")
                writer.close()
            try:
                os.replace(tmp, output)
            except OSError as exc:
                raise EncoderError(f"{output}: cannot be written ({exc.strerror})") from exc
        except BaseException:
            if writer is not None:
                writer.abort()
            tmp.unlink(missing_ok=True)
            raise
    problems = [] if report.ok else [report.summary(), *report.details()]
    for line in problems:
        log.warning("%s: %s", source, line)
    return EnhanceResult(output, writer.frames, time.perf_counter() - start_time, float(crf_info["crf"]),
                         str(crf_info["source"]), problems, int(crf_info.get("passed_through", 0)),
                         crf_info.get("pass_through_qp"), crf_info.get("variant"), int(skipped),
                         crf_info.get("weights"))


#: ``on_damage`` choices of :func:`enhance_video`.
DAMAGE_POLICIES = ("stop", "keep", "skip")


def damage_message(source: Path, report: object) -> str:
    """What a damaged source lost, and what the user can do, for the error of ``on_damage="stop"``."""
    details = report.details()  # type: ignore[attr-defined]
    shown = "; ".join(details[:8]) + (f"; and {len(details) - 8} more" if len(details) > 8 else "")
    return (f"{source}: {report.summary()} ({shown}); nothing was written. --on-damage keep "  # type: ignore[attr-defined]
            "(on_damage='keep') enhances every frame that decodes, --on-damage skip also leaves out the "
            "concealed ones")


def _bar(total: int | None, first: int, last: int | None) -> object:
    from tqdm import tqdm

    if total is not None:
        total = (min(total, last) if last is not None else total) - first
    return tqdm(total=total, unit="frame", dynamic_ncols=True, desc="enhancing")
