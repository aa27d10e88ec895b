"""codecave: codec-aware video enhancement.

Reads codec priors (frame types, QP, motion vectors, partitions, residuals) from
real bitstreams and uses them to restore compressed video.

The plug-and-play entry points are loaded on first use, so ``import codecave``
stays light::

    from codecave import Enhancer, enhance_video
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["Enhancer", "EnhanceOptions", "__version__", "create_model", "enhance_video", "list_models"]


def __getattr__(name: str) -> Any:
    if name in ("Enhancer", "EnhanceOptions", "enhance_video"):
        from codecave import enhance

        return getattr(enhance, name)
    if name in ("create_model", "list_models"):
        from codecave import models

        return getattr(models, name)
    raise AttributeError(f"module 'codecave' has no attribute {name!r}")
