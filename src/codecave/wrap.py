"""Encode through a neural wrapper's pre-processor: ``codecave wrap encode``.

The pre-processor ``P`` of a :class:`~codecave.models.neural_wrapper.NeuralWrapper`
changes the source before a standard encoder; the file it makes is an ordinary
bitstream any player decodes. Its post-processor runs afterwards through
``codecave enhance --model neural_wrapper`` (paper: "Perceptual Video Compression with
Neural Wrapping", CVPR 2025).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codecave.codec.encode import EncodeResult, EncodeSettings, encode_frames
from codecave.codec.priors import YUVPlanes
from codecave.engine.distributed import pick_device
from codecave.errors import ConfigError, EncoderError
from codecave.grid import crop_planes, pack, pad_planes, to_codes, unpack

log = logging.getLogger(__name__)

#: Frames pre-processed per model call.
CHUNK = 8


def _preprocess_chunk(model: nn.Module, chunk: list[YUVPlanes], device: torch.device) -> list[YUVPlanes]:
    h, w = chunk[0].y.shape
    y, u, v = (torch.from_numpy(np.stack([getattr(p, c) for p in chunk])).to(device).float() / 255 for c in "yuv")
    y, u, v = pad_planes(y, u, v)
    with torch.inference_mode():
        out = model.preprocess(pack(y, u, v).unsqueeze(0))[0]
    y, u, v = crop_planes(*unpack(out), h, w)
    y, u, v = (to_codes(p, 8).cpu().numpy() for p in (y, u, v))
    return [dataclasses.replace(p, y=y[i], u=u[i], v=v[i]) for i, p in enumerate(chunk)]


def preprocess_planes(model: nn.Module, pictures: Iterable[YUVPlanes], device: str = "auto") -> Iterator[YUVPlanes]:
    """Run a wrapper's pre-processor over 8-bit 4:2:0 pictures, frame by frame.

    Pictures are padded by edge replication to whole macroblocks, packed on the 4x4
    grid, pre-processed, cropped back and rounded to 8-bit codes (what the encoder takes).

    Args:
        model: a model with ``preprocess`` (:class:`~codecave.models.neural_wrapper.NeuralWrapper`).
        pictures: planes in display order, 8 bits.
        device: ``auto``, ``cpu`` or ``cuda``.

    Yields:
        Pre-processed planes, one per picture, with the input's range and matrix tags.

    Raises:
        ConfigError: the model has no pre-processor.
        EncoderError: a picture is not 8-bit.
    """
    if not hasattr(model, "preprocess"):
        raise ConfigError(f"{type(model).__name__} has no pre-processor; wrap encode takes a neural_wrapper model")
    dev = pick_device(device)
    model = model.to(dev).eval()
    chunk: list[YUVPlanes] = []
    for n, planes in enumerate(pictures):
        if planes.bit_depth != 8:
            raise EncoderError(f"picture {n} has {planes.bit_depth}-bit samples; the wrapper takes 8-bit 4:2:0")
        chunk.append(planes)
        if len(chunk) == CHUNK:
            yield from _preprocess_chunk(model, chunk, dev)
            chunk = []
    if chunk:
        yield from _preprocess_chunk(model, chunk, dev)


def wrap_encode(source: str | os.PathLike[str], output: str | os.PathLike[str], model: nn.Module,
                settings: EncodeSettings, *, max_frames: int | None = None, overwrite: bool = False,
                device: str = "auto", progress: bool = False) -> EncodeResult:
    """Pre-process a video and encode it with a standard encoder.

    Args:
        source: a video file, a folder of frames or a raw ``.yuv`` (as ``codecave prepare``
            reads them; non-4:2:0 sources are converted once to BT.601 4:2:0).
        output: the file to write (container from the extension).
        model: a neural wrapper (:func:`codecave.models.create_model` ``("neural_wrapper")``).
        settings: the encoder and its rate control.
        max_frames: encode only the first N frames.
        overwrite: replace an existing output.
        device: where the pre-processor runs.
        progress: show a progress bar.

    Returns:
        The encode's result (file, frames, bytes).

    Raises:
        ConfigError: the output exists (without ``overwrite``) or is the source, or the
            model has no pre-processor.
        DatasetError: the source cannot be read.
        EncoderError: the encoder failed or the source is not 8-bit.
    """
    from codecave.data.sources import discover_sources, read_frames

    out = Path(output)
    if out.exists() and out.resolve() == Path(source).resolve():
        raise ConfigError(f"{output}: the output would overwrite the source")
    if out.exists() and not overwrite:
        raise ConfigError(f"{output} exists; pass --overwrite to replace it")
    sources = discover_sources([source])
    if len(sources) != 1:
        raise ConfigError(f"{source}: expected one video, found {len(sources)} sources")
    pictures: Iterable[YUVPlanes] = read_frames(sources[0], max_frames=max_frames, planes=True)
    if progress:
        from tqdm import tqdm

        pictures = tqdm(pictures, unit="frame", desc="wrap encode")
    return encode_frames(preprocess_planes(model, pictures, device), out, settings)


__all__ = ["CHUNK", "preprocess_planes", "wrap_encode"]
