"""codecave: codec-aware video enhancement.

Reads codec priors (frame types, QP, motion vectors, partitions, residuals) from
real bitstreams and uses them to restore compressed video.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
