"""One in-process memo for values computed from a file, keyed by the file's stat.

A value is reused while the file keeps its path, size, mtime and inode; any edit (or a replace by
rename, which changes the inode) recomputes it. One pipeline run loads each config.pbtxt once,
however many steps look at it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

Value = TypeVar("Value")
StatKey = tuple[int, int, int, int]


def stat_key(path: Path) -> StatKey:
    info = os.stat(path)
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)


class StatMemo(Generic[Value]):
    """``memo.get(path, compute)``: ``compute(path)`` once per state of the file. Failures are
    not remembered (a fixed file is read again)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[StatKey, Value]] = {}
        self.computed = 0  # how many times a value was computed (tests and benchmarks read it)

    def get(self, path: Path, compute: Callable[[Path], Value]) -> Value:
        key = os.path.abspath(path)
        stamp = stat_key(path)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        value = compute(path)
        self.computed += 1
        self._entries[key] = (stamp, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
