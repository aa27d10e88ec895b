"""Plug-and-play: feed any downstream callable (optical flow, a detector, a
super-resolver) the enhanced frames of a video, as PnP-VCVE puts enhancement in front of
a downstream model.

    import cv2
    from codecave.plug import plug

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = list(plug(lambda a, b: dis.calc(a, b, None), window=2, frames="y")("input.mp4"))

The same wrapper with ``enhance=False`` feeds the decoded frames as they are, so the
two can be compared on the same downstream work.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from codecave.errors import ConfigError

#: What the callable receives per frame.
FRAME_KINDS = ("rgb", "y", "yuv420")


class Plugged:
    """``fn`` called on the (enhanced) frames of a video, ``window`` frames at a time.

    Args:
        fn: any callable; it gets ``window`` consecutive frames as positional arguments
            (oldest first) and its results are yielded in order.
        enhancer: a :class:`codecave.enhance.Enhancer` (default: the shipped default model);
            ignored with ``enhance=False``.
        window: frames per call: 1 (each frame), 2 (pairs ``(t-1, t)``, e.g. optical flow) or
            more; the first call comes when ``window`` frames are there.
        frames: ``"rgb"``: ``(H, W, 3)`` uint8; ``"y"``: the luma plane ``(H, W)``;
            ``"yuv420"``: :class:`~codecave.codec.priors.YUVPlanes`. For 4:2:0 input and a
            YUV model (the default), and with ``enhance=False``, planes come at the
            video's bit depth (uint16 holding 10-bit values for 10-bit video: OpenCV's DIS
            takes 8-bit only) with no colour conversion; an RGB model (PnP-VCVE ``small``,
            the default's fallback for other input) gives 8-bit planes converted from its
            RGB output as the writer converts.
        enhance: False feeds the decoded frames unchanged (the comparison).
        crf: the sequence CRF to condition on (default: read from the file, as ``enhance``).

    Raises:
        ConfigError: an unknown ``frames`` or a ``window`` below 1.
    """

    def __init__(self, fn: Callable[..., Any], enhancer: object | None = None, *, window: int = 1,
                 frames: str = "rgb", enhance: bool = True, crf: float | None = None) -> None:
        if frames not in FRAME_KINDS:
            raise ConfigError(f"frames {frames!r}: use one of {', '.join(FRAME_KINDS)}")
        if window < 1:
            raise ConfigError(f"window {window}: must be at least 1")
        self.fn, self.window, self.frames, self.enhance, self.crf = fn, int(window), frames, bool(enhance), crf
        self._enhancer = enhancer

    @property
    def enhancer(self) -> object:
        """The enhancer in front (built on first use: the shipped default)."""
        if self._enhancer is None:
            from codecave.enhance import Enhancer

            self._enhancer = Enhancer()
        return self._enhancer

    def frames_of(self, video: str | os.PathLike[str]) -> Iterator[Any]:
        """The frames ``fn`` would get, one by one (enhanced unless ``enhance=False``)."""
        from codecave.codec.reader import open_video

        with open_video(video) as reader:
            if self.enhance:
                output = "rgb" if self.frames == "rgb" else "yuv420"
                pictures: Iterable[Any] = self.enhancer.stream(reader, crf=self.crf, encoder=reader.info.encoder,
                                                               output=output)
            else:
                pictures = (frame.rgb if self.frames == "rgb" else frame.planes for frame in reader)
            for picture in pictures:
                yield picture.y if self.frames == "y" else picture

    def __call__(self, video: str | os.PathLike[str]) -> Iterator[Any]:
        """``fn``'s result for every window of frames of ``video``, in order."""
        recent: deque[Any] = deque(maxlen=self.window)
        for picture in self.frames_of(video):
            recent.append(np.ascontiguousarray(picture) if isinstance(picture, np.ndarray) else picture)
            if len(recent) == self.window:
                yield self.fn(*recent)


def plug(fn: Callable[..., Any], enhancer: object | None = None, *, window: int = 1, frames: str = "rgb",
         enhance: bool = True, crf: float | None = None) -> Plugged:
    """Wrap ``fn`` so that calling the result on a video file yields ``fn``'s results on its
    enhanced frames; see :class:`Plugged` for the arguments."""
    return Plugged(fn, enhancer, window=window, frames=frames, enhance=enhance, crf=crf)


__all__ = ["FRAME_KINDS", "Plugged", "plug"]
