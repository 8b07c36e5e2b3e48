"""The one way mmetools replaces a file: write a temp file beside it, fsync, rename over it.

A reader sees the old file or the new one, never half of either; a failed write leaves no temp.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

KEEP_MODE = -1  # ``mode=KEEP_MODE``: an existing file keeps its permissions (new ones get 0644)


def write_bytes_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    if mode == KEEP_MODE:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    write_bytes_atomically(path, text.encode("utf-8"), mode)
