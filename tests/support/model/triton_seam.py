"""The one place the differential tests reach into mmetools' Triton launch code.

The launch code may move between modules (src/mmetools/testing/triton.py is being split); only this seam
needs to follow it.
"""

from __future__ import annotations

from mmetools.testing.triton import LoadResult, TritonServer

__all__ = ["LoadResult", "TritonServer"]
