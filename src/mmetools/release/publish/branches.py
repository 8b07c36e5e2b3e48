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
    name = checked_branch(branch)
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


def checked_branch(branch: str) -> str:
    """``branch`` if it is a branch's short name as git spells it; UsageError otherwise.

    Nothing is stripped or rewritten: ``refs/heads/main`` is a name git accepts for a branch
    (``refs/heads/refs/heads/main``), so reading it as ``main`` let an unreviewed branch publish
    to production and to staging's ``main`` folder. A ref-looking name (``refs/...``, ``HEAD``)
    and anything ``git check-ref-format --branch`` refuses (blanks, control characters,
    ``~^:?*[\\``, ``..``, ``@{``, a ``.lock`` or ``/`` end) is refused here.
    """
    if not branch:
        raise UsageError(f"--branch {branch!r}: not a usable branch name (it is empty)")
    problem = _branch_problem(branch)
    if problem:
        raise UsageError(
            f"--branch {branch!r}: not a branch's short name ({problem}); give the name as "
            "`git branch --show-current` prints it"
        )
    return branch


def _branch_problem(name: str) -> str | None:
    if name == "HEAD" or name.startswith(("refs/", "heads/", "remotes/")):
        return "it looks like a ref, so it could pass for another branch"
    bad = sorted({c for c in name if ord(c) < 0x20 or ord(c) == 0x7F or c in " ~^:?*[\\"})
    if bad:
        return "it contains " + ", ".join(repr(c) for c in bad)
    if name.startswith("-") or name == "@" or ".." in name or "@{" in name or "//" in name:
        return "git refuses '..', '@{', '//', a leading '-' and '@' in branch names"
    if name.startswith("/") or name.endswith(("/", ".", ".lock")):
        return "git refuses a leading '/' and a trailing '/', '.' or '.lock'"
    if any(part.startswith(".") for part in name.split("/")):
        return "git refuses a path component that starts with '.'"
    return None


def is_production_branch(branch: str, settings: Settings) -> bool:
    """True for exactly the production branch's name (``publish.production_branch``)."""
    return checked_branch(branch) == settings.publish.production_branch


__all__ = ["branch_from_slug", "branch_slug", "checked_branch", "is_production_branch"]
