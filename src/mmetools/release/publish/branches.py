"""Branch names as staging folders, and which branch publishes to production.

Every branch publishes to staging, under ``<prefix>/<branch-slug>/`` when
``publish.namespace_staging_by_branch`` is set; only ``publish.production_branch`` also
publishes to production.
"""

from __future__ import annotations

import logging

from mmetools.core.errors import UsageError
from mmetools.core.settings import Settings

logger = logging.getLogger(__name__)

_SLUG_KEPT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_SLUG_MAX = 100


def branch_slug(branch: str) -> str:
    """``feature/Fix_42`` -> ``feature~_46ix_5f42``: a folder name that no other branch gets.

    Lowercase letters, digits, ``-`` and ``.`` (not leading) are kept, ``/`` becomes ``~`` (git
    forbids ``~`` in branch names), every other byte of the UTF-8 name becomes ``_xx`` (hex).
    The code is reversible, so two branches never share a staging folder (``Main`` and ``main``
    used to, and the first one blocked the other).
    """
    name = branch.strip().removeprefix("refs/heads/")
    if not name:
        raise UsageError(f"--branch {branch!r}: not a usable branch name (it is empty)")
    parts: list[str] = []
    for index, char in enumerate(name):
        if char in _SLUG_KEPT and not (char == "." and index == 0):
            parts.append(char)
        elif char == "/":
            parts.append("~")
        else:
            parts.extend(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    slug = "".join(parts)
    if len(slug) > _SLUG_MAX:
        raise UsageError(
            f"--branch {branch!r}: too long for a destination folder "
            f"({len(slug)} characters encoded, max {_SLUG_MAX})"
        )
    return slug


def branch_from_slug(slug: str) -> str:
    """The inverse of :func:`branch_slug` (for listings, and to prove the code is reversible)."""
    out = bytearray()
    index = 0
    while index < len(slug):
        char = slug[index]
        if char == "_":
            out.append(int(slug[index + 1 : index + 3], 16))
            index += 3
            continue
        out.extend(b"/" if char == "~" else char.encode("ascii"))
        index += 1
    return out.decode("utf-8", "surrogatepass")


def is_production_branch(branch: str, settings: Settings) -> bool:
    name = branch.strip().removeprefix("refs/heads/")
    return name == settings.publish.production_branch


__all__ = ["branch_from_slug", "branch_slug", "is_production_branch"]
