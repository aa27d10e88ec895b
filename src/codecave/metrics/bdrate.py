"""Bjøntegaard-delta rate (VCEG-M33), through the maintained ``bjontegaard`` package.

BD-rate is the mean difference in bitrate, in percent, between two rate-distortion
curves over their common quality range; negative means the test needs fewer bits
than the anchor for the same quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Interpolation used for every BD-rate codecave reports (piecewise cubic Hermite, as
#: in the JVET common test conditions' spreadsheet).
BD_METHOD = "pchip"


def bd_rate(rate_anchor: Sequence[float], quality_anchor: Sequence[float], rate_test: Sequence[float],
            quality_test: Sequence[float], method: str = BD_METHOD) -> float:
    """BD-rate of a test curve against an anchor curve, in percent.

    Args:
        rate_anchor, quality_anchor: the anchor's rate points (any positive unit: bits
            per pixel, kbps) and quality at each (PSNR, SSIM, VMAF...: higher is better).
        rate_test, quality_test: the test's, in the same units.
        method: ``pchip``, ``akima`` or ``cubic`` interpolation.

    Returns:
        The BD-rate in percent, or NaN when the curves' quality ranges do not overlap or a
        curve is not monotone enough to interpolate (an identical curve gives 0).

    Raises:
        ValueError: fewer than 4 points, or rates that are not positive.
    """
    import warnings

    import bjontegaard

    if min(len(rate_anchor), len(rate_test)) < 4:
        raise ValueError("BD-rate needs at least 4 rate points per curve")
    if min(*rate_anchor, *rate_test) <= 0:
        raise ValueError("BD-rate needs positive rates")
    if max(quality_test) <= min(quality_anchor) or max(quality_anchor) <= min(quality_test):
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(bjontegaard.bd_rate(list(rate_anchor), list(quality_anchor), list(rate_test),
                                              list(quality_test), method=method, require_matching_points=False))
    except (ValueError, ZeroDivisionError, AssertionError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


__all__ = ["BD_METHOD", "bd_rate"]
