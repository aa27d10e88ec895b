"""VMAF of luma planes through ``vmaf-torch`` (a PyTorch re-implementation of Netflix's
VMAF v0.6.1: VIF, ADM (DLM) and motion features, the SVM of ``vmaf_v0.6.1.json``).

libvmaf is not available here, so agreement with libvmaf's scores is unmeasured; what
the tests check is that identical frames score 100 (from the second frame on: the first
has no motion feature, and vmaf-torch scores an identical first frame about 97.4) and
that the score falls as the CRF rises on a clip encoded with x264.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


def vmaf_y(distorted: np.ndarray, reference: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """VMAF of each frame of a clip (clipped to [0, 100], as libvmaf's default model).

    Args:
        distorted, reference: ``(T, H, W)`` luma codes of the same clip, in display order
            (the motion feature reads consecutive reference frames).
        bit_depth: bits per sample (codes are scaled to the 8-bit range VMAF expects).

    Returns:
        ``(T,)`` float64 scores.

    Raises:
        ValueError: the shapes differ or are not ``(T, H, W)``.
    """
    if distorted.shape != reference.shape or distorted.ndim != 3:
        raise ValueError(f"VMAF needs two (T, H, W) clips of one shape, got {distorted.shape} and {reference.shape}")
    scale = 255.0 / ((1 << bit_depth) - 1)
    ref = torch.from_numpy(np.asarray(reference, np.float32) * scale).unsqueeze(1)
    dist = torch.from_numpy(np.asarray(distorted, np.float32) * scale).unsqueeze(1)
    with torch.inference_mode():
        scores = _vmaf()(ref, dist)
    return scores.reshape(-1).double().numpy()


@functools.lru_cache(maxsize=1)
def _vmaf() -> torch.nn.Module:
    """vmaf-torch's VMAF (per-frame scores, motion on, clipped to [0, 100]), built once (it reads its SVM model)."""
    from vmaf_torch import VMAF

    return VMAF(temporal_pooling=False, enable_motion=True, clip_score=True)


__all__ = ["vmaf_y"]
